"""Frictionless Data Packages of a version: the descriptor, its parts where it names them, and two zips."""

from __future__ import annotations

import json
from pathlib import Path as FilePath

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from api.deps import get_engine, get_hub, get_session
from api.stored_files import stored_response
from api.params import int_path
from catalogue.errors import NotFound
from catalogue.hub import Hub
from catalogue.meta.metadata import get_dataset, get_version
from catalogue.query.engine import QueryEngine
from catalogue.query.exports import read_file
from catalogue.query.metadata_exporters import load_descriptor
from catalogue.query.packages import part_file_key, readable_descriptor, write_csv_package, write_parquet_package

router = APIRouter()

IMMUTABLE = "public, max-age=31536000, immutable"  # a numbered version never changes
VERSION = "/datasets/{name}/versions/{number}"


@router.get(f"{VERSION}/datapackage.json", response_model=None)
def datapackage(
    name: str, number: int = int_path(description="Version number."), session: Session = Depends(get_session),
    hub: Hub = Depends(get_hub),
) -> Response:
    """The version's Data Package descriptor: one Parquet resource per part, each served beside it under parts/."""
    v = get_version(session, get_dataset(session, name), number)
    body = json.dumps(readable_descriptor(load_descriptor(hub, v)), ensure_ascii=False, indent=2).encode()
    return Response(body, media_type="application/json", headers={"Cache-Control": IMMUTABLE})


@router.get(f"{VERSION}/parts/{{file_name}}", response_model=None)
def part(
    name: str, number: int = int_path(description="Version number."),
    file_name: str = Path(description="`<sha256>.parquet`, as the descriptor names the part."),
    session: Session = Depends(get_session), hub: Hub = Depends(get_hub), *, request: Request,
) -> Response:
    """One Parquet part of a version, as stored (content-addressed: cacheable forever; Range answered)."""
    v = get_version(session, get_dataset(session, name), number)
    key = part_file_key(name, v, file_name)
    if key is None:
        raise NotFound(f"Version {number} of dataset '{name}' has no part '{file_name}'; its datapackage.json "
                       "lists the parts.")
    headers = {"Cache-Control": IMMUTABLE, "ETag": f'"{file_name.removesuffix(".parquet")}"'}
    return stored_response(request, hub, key, "application/vnd.apache.parquet", headers)


@router.get(f"{VERSION}/datapackage.zip", response_model=None)
async def package_zip(
    name: str, number: int = int_path(description="Version number."), hub: Hub = Depends(get_hub),
    session: Session = Depends(get_session),
) -> Response:
    """The version as one zip: datapackage.json and its Parquet parts."""

    def build() -> FilePath:
        v = get_version(session, get_dataset(session, name), number)
        return write_parquet_package(hub, name, v, load_descriptor(hub, v))

    return _zip(await run_in_threadpool(build), f"{name}-v{number}.zip")


@router.get(f"{VERSION}/datapackage-csv.zip", response_model=None)
async def csv_package_zip(
    name: str, number: int = int_path(description="Version number."), hub: Hub = Depends(get_hub),
    engine: QueryEngine = Depends(get_engine), session: Session = Depends(get_session),
) -> Response:
    """The version as a CSV-based Data Package in one zip: datapackage.json and the rows as CSV."""

    def build() -> FilePath:
        descriptor = load_descriptor(hub, get_version(session, get_dataset(session, name), number))
        return write_csv_package(hub, engine, engine.version(name, number), descriptor)

    return _zip(await run_in_threadpool(build), f"{name}-v{number}-csv.zip")


def _zip(path: FilePath, file_name: str) -> Response:
    """A scratch zip sent and then deleted."""
    headers = {"Content-Disposition": f'attachment; filename="{file_name}"', "Cache-Control": IMMUTABLE,
               "Content-Length": str(path.stat().st_size)}
    return StreamingResponse(read_file(path, delete=True), media_type="application/zip", headers=headers)
