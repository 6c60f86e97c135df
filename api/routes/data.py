"""Data routes: records, facets, diffs and whole-version exports."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.datastructures import URL

from api.deps import get_engine, get_hub, get_kept_results
from api.stored_files import stored_response
from api.params import DataParams, export_params, facets_params, int_query, records_params
from catalogue.store.changes import diff_as_csv, diff_versions
from catalogue.query.exports import ExportFile, StoredExport, csv_options, export_format, export_tag, export_version, read_file
from catalogue.hub import Hub
from catalogue.query.cached import KeptResults
from catalogue.query.engine import QueryEngine, VersionRef
from catalogue.query.paging import next_page, page_limit
from catalogue.query.cursors import settings_secret
from catalogue.query.records import default_facets, facet_counts, plan_records, run_records
from catalogue.settings import Settings

router = APIRouter()



@dataclass(frozen=True)
class CachedPage:
    """A computed records page: everything in the body except the echo of the request and its links."""

    total_count: int
    results: bytes  # the rows, one JSON array
    next_cursor: str | None
    keyed: bool  # the plan paged by position, so links.next is a cursor when there is one


def page_link(public_url: str, url: URL, number: int, params: dict[str, str | int]) -> str:
    """The request's path under ``public_url``, pinned to version ``number``, without as_of, cursor and
    offset, with ``params`` appended.

    Links start from the configured public URL, never from the client's Host header (which anyone can
    set); they keep the request's parameter spelling, so they are built per request, never kept.
    """
    drop = {"as_of", "cursor", "offset", "version", *params}
    pairs = [(k, v) for k, v in parse_qsl(url.query, keep_blank_values=True) if k not in drop]
    pairs += [("version", str(number)), *((k, str(v)) for k, v in params.items())]
    return f"{public_url.rstrip('/')}{url.path}?{urlencode(pairs)}"


def page_body(request: Request, settings: Settings, name: str, number: int, page: CachedPage, *, offset: int,
              limit: int) -> tuple[bytes, dict[str, str]]:
    """The JSON body of a records-shaped page of version ``number``, and its links (``next`` when there is one)."""
    links: dict[str, str] = {}
    following = next_page(next_cursor=page.next_cursor, keyed=page.keyed, offset=offset, limit=limit,
                          total_count=page.total_count, max_offset_rows=settings.max_offset_rows)
    if following is not None:
        links["next"] = page_link(settings.public_url, request.url, number, following)
    head = json.dumps({"dataset": name, "version": number, "total_count": page.total_count, "limit": limit,
                       "offset": offset}, ensure_ascii=False)
    # The rows arrive as JSON text from DuckDB; splice them in rather than parse and re-serialise.
    body = b"".join((head[:-1].encode(), b',"results":', page.results, b',"links":', json.dumps(links).encode(),
                     b"}"))
    return body, links


@router.get("/datasets/{name}/records", response_model=None)
async def records(
    request: Request,
    name: str,
    params: DataParams = Depends(records_params),
    hub: Hub = Depends(get_hub),
    engine: QueryEngine = Depends(get_engine),
    kept: KeptResults = Depends(get_kept_results),
) -> Response:
    """Rows of a dataset version, filtered, aggregated and sorted with ODSQL parameters."""
    settings = hub.settings
    offset, version, as_of = params.offset, params.version, params.as_of
    limit = page_limit(params.limit, offset, settings)
    query = params.request(limit=limit)

    def compute(identity: tuple[int, str] | None) -> tuple[VersionRef, CachedPage]:
        ref = engine.version(name, version, as_of, identity=identity)
        secret = settings_secret(settings)
        plan = plan_records(query, ref.schema, list(ref.uris), ref.number, row_count=ref.row_count,
                            cursor_secret=secret)
        found = engine.run(lambda cur: run_records(
            cur, plan, version=ref.number, limit=limit, time_limit_ms=settings.query_time_limit_ms,
            cursor_secret=secret))
        return ref, CachedPage(found["total_count"], found["results_json"].encode(), found["next_cursor"],
                               plan.keyed)

    number, page, state = await kept.get(name, version, as_of, query.cache_key("records"), CachedPage, compute,
                                         lambda p: len(p.results))
    body, links = page_body(request, settings, name, number, page, offset=offset, limit=limit)
    response = validated_json(body, number, state, pinned=version is not None, if_none_match=params.if_none_match)
    if offset > 0 and params.cursor is None:  # an offset page's previous page is cheap; a cursor's is not
        links["prev"] = page_link(settings.public_url, request.url, number, {"offset": max(0, offset - limit),
                                                                             "limit": limit})
    if links:
        response.headers["Link"] = link_header(links)
    return response


def link_header(links: dict[str, str]) -> str:
    """An RFC 8288 ``Link`` header of the paging links (``next``, ``prev``)."""
    return ", ".join(f'<{url}>; rel="{rel}"' for rel, url in links.items())


@router.get("/datasets/{name}/facets", response_model=None)
async def facets(
    name: str,
    params: DataParams = Depends(facets_params),
    hub: Hub = Depends(get_hub),
    engine: QueryEngine = Depends(get_engine),
    kept: KeptResults = Depends(get_kept_results),
) -> Response:
    """Values and counts of categorical fields, under the same filters as records."""
    size = params.facet_limit or hub.settings.default_facet_size
    facet, version, as_of = params.facet, params.version, params.as_of
    query = params.request()

    def compute(identity: tuple[int, str] | None) -> tuple[VersionRef, bytes]:
        ref = engine.version(name, version, as_of, identity=identity)
        found = engine.run(lambda cur: facet_counts(
            cur, ref.schema, list(ref.uris), query, facet or default_facets(ref.schema), size,
            hub.settings.query_time_limit_ms))
        result = {"dataset": name, "version": ref.number, "facets": found}
        return ref, json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode()

    key = query.cache_key("facets", facet=tuple(facet), size=size)
    number, body, state = await kept.get(name, version, as_of, key, bytes, compute, len)
    return validated_json(body, number, state, pinned=version is not None, if_none_match=params.if_none_match)


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
    from_version: int = int_query(..., alias="from", ge=1, description="The older version."),
    to_version: int | None = int_query(None, alias="to", ge=1, description="The newer version (default: current)."),
    format: str = Query("json", pattern="^(json|csv)$", description="json or csv."),  # noqa: A002 - API name
    limit: int = int_query(1000, ge=1, le=10_000, description="Rows listed per kind of change."),
    engine: QueryEngine = Depends(get_engine),
) -> Response | dict[str, Any]:
    """Rows added, removed and changed between two versions, and the schema change."""

    def compute() -> tuple[VersionRef, VersionRef, dict[str, Any]]:
        # In a thread and without a request session: no database connection is held while the answer is sent.
        old, new = engine.version(name, from_version), engine.version(name, to_version)
        return old, new, engine.run(lambda cur: diff_versions(
            cur, list(old.uris), list(new.uris), old.schema, new.schema, limit))

    old, new, changes = await run_in_threadpool(compute)
    result = {"dataset": name, "from": old.number, "to": new.number, **changes}
    if format == "csv":
        return StreamingResponse(
            (line.encode() for line in diff_as_csv(result)),
            media_type=export_format(engine.hub.registry, "csv").media_type,
            headers={"Content-Disposition": f'attachment; filename="{name}-diff-v{old.number}-v{new.number}.csv"'},
        )
    return result


@router.get("/datasets/{name}/exports/{fmt}", response_model=None)
def export(
    name: str,
    fmt: str,
    params: DataParams = Depends(export_params),
    hub: Hub = Depends(get_hub),
    engine: QueryEngine = Depends(get_engine),
    *, request: Request,
) -> Response:
    """Every row of a version as csv, json, ndjson, geojson, parquet or xlsx, with the records parameters and no row limit."""
    form = export_format(hub.registry, fmt)
    options = csv_options(fmt, params.delimiter, params.with_bom, params.number_style)
    version, if_none_match = params.version, params.if_none_match
    # Resolved without a request session, so no database connection is held while the file streams.
    ref = engine.version(name, version, params.as_of)
    query = params.request(limit=None)
    etag = f'"{export_tag(ref, fmt, query, options)}"'
    headers = {
        "Content-Disposition": f'attachment; filename="{name}-v{ref.number}.{form.extension}"',
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
    if isinstance(result, StoredExport):  # sent as stored, Range and If-Range answered (206)
        return stored_response(request, hub, result.key, form.media_type, headers)
    if isinstance(result, ExportFile):
        headers["Content-Length"] = str(result.path.stat().st_size)
        return StreamingResponse(read_file(result.path, delete=True), media_type=form.media_type, headers=headers)
    return StreamingResponse(result, media_type=form.media_type, headers=headers)
