"""CKAN's Action API (version 3) under /api/3/action/ (and /api/action/, as CKAN too serves it), so ckanapi and CKAN harvesters read the hub unchanged.

Every answer is CKAN's envelope ``{help, success, result}``; every error CKAN's shape
``{help, success: false, error: {__type, message}}`` with CKAN's status codes (404 Not Found Error,
409 Validation Error, 400 Search Query Error and unknown actions). Parameters come as a query
string (GET) or a JSON object (POST, as ckanapi sends them); an unknown one is refused. The
mapping (packages, resources, organisations, groups) is :mod:`catalogue.meta.ckan_mapping`; the
DataStore runs on the records planner and the SQL endpoint's sandbox. Private datasets are seen
only with a ``read-private`` token of their publisher (``Authorization: Bearer udt_…``; ckanapi sends
its ``apikey`` as ``Authorization``): package_search lists them with ``include_private=true``;
package_show, resource_show and the DataStore read them; to anyone else they do not exist.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import get_credential, private_of
from api.params import OWN_PARAMETERS
from catalogue.errors import InvalidParameter, NotFound, UrbandataError
from catalogue.hub import Hub
from catalogue.meta import ckan_mapping as mapping
from catalogue.meta import ckan_search as search
from catalogue.meta.licenses import LICENSES
from catalogue.meta.metadata import get_publisher
from catalogue.meta.models import Dataset, Organization, Version
from catalogue.meta.tokens import Credential
from catalogue.meta.vocabularies import THEMES
from catalogue.query.ckan_datastore import (
    RECORDS_FORMATS, field_dicts, formatted_records, search_request, xml_rows,
)
from catalogue.query.cursors import settings_secret
from catalogue.query.engine import QueryEngine, VersionRef
from catalogue.query.exports import CsvOptions, ExportFile, export_format, export_version, format_names, read_file
from catalogue.query.paging import page_limit
from catalogue.query.planning import RecordsRequest
from catalogue.query.records import plan_records, run_records
from catalogue.sql.runner import run_sql

router = APIRouter()
CKAN_VERSION = "2.10.4"  # the Action API this one follows
JSON_PARAMETERS = {"filters", "facet.field", "fields", "q", "organizations", "groups"}


class Args:
    """One action's parameters: typed getters, and every name read so leftovers can be refused."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.read: set[str] = set()

    def get(self, name: str, default: Any = None) -> Any:
        self.read.add(name)
        return self.values.get(name, default)

    def text(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.get(name)
        if value is None or value == "":
            if required:
                raise InvalidParameter(f"Missing value: '{name}' is required.", details={"parameter": name})
            return default
        if not isinstance(value, str):
            raise InvalidParameter(f"{name} takes a text.", details={"parameter": name})
        return value

    def integer(self, name: str, default: int, *, lowest: int = 0, highest: int = 2**63 - 1) -> int:
        value = self.get(name)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise InvalidParameter(f"{name} takes a whole number; got '{str(value)[:40]}'.",
                                   details={"parameter": name}) from None
        if not lowest <= number <= highest:
            raise InvalidParameter(f"{name} must be between {lowest} and {highest}; got {number}.",
                                   details={"parameter": name})
        return number

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes", "on"):
            return True
        if str(value).lower() in ("false", "0", "no", "off"):
            return False
        raise InvalidParameter(f"{name} takes true or false; got '{str(value)[:40]}'.", details={"parameter": name})

    def listed(self, name: str) -> list[str] | None:
        """A list given as a JSON list, a JSON string, or comma-separated text."""
        value = self.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidParameter(f"{name} takes a list of names.", details={"parameter": name})
        return value

    def refuse_unread(self, action: str) -> None:
        unread = sorted(set(self.values) - self.read)
        if unread:
            raise InvalidParameter(f"{action} takes no parameter '{unread[0]}'; it takes "
                                   f"{', '.join(sorted(self.read)) or 'none'}.", details={"parameter": unread[0]})


@dataclass
class Context:
    """What an action works with."""

    hub: Hub
    engine: QueryEngine
    request: Request
    links: mapping.Links
    reader: int | None = None  # the publisher whose private datasets the caller's token may read

    def session(self) -> Session:
        return self.hub.sessions()  # type: ignore[no-any-return]


Action = Callable[[Context, Args], Any]
ACTIONS: dict[str, Action] = {}
SYNC = set()  # actions that run in a thread (database or engine work)
SEARCH_ERRORS = {"package_search": {"q", "fq", "sort", "ext_bbox"}}


def action(name: str, *, threaded: bool = True) -> Callable[[Action], Action]:
    def register(func: Action) -> Action:
        ACTIONS[name] = func
        if threaded:
            SYNC.add(name)
        return func
    return register


def _help(ctx: Context, name: str) -> str:
    return f"{ctx.links.public_url}/api/3/action/help_show?name={name}"


def ckan_error(help_url: str, status: int, kind: str, message: str, **fields: Any) -> JSONResponse:
    """CKAN's error envelope."""
    error = {"__type": kind, "message": message, **fields}
    return JSONResponse({"help": help_url, "success": False, "error": error}, status_code=status)


def _error_response(name: str, help_url: str, exc: UrbandataError) -> JSONResponse:
    parameter = str(exc.details.get("parameter", "")) if exc.details else ""
    if isinstance(exc, NotFound):
        return ckan_error(help_url, 404, "Not Found Error", f"Not found: {exc.message}")
    if exc.status == 400 and parameter in SEARCH_ERRORS.get(name, ()):
        return ckan_error(help_url, 400, "Search Query Error", f"Search Query is invalid: {exc.message}")
    if exc.status in (400, 413, 422):
        return ckan_error(help_url, 409, "Validation Error", exc.message, **{parameter or "data": [exc.message]})
    kinds = {401: "Authorization Error", 403: "Authorization Error", 429: "Rate Limited",
             503: "Service Unavailable"}
    response = ckan_error(help_url, exc.status, kinds.get(exc.status, "Internal Server Error"), exc.message)
    retry_after = getattr(exc, "retry_after_s", None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


async def _arguments(request: Request) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        if key in JSON_PARAMETERS and value[:1] in ("[", "{", '"'):
            try:
                value = json.loads(value)
            except ValueError:
                raise InvalidParameter(f"{key} is not valid JSON.", details={"parameter": key}) from None
        values[key] = value
    if request.method == "POST":
        body = await request.body()
        if body.strip():
            try:
                posted = json.loads(body)
            except ValueError:
                raise InvalidParameter("The request body must be a JSON object of the action's parameters.",
                                       details={"parameter": "body"}) from None
            if not isinstance(posted, dict):
                raise InvalidParameter("The request body must be a JSON object of the action's parameters.",
                                       details={"parameter": "body"})
            values.update(posted)
    return values


def _links(request: Request) -> mapping.Links:
    hub: Hub = request.app.state.hub
    settings = hub.settings
    formats = tuple((f, export_format(hub.registry, f).media_type) for f in format_names(hub.registry))
    return mapping.Links(settings.public_url.rstrip("/"), settings.api_prefix, formats)


@router.api_route("/api/3/action/{name}", methods=["GET", "POST"], response_model=None,
                  openapi_extra={OWN_PARAMETERS: True}, summary="Call a CKAN action")
@router.api_route("/api/action/{name}", methods=["GET", "POST"], response_model=None,
                  openapi_extra={OWN_PARAMETERS: True}, summary="Call a CKAN action (unversioned path, as ckanapi uses)")
async def call_action(request: Request, name: str) -> Response:
    """One CKAN Action API call (``package_search``, ``datastore_search``, ...: see ``help_show``).

    Parameters as a query string or as a JSON object in a POST body, as in CKAN.
    """
    ctx = Context(request.app.state.hub, request.app.state.query_engine, request, _links(request))
    help_url = _help(ctx, name)
    func = ACTIONS.get(name)
    if func is None:
        return ckan_error(help_url, 400, "Bad Request", f"Bad request - Action name not known: {name}")
    try:
        ctx.reader = private_of(await get_credential(request))
        args = Args(await _arguments(request))
        result = await run_in_threadpool(func, ctx, args) if name in SYNC else func(ctx, args)
        args.refuse_unread(name)
    except UrbandataError as exc:
        return _error_response(name, help_url, exc)
    return JSONResponse({"help": help_url, "success": True, "result": result})


# -- site and catalogue ------------------------------------------------------------------------------------


@action("status_show", threaded=False)
def status_show(ctx: Context, args: Args) -> dict[str, Any]:
    """The site and the Action API version it follows."""
    return {"ckan_version": CKAN_VERSION, "site_url": ctx.links.public_url, "site_title": "urbandata",
            "site_description": "Validated, versioned open data of the city and its companies.",
            "locale_default": "de", "extensions": ["datastore"], "api_version": 3}


@action("help_show", threaded=False)
def help_show(ctx: Context, args: Args) -> str:
    """The documentation of one action."""
    name = args.text("name", required=True) or ""
    if name not in ACTIONS:
        raise NotFound(f"Action '{name}'. The actions are {', '.join(sorted(ACTIONS))}.")
    return (ACTIONS[name].__doc__ or name).strip()


@action("package_list")
def package_list(ctx: Context, args: Args) -> list[str]:
    """The names of every dataset."""
    limit, offset = args.integer("limit", 10**9, lowest=0), args.integer("offset", 0)
    with ctx.session() as session:
        query = select(Dataset.name).where(search.public()).order_by(Dataset.name).limit(limit).offset(offset)
        return list(session.scalars(query))


@action("current_package_list_with_resources")
def current_packages(ctx: Context, args: Args) -> list[dict[str, Any]]:
    """Datasets with their resources, most recently changed first."""
    limit = args.integer("limit", 100, lowest=1, highest=search.MAX_ROWS)
    page = args.integer("page", 0, lowest=0)
    offset = (page - 1) * limit if page else args.integer("offset", 0)
    with ctx.session() as session:
        found = session.scalars(search.select_packages(order_by_modified=True).limit(limit).offset(offset))
        return [mapping.package_dict(d, ctx.links) for d in found]


@action("package_search")
def package_search(ctx: Context, args: Args) -> dict[str, Any]:
    """Search datasets: q, fq, sort, rows (at most 1000), start, facet.field, facet.limit, facet.mincount, ext_bbox."""
    # Private datasets only when asked for and the token may read them (CKAN's include_private).
    reader = ctx.reader if args.boolean("include_private") else None
    args.boolean("include_drafts")
    args.boolean("facet", True)
    facet_fields = args.get("facet.field") or []
    if isinstance(facet_fields, str):
        facet_fields = [facet_fields]
    unknown = [f for f in facet_fields if f not in search.FACET_FIELDS]
    if unknown or not isinstance(facet_fields, list):
        raise InvalidParameter(f"facet.field: cannot count '{unknown[0] if unknown else facet_fields}'; "
                               f"the facet fields are {', '.join(search.FACET_FIELDS)}.",
                               details={"parameter": "facet.field"})
    bbox_text = args.text("ext_bbox")
    query = search.PackageQuery(
        q=args.text("q"), fq=search.parse_fq(args.text("fq") or ""), sort=search.parse_sort(args.text("sort") or ""),
        rows=args.integer("rows", 10, highest=search.MAX_ROWS), start=args.integer("start", 0),
        facet_fields=tuple(facet_fields), facet_limit=args.integer("facet.limit", 50, lowest=-1),
        facet_mincount=args.integer("facet.mincount", 1), bbox=search.parse_bbox(bbox_text) if bbox_text else None,
        reader=reader)
    with ctx.session() as session:
        hits = search.search_packages(session, query)
        results = [mapping.package_dict(d, ctx.links) for d in hits.datasets]
        titles = _facet_titles(session, hits.facets)
    return {
        "count": hits.count, "sort": args.text("sort") or "score desc, metadata_modified desc",
        "results": results,
        "facets": {f: dict(values) for f, values in hits.facets.items()},
        "search_facets": {f: {"title": f, "items": [{"name": v, "display_name": titles.get((f, v), v), "count": c}
                                                    for v, c in values]}
                          for f, values in hits.facets.items()},
    }


def _facet_titles(session: Session, facets: dict[str, list[tuple[str, int]]]) -> dict[tuple[str, str], str]:
    titles: dict[tuple[str, str], str] = {}
    for name, _ in facets.get("organization", []):
        titles[("organization", name)] = session.scalar(select(Organization.title).where(Organization.name == name)) or name
    for name, _ in facets.get("groups", []):
        titles[("groups", name)] = mapping.group_dict(name.upper())["title"]
    for iri, _ in facets.get("license_id", []):
        titles[("license_id", iri)] = LICENSES.get(iri, {}).get("title", iri)
    return titles


def _visible_dataset(ctx: Context, session: Session, name: str) -> Dataset:
    """The dataset ``name`` if the caller may see it (a private one only with a read-private token of its
    publisher); else the same NotFound as for a dataset that does not exist."""
    dataset = session.scalar(search.select_packages(reader=ctx.reader).where(Dataset.name == name))
    if dataset is None:
        raise NotFound(f"There is no dataset '{name}'; package_list lists them.")
    return dataset


@action("package_show")
def package_show(ctx: Context, args: Args) -> dict[str, Any]:
    """One dataset by name (or id, which is the name) with its current version's resources."""
    args.boolean("use_default_schema")
    args.boolean("include_tracking")
    args.boolean("include_plugin_data")
    with ctx.session() as session:
        return mapping.package_dict(_visible_dataset(ctx, session, args.text("id", required=True) or ""), ctx.links)


@action("resource_show")
def resource_show(ctx: Context, args: Args) -> dict[str, Any]:
    """One resource: a version's download in one format."""
    args.boolean("include_tracking")
    ref = mapping.parse_resource_id(args.text("id", required=True) or "")
    with ctx.session() as session:
        dataset = _visible_dataset(ctx, session, ref.name)
        version = session.scalar(select(Version).where(Version.dataset_id == dataset.id,
                                                       Version.number == ref.number))
        found = [r for r in mapping.resource_dicts(dataset, version, ctx.links) if r["id"] == ref.id] if version else []
    if not found:
        raise NotFound(f"Resource '{ref.id}': dataset '{ref.name}' has no version {ref.number} in that format; "
                       "package_show lists its resources.")
    return found[0]


def _names_or_dicts(args: Args, items: list[dict[str, Any]]) -> list[Any]:
    limit, offset = args.integer("limit", 1000, highest=1000), args.integer("offset", 0)
    args.get("sort")
    args.boolean("include_extras")
    args.boolean("include_tags")
    args.boolean("include_groups")
    args.boolean("include_users")
    args.boolean("include_dataset_count", True)
    wanted = args.listed("organizations") or args.listed("groups")
    items = [i for i in items if wanted is None or i["name"] in wanted][offset:offset + limit]
    return items if args.boolean("all_fields") else [i["name"] for i in items]


@action("organization_list")
def organization_list(ctx: Context, args: Args) -> list[Any]:
    """Publishers, by name (all_fields: their dicts with package_count)."""
    with ctx.session() as session:
        counts = search.publisher_counts(session)
        orgs = session.scalars(select(Organization).order_by(Organization.name))
        items = [mapping.organization_dict(o, counts.get(o.id, 0)) for o in orgs]
    return _names_or_dicts(args, items)


@action("organization_show")
def organization_show(ctx: Context, args: Args) -> dict[str, Any]:
    """One publisher (include_datasets: with its datasets as packages)."""
    with ctx.session() as session:
        org = get_publisher(session, args.text("id", required=True) or "")
        packages = list(session.scalars(search.select_packages().where(Dataset.publisher_id == org.id)))
        found = mapping.organization_dict(org, len(packages))
        if args.boolean("include_datasets"):
            found["packages"] = [mapping.package_dict(d, ctx.links) for d in packages]
    return found


@action("group_list")
def group_list(ctx: Context, args: Args) -> list[Any]:
    """The data themes datasets have, as groups (all_fields: their dicts with package_count)."""
    with ctx.session() as session:
        counts = search.theme_counts(session)
    items = [mapping.group_dict(t, counts[t]) for t in sorted(counts, key=mapping.group_name) if t in THEMES]
    return _names_or_dicts(args, items)


@action("group_show")
def group_show(ctx: Context, args: Args) -> dict[str, Any]:
    """One data theme as a group (include_datasets: with its datasets as packages)."""
    theme = mapping.theme_of_group(args.text("id", required=True) or "")
    with ctx.session() as session:
        hits = search.search_packages(session, search.PackageQuery(fq=((False, "groups", theme),), rows=1000))
        found = mapping.group_dict(theme, hits.count)
        if args.boolean("include_datasets"):
            found["packages"] = [mapping.package_dict(d, ctx.links) for d in hits.datasets]
    return found


@action("tag_list")
def tag_list(ctx: Context, args: Args) -> list[Any]:
    """Every keyword (query: those containing the text; all_fields: dicts with counts)."""
    if args.text("vocabulary_id"):
        raise NotFound("Vocabulary: the hub has no tag vocabularies; leave vocabulary_id out.")
    part = (args.text("query") or "").lower()
    with ctx.session() as session:
        counts = search.tag_counts(session)
    names = sorted(t for t in counts if part in t.lower())
    if args.boolean("all_fields"):
        return [{"id": t, "name": t, "display_name": t, "count": counts[t], "vocabulary_id": None} for t in names]
    return names


@action("license_list", threaded=False)
def license_list(ctx: Context, args: Args) -> list[dict[str, Any]]:
    """Every licence (the DCAT-AP.de IRI is the id)."""
    return mapping.license_list()


# -- DataStore ----------------------------------------------------------------------------------------------


def _version_of(ctx: Context, resource: str) -> tuple[str, VersionRef]:
    """The version a resource id (or a dataset name: its current version) names, and the id to answer with."""
    if "@" in resource:
        ref = mapping.parse_resource_id(resource)
        name, number = ref.name, ref.number
    else:
        name, number = resource, None
    with ctx.session() as session:
        _visible_dataset(ctx, session, name)
    version = ctx.engine.version(name, number)
    return mapping.resource_id(name, version.number, mapping.DATASTORE_FORMAT), version


@action("datastore_search")
def datastore_search(ctx: Context, args: Args) -> dict[str, Any]:
    """Rows of a resource: resource_id, filters, q, fields, sort, limit, offset, include_total, records_format."""
    rid, ref = _version_of(ctx, args.text("resource_id", required=True) or args.text("id") or "")
    settings = ctx.hub.settings
    offset = args.integer("offset", 0)
    limit = page_limit(args.integer("limit", 100, lowest=0), offset, settings)
    records_format = args.text("records_format", "objects") or "objects"
    if records_format not in RECORDS_FORMATS:
        raise InvalidParameter(f"records_format must be one of {', '.join(RECORDS_FORMATS)}.",
                               details={"parameter": "records_format"})
    filters, q, fields = args.get("filters"), args.get("q"), args.listed("fields")
    if filters is not None and not isinstance(filters, dict):
        raise InvalidParameter("filters takes a JSON object of field names and values.",
                               details={"parameter": "filters"})
    args.boolean("distinct")
    args.boolean("plain", True)
    query = search_request(ref.schema, filters=filters, q=q, fields=fields, sort=args.text("sort"),
                           limit=max(limit, 1), offset=offset)
    secret = settings_secret(settings)
    plan = plan_records(query, ref.schema, list(ref.uris), ref.number, row_count=ref.row_count, cursor_secret=secret)
    found = ctx.engine.run(lambda cur: run_records(cur, plan, version=ref.number, limit=max(limit, 1),
                                                   time_limit_ms=settings.query_time_limit_ms, cursor_secret=secret))
    records = json.loads(found["results_json"])[:limit]
    names = fields or [f.name for f in ref.schema.fields]
    described = {f["id"]: f for f in field_dicts(ref.schema)}
    base = f"/api/3/action/datastore_search?resource_id={rid}"
    result: dict[str, Any] = {
        "resource_id": rid, "fields": [{"id": n, "type": described[n]["type"]} for n in names],
        "records": formatted_records(records, names, records_format), "records_format": records_format,
        "limit": limit, "offset": offset,
        "_links": {"start": base, "next": f"{base}&offset={offset + limit}"},
    }
    if records_format in ("csv", "tsv"):
        result["records_format"] = records_format
    if args.boolean("include_total", True):
        result["total"] = found["total_count"]
        result["total_was_estimated"] = False
    return result


@action("datastore_info")
def datastore_info(ctx: Context, args: Args) -> dict[str, Any]:
    """A resource's table: its row count and fields."""
    rid, ref = _version_of(ctx, args.text("id") or args.text("resource_id", required=True) or "")
    return {"meta": {"id": rid, "count": ref.row_count, "table_type": "BASE TABLE", "aliases": []},
            "fields": field_dicts(ref.schema)}


@action("datastore_search_sql")
def datastore_search_sql(ctx: Context, args: Args) -> dict[str, Any]:
    """One read-only SELECT through the SQL endpoint's sandbox; tables are resource ids ("name@3") or dataset names."""
    sql = args.text("sql", required=True) or ""
    answer = run_sql(ctx.hub, ctx.request.app.state.sql_pool, sql, private_of=ctx.reader)
    names = [c["name"] for c in answer["columns"]]
    return {"sql": sql, "fields": [{"id": c["name"], "type": c["type"]} for c in answer["columns"]],
            "records": [dict(zip(names, row)) for row in answer["rows"]],
            "records_truncated": answer["truncated"]}


DUMP_FORMATS = {"csv": ("csv", "text/csv; charset=utf-8"), "tsv": ("csv", "text/tab-separated-values; charset=utf-8"),
                "json": ("json", "application/json"), "xml": ("ndjson", "application/xml")}


@router.get("/datastore/dump/{resource_id}", response_model=None, summary="Download a resource's table")
def datastore_dump(request: Request, resource_id: str,
                   format: str = Query("csv", description="csv, tsv, json or xml."),  # noqa: A002
                   credential: Credential | None = Depends(get_credential)) -> Response:
    """Every row of a resource's table as CSV, TSV, JSON or XML (CKAN's DataStore dump)."""
    ctx = Context(request.app.state.hub, request.app.state.query_engine, request, _links(request),
                  private_of(credential))
    help_url = _help(ctx, "datastore_dump")
    try:
        if format not in DUMP_FORMATS:
            raise InvalidParameter(f"format must be one of {', '.join(DUMP_FORMATS)}; got '{format[:20]}'.",
                                   details={"parameter": "format"})
        rid, ref = _version_of(ctx, resource_id)
        fmt, media_type = DUMP_FORMATS[format]
        options = CsvOptions(delimiter="\t") if format == "tsv" else None
        result = export_version(ctx.hub, ctx.engine, ref, fmt, RecordsRequest(limit=None), options)
    except UrbandataError as exc:
        return _error_response("datastore_dump", help_url, exc)
    headers = {"Content-Disposition": f'attachment; filename="{rid}.{format}"', "X-Dataset-Version": str(ref.number)}
    if format != "xml" and isinstance(result, ExportFile) and not result.temporary:
        return FileResponse(result.path, media_type=media_type, headers=headers)
    chunks = read_file(result.path, delete=result.temporary) if isinstance(result, ExportFile) else result
    return StreamingResponse(xml_rows(chunks) if format == "xml" else chunks, media_type=media_type, headers=headers)
