"""Data routes: records as JSON and whole-version exports."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy.orm import Session

from api.deps import get_engine, get_hub, get_session
from catalogue.errors import InvalidParameter
from catalogue.exports import MEDIA_TYPES, parquet_file
from catalogue.hub import Hub
from catalogue.metadata import get_dataset, get_version
from catalogue.query import EXPORT_FORMATS, QueryEngine, VersionRef

router = APIRouter()

VERSION_QUERY = Query(None, ge=1, description="Version number to read; default: the current version.")


def _resolve(hub: Hub, session: Session, name: str, version: int | None) -> VersionRef:
    ds = get_dataset(session, name)
    return VersionRef.of(hub, ds, get_version(session, ds, version))


@router.get("/datasets/{name}/records")
def records(
    request: Request,
    response: Response,
    name: str,
    limit: int | None = Query(None, ge=0, description="Rows per page (default 100, at most the configured maximum)."),
    offset: int = Query(0, ge=0, description="Rows to skip."),
    version: int | None = VERSION_QUERY,
    session: Session = Depends(get_session),
    hub: Hub = Depends(get_hub),
    engine: QueryEngine = Depends(get_engine),
) -> dict[str, Any]:
    """Rows of a dataset version as JSON objects (geometry as GeoJSON)."""
    settings = hub.settings
    if limit is None:
        limit = settings.default_page_size
    if limit > settings.max_returned_rows:
        raise InvalidParameter(
            f"limit={limit} is above the maximum of {settings.max_returned_rows} rows per page. "
            f"Page with offset, or use /exports for the whole dataset.",
            details={"parameter": "limit", "maximum": settings.max_returned_rows},
        )
    ref = _resolve(hub, session, name, version)
    page = engine.records(ref, limit=limit, offset=offset)
    response.headers["X-Dataset-Version"] = str(ref.number)
    links: dict[str, str] = {}
    if offset + limit < page["total_count"]:
        links["next"] = str(request.url.include_query_params(offset=offset + limit, limit=limit, version=ref.number))
    return {"dataset": name, "version": ref.number, "limit": limit, "offset": offset, **page, "links": links}


@router.get("/datasets/{name}/exports/{fmt}")
def export(
    name: str,
    fmt: str,
    version: int | None = VERSION_QUERY,
    session: Session = Depends(get_session),
    hub: Hub = Depends(get_hub),
    engine: QueryEngine = Depends(get_engine),
) -> Response:
    """The whole version as csv, json, ndjson, geojson or parquet (streamed)."""
    if fmt not in EXPORT_FORMATS:
        raise InvalidParameter(f"Unknown export format '{fmt}'. Use one of: {', '.join(EXPORT_FORMATS)}.")
    ref = _resolve(hub, session, name, version)
    filename = f"{name}-v{ref.number}.{fmt}"
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "X-Dataset-Version": str(ref.number),
        "ETag": f'"{ref.content_hash}-{fmt}"',
        # A pinned version never changes; the current one may move on.
        "Cache-Control": "public, max-age=31536000, immutable" if version else "public, max-age=60",
    }
    if fmt == "parquet":
        return FileResponse(parquet_file(hub, engine, ref), media_type=MEDIA_TYPES[fmt], headers=headers)
    return StreamingResponse(engine.export(ref, fmt), media_type=MEDIA_TYPES[fmt], headers=headers)
