"""Data routes: records, facets, diffs and whole-version exports."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from starlette.datastructures import URL
from sqlalchemy.orm import Session

from api.deps import get_engine, get_hub, get_result_cache, get_session
from catalogue.store.changes import diff_as_csv, diff_versions
from catalogue.errors import InvalidParameter
from catalogue.query.exports import MEDIA_TYPES, ExportFile, check_format, csv_options, export_tag, export_version, read_file
from catalogue.hub import Hub
from catalogue.meta.metadata import get_dataset, get_version, get_version_identity
from catalogue.query.engine import QueryEngine, VersionRef, resolve_version
from catalogue.query.records import RecordsRequest, default_facets, facet_counts, plan_records, run_records
from catalogue.query.result_cache import ResultCache

router = APIRouter()
T = TypeVar("T")

VERSION_QUERY = Query(None, ge=1, description="Version number to read; default: the current version.")
AS_OF_QUERY = Query(None, description="Read the version that was current at this ISO 8601 time.")
WHERE = Query(None, description="ODSQL filter, e.g. `lot_id = 'P01' and free > 10`.")
REFINE = Query([], description="Facet filter `field:value` (repeatable).")
EXCLUDE = Query([], description="Negative facet filter `field:value` (repeatable).")
IF_NONE_MATCH = Header(None, description="ETags of copies the client holds: 304 when one is current.")


@dataclass(frozen=True)
class CachedPage:
    """A computed records page: everything in the body except the echo of the request and its links."""

    total_count: int
    results: bytes  # the rows, one JSON array
    next_cursor: str | None
    keyed: bool  # the plan paged by position, so links.next is a cursor when there is one


async def kept_or_computed(
    hub: Hub, cache: ResultCache, name: str, version: int | None, as_of: datetime | None, params: tuple[object, ...],
    kind: type[T], compute: Callable[[tuple[int, str] | None], tuple[VersionRef, T]], size: Callable[[T], int],
) -> tuple[int, T, str]:
    """(version number, result, X-Cache state) for a request: kept, or computed and kept.

    ``compute`` gets the version's (number, content hash) when it was looked up here.

    The version is looked up on every request (one indexed query), so a newly
    published one is served at once; its content hash is part of the key.
    Identical requests arriving while one computes wait for that computation
    instead of running their own (single flight: a crowd asking for the same
    page right after a new version is published runs one query). With the
    cache off, every request computes.
    """
    identity = None
    if cache.enabled and as_of is None:
        if hub.engine.dialect.name == "sqlite":
            # An embedded lookup takes less time than a hop to the threadpool and back (measured: ~40% more
            # cached requests per second); a database server's round trip must not hold up the event loop.
            identity = get_version_identity(hub.engine, name, version)
        else:
            identity = await run_in_threadpool(get_version_identity, hub.engine, name, version)
    if identity is None:  # cache off, as_of, or no such dataset or version (computing says which)
        ref, result = await run_in_threadpool(compute, None)
        if cache.enabled:
            cache.put((name, ref.number, ref.content_hash, params), result, size(result))
        return ref.number, result, "miss"
    key = (name, *identity, params)
    found = cache.get(key, kind)
    if found is not None:
        return identity[0], found, "hit"
    flight = (id(cache), key)
    running = _flights.get(flight)
    if running is not None:
        number, shared = await asyncio.shield(running)
        return number, cast(T, shared), "hit"
    running = asyncio.get_running_loop().create_future()
    _flights[flight] = running
    try:
        ref, result = await run_in_threadpool(compute, identity)
    except BaseException as exc:
        running.set_exception(exc)
        running.exception()  # retrieved here, so an unwaited failure is not logged twice
        raise
    finally:
        del _flights[flight]
    cache.put((name, ref.number, ref.content_hash, params), result, size(result))
    running.set_result((ref.number, result))
    return ref.number, result, "miss"


_flights: dict[tuple[object, ...], asyncio.Future[tuple[int, object]]] = {}  # computations in progress


def page_link(url: URL, number: int, **params: str | int) -> str:
    """``url`` pinned to version ``number``, without as_of, cursor and offset, with ``params`` appended.

    Links echo the request's own URL (host, parameter spelling), so they are built per request, never kept.
    """
    drop = {"as_of", "cursor", "offset", "version", *params}
    pairs = [(k, v) for k, v in parse_qsl(url.query, keep_blank_values=True) if k not in drop]
    pairs += [("version", str(number)), *((k, str(v)) for k, v in params.items())]
    return str(url.replace(query=urlencode(pairs)))


@router.get("/datasets/{name}/records", response_model=None)
async def records(
    request: Request,
    name: str,
    select: str | None = Query(None, description="Fields, expressions and aggregates, e.g. `lot_id, avg(free) as f`."),
    where: str | None = WHERE,
    group_by: str | None = Query(None, description="Group by fields or expressions, e.g. `date_trunc('hour', timestamp) as h`."),
    order_by: str | None = Query(None, description="Sort, e.g. `free desc, lot_id`."),
    limit: int | None = Query(None, ge=0, description="Rows per page (default 100, at most the configured maximum)."),
    offset: int = Query(0, ge=0, description="Rows to skip (offset+limit at most 10,000; then use cursor)."),
    refine: list[str] = REFINE,
    exclude: list[str] = EXCLUDE,
    cursor: str | None = Query(None, description="Keyset cursor from links.next, to page past the offset wall."),
    version: int | None = VERSION_QUERY,
    as_of: datetime | None = AS_OF_QUERY,
    if_none_match: str | None = IF_NONE_MATCH,
    hub: Hub = Depends(get_hub),
    engine: QueryEngine = Depends(get_engine),
    cache: ResultCache = Depends(get_result_cache),
) -> Response:
    """Rows of a dataset version, filtered, aggregated and sorted with ODSQL parameters."""
    settings = hub.settings
    limit = settings.default_page_size if limit is None else limit
    if limit > settings.max_returned_rows:
        raise InvalidParameter(
            f"limit={limit} is above the maximum of {settings.max_returned_rows} rows per page. "
            "Page with offset or cursor, or use /exports for the whole dataset.",
            details={"parameter": "limit", "maximum": settings.max_returned_rows},
        )
    if offset + limit > settings.max_offset_rows:
        raise InvalidParameter(
            f"offset+limit may be at most {settings.max_offset_rows}. To read further, follow links.next "
            "(a cursor that pages to the end of any dataset), or use /exports.",
            details={"parameter": "offset", "maximum": settings.max_offset_rows},
        )
    query = RecordsRequest(select=select, where=where, group_by=group_by, order_by=order_by, limit=limit,
                           offset=offset, refine=refine, exclude=exclude, cursor=cursor)
    # Refine and exclude filters are joined with AND, so their order does not change the rows.
    params = ("records", select, where, group_by, order_by, limit, offset, tuple(sorted(refine)),
              tuple(sorted(exclude)), cursor)

    def compute(identity: tuple[int, str] | None) -> tuple[VersionRef, CachedPage]:
        ref = engine.version(name, version, as_of, identity=identity)
        plan = plan_records(query, ref.schema, list(ref.uris), ref.number, row_count=ref.row_count)
        found = engine.run(lambda cur: run_records(
            cur, plan, version=ref.number, limit=limit, time_limit_ms=settings.query_time_limit_ms))
        return ref, CachedPage(found["total_count"], found["results_json"].encode(), found["next_cursor"],
                               plan.keyed)

    number, page, state = await kept_or_computed(hub, cache, name, version, as_of, params, CachedPage, compute,
                                                 lambda p: len(p.results))
    links: dict[str, str] = {}
    if page.next_cursor:
        links["next"] = page_link(request.url, number, cursor=page.next_cursor, limit=limit)
    elif not page.keyed and offset + limit < page.total_count and offset + 2 * limit <= settings.max_offset_rows:
        links["next"] = page_link(request.url, number, offset=offset + limit, limit=limit)
    head = json.dumps({"dataset": name, "version": number, "total_count": page.total_count, "limit": limit,
                       "offset": offset}, ensure_ascii=False)
    # The rows arrive as JSON text from DuckDB; splice them in rather than parse and re-serialise.
    body = b"".join((head[:-1].encode(), b',"results":', page.results, b',"links":', json.dumps(links).encode(),
                     b"}"))
    return validated_json(body, number, state, pinned=version is not None, if_none_match=if_none_match)


@router.get("/datasets/{name}/facets", response_model=None)
async def facets(
    name: str,
    facet: list[str] = Query([], description="Field to count values of (repeatable); default: text and boolean fields."),
    where: str | None = WHERE,
    refine: list[str] = REFINE,
    exclude: list[str] = EXCLUDE,
    limit: int | None = Query(None, ge=1, le=1000, description="Values per facet (default 30)."),
    version: int | None = VERSION_QUERY,
    as_of: datetime | None = AS_OF_QUERY,
    if_none_match: str | None = IF_NONE_MATCH,
    hub: Hub = Depends(get_hub),
    engine: QueryEngine = Depends(get_engine),
    cache: ResultCache = Depends(get_result_cache),
) -> Response:
    """Values and counts of categorical fields, under the same filters as records."""
    size = limit or hub.settings.default_facet_size
    params = ("facets", tuple(facet), where, tuple(sorted(refine)), tuple(sorted(exclude)), size)

    def compute(identity: tuple[int, str] | None) -> tuple[VersionRef, bytes]:
        ref = engine.version(name, version, as_of, identity=identity)
        query = RecordsRequest(where=where, refine=refine, exclude=exclude)
        found = engine.run(lambda cur: facet_counts(
            cur, ref.schema, list(ref.uris), query, facet or default_facets(ref.schema), size,
            hub.settings.query_time_limit_ms))
        result = {"dataset": name, "version": ref.number, "facets": found}
        return ref, json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode()

    number, body, state = await kept_or_computed(hub, cache, name, version, as_of, params, bytes, compute, len)
    return validated_json(body, number, state, pinned=version is not None, if_none_match=if_none_match)


def held_tags(if_none_match: str | None) -> list[str]:
    """The entity tags of an If-None-Match header (weak ones compared as strong: the bodies are bytes)."""
    return [t.strip().removeprefix("W/") for t in (if_none_match or "").split(",") if t.strip()]


def cache_control(pinned: bool) -> str:
    """A pinned version never changes, so clients and proxies may keep it; the current one may move on."""
    return "public, max-age=31536000, immutable" if pinned else "public, no-cache"


def validated_json(body: bytes, number: int, state: str, *, pinned: bool, if_none_match: str | None) -> Response:
    """A JSON answer with an ETag (a hash of the body) and Cache-Control; 304 to a client holding the same body.

    Without ``version`` the answer is marked ``no-cache``: a client revalidates each time and gets a
    bodiless 304 until a new version changes the body (the current version may move on at any time).
    """
    etag = f'"{hashlib.blake2b(body, digest_size=16).hexdigest()}"'
    headers = {"X-Dataset-Version": str(number), "X-Cache": state, "ETag": etag, "Cache-Control": cache_control(pinned)}
    held = held_tags(if_none_match)
    if "*" in held or etag in held:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@router.get("/datasets/{name}/diff", response_model=None)
async def diff(
    name: str,
    from_version: int = Query(..., alias="from", ge=1, description="The older version."),
    to_version: int | None = Query(None, alias="to", ge=1, description="The newer version (default: current)."),
    format: str = Query("json", pattern="^(json|csv)$", description="json or csv."),  # noqa: A002 - API name
    limit: int = Query(1000, ge=1, le=10_000, description="Rows listed per kind of change."),
    session: Session = Depends(get_session),
    hub: Hub = Depends(get_hub),
    engine: QueryEngine = Depends(get_engine),
) -> Response | dict[str, Any]:
    """Rows added, removed and changed between two versions, and the schema change."""
    ds = get_dataset(session, name)
    old = VersionRef.of(hub, ds, get_version(session, ds, from_version))
    new = VersionRef.of(hub, ds, get_version(session, ds, to_version))

    changes = await run_in_threadpool(engine.run, lambda cur: diff_versions(
        cur, list(old.uris), list(new.uris), old.schema, new.schema, limit))
    result = {"dataset": name, "from": old.number, "to": new.number, **changes}
    if format == "csv":
        return StreamingResponse(
            (line.encode() for line in diff_as_csv(result)), media_type=MEDIA_TYPES["csv"],
            headers={"Content-Disposition": f'attachment; filename="{name}-diff-v{old.number}-v{new.number}.csv"'},
        )
    return result


@router.get("/datasets/{name}/exports/{fmt}", response_model=None)
def export(
    name: str,
    fmt: str,
    select: str | None = Query(None, description="Fields and expressions, as in records, e.g. `lot_id, free`."),
    where: str | None = WHERE,
    group_by: str | None = Query(None, description="Group by fields or expressions, as in records."),
    order_by: str | None = Query(None, description="Sort, as in records, e.g. `free desc, lot_id`."),
    refine: list[str] = REFINE,
    exclude: list[str] = EXCLUDE,
    delimiter: str | None = Query(None, description="csv: one character between cells; default `,` (`;` for number_style=german)."),
    with_bom: bool | None = Query(None, description="csv: start with a UTF-8 byte order mark (helps Excel); default false."),
    number_style: str | None = Query(None, description="csv: `international` (12345.67, default) or `german` (12345,67)."),
    version: int | None = VERSION_QUERY,
    as_of: datetime | None = AS_OF_QUERY,
    if_none_match: str | None = IF_NONE_MATCH,
    session: Session = Depends(get_session),
    hub: Hub = Depends(get_hub),
    engine: QueryEngine = Depends(get_engine),
) -> Response:
    """Every row of a version as csv, json, ndjson, geojson, parquet or xlsx, with the records parameters and no row limit."""
    check_format(fmt)
    options = csv_options(fmt, delimiter, with_bom, number_style)
    ref = resolve_version(hub, session, name, version, as_of)
    query = RecordsRequest(select=select, where=where, group_by=group_by, order_by=order_by, limit=None,
                           refine=refine, exclude=exclude)
    etag = f'"{export_tag(ref, fmt, query, options)}"'
    headers = {
        "Content-Disposition": f'attachment; filename="{name}-v{ref.number}.{fmt}"',
        "X-Dataset-Version": str(ref.number),
        "ETag": etag,
        # The current version may move on: a minute's staleness spares re-downloading large files.
        "Cache-Control": cache_control(True) if version else "public, max-age=60",
    }
    held = held_tags(if_none_match)
    if "*" in held or etag in held:
        del headers["Content-Disposition"]
        return Response(status_code=304, headers=headers)
    result = export_version(hub, engine, ref, fmt, query, options)
    if isinstance(result, ExportFile) and not result.temporary:
        # A stored file: Starlette answers Range and If-Range requests (206) from it.
        return FileResponse(result.path, media_type=MEDIA_TYPES[fmt], headers=headers)
    if isinstance(result, ExportFile):
        headers["Content-Length"] = str(result.path.stat().st_size)
        return StreamingResponse(read_file(result.path, delete=True), media_type=MEDIA_TYPES[fmt], headers=headers)
    return StreamingResponse(result, media_type=MEDIA_TYPES[fmt], headers=headers)
