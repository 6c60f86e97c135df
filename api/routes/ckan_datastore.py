"""CKAN's DataStore over the hub's versions: datastore_search, datastore_info, datastore_search_sql and the dump.

A resource id ``<dataset>@<version>`` names a version's table (a dataset's name alone: its current
version). Rows come from the records planner (:mod:`catalogue.query.ckan_datastore` translates the
parameters), SQL from the same sandbox as ``/api/v1/sql``, dumps from the export formats.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse

from api.auth import get_credential, private_of
from api.openapi_ckan import TAG as CKAN_TAG
from api.params import OWN_PARAMETERS
from api.routes.ckan_calls import Args, Context, action, error_response, help_url, links_of, visible_dataset
from api.stored_files import stored_response
from catalogue.errors import InvalidParameter, UrbandataError
from catalogue.meta import ckan_mapping as mapping
from catalogue.meta.tokens import Credential
from catalogue.query.ckan_datastore import (
    RECORDS_FORMATS, field_dicts, formatted_records, search_request, xml_rows,
)
from catalogue.query.cursors import settings_secret
from catalogue.query.engine import VersionRef
from catalogue.query.exports import CsvOptions, ExportFile, StoredExport, chunks_of, export_version
from catalogue.query.paging import page_limit
from catalogue.query.planning import RecordsRequest
from catalogue.query.records import plan_records, run_records
from catalogue.sql.runner import run_sql

router = APIRouter()


def _version_of(ctx: Context, resource: str) -> tuple[str, VersionRef]:
    """The version a resource id (or a dataset name: its current version) names, and the id to answer with."""
    if "@" in resource:
        ref = mapping.parse_resource_id(resource)
        name, number = ref.name, ref.number
    else:
        name, number = resource, None
    with ctx.session() as session:
        visible_dataset(ctx, session, name)
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


# OWN_PARAMETERS: the dump refuses an unknown parameter itself, in CKAN's envelope.
@router.get("/datastore/dump/{resource_id}", response_model=None, tags=[CKAN_TAG],
            openapi_extra={OWN_PARAMETERS: True}, summary="Download a resource's table")
def datastore_dump(request: Request, resource_id: str,
                   format: str = Query("csv", description="csv, tsv, json or xml."),  # noqa: A002
                   credential: Credential | None = Depends(get_credential)) -> Response:
    """Every row of a resource's table as CSV, TSV, JSON or XML (CKAN's DataStore dump)."""
    ctx = Context(request.app.state.hub, request.app.state.query_engine, request, links_of(request),
                  private_of(credential))
    url = help_url(ctx, "datastore_dump")
    try:
        unknown = [k for k in request.query_params if k != "format"]
        if unknown:
            raise InvalidParameter(f"The dump takes no parameter '{unknown[0]}'; it takes format.",
                                   details={"parameter": unknown[0]})
        if format not in DUMP_FORMATS:
            raise InvalidParameter(f"format must be one of {', '.join(DUMP_FORMATS)}; got '{format[:20]}'.",
                                   details={"parameter": "format"})
        rid, ref = _version_of(ctx, resource_id)
        fmt, media_type = DUMP_FORMATS[format]
        options = CsvOptions(delimiter="\t") if format == "tsv" else None
        result = export_version(ctx.hub, ctx.engine, ref, fmt, RecordsRequest(limit=None), options)
    except UrbandataError as exc:
        return error_response("datastore_dump", url, exc)
    headers = {"Content-Disposition": f'attachment; filename="{rid}.{format}"', "X-Dataset-Version": str(ref.number)}
    if isinstance(result, StoredExport):  # no dump format is sent as stored; this keeps it so if one is
        return stored_response(request, ctx.hub, result.key, media_type, headers)
    if format != "xml" and isinstance(result, ExportFile) and not result.temporary:
        return FileResponse(result.path, media_type=media_type, headers=headers)
    chunks = chunks_of(ctx.hub, result)
    return StreamingResponse(xml_rows(chunks) if format == "xml" else chunks, media_type=media_type, headers=headers)
