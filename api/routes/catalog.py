"""Catalogue metadata routes: datasets, versions, deliveries, publishers."""

from __future__ import annotations

import json
from typing import Any

from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.datastructures import URL
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.auth import get_credential, private_of
from api.deps import get_hub, get_session
from api.params import int_path, int_query
from api.routes.data import link_header
from api.routes.dcat import dataset_rdf, rdf_syntax
from catalogue.errors import NotFound
from catalogue.query.metadata_exporters import load_descriptor
from catalogue.hub import Hub
from catalogue.meta.metadata import (
    dataset_dict, get_dataset, get_publisher, get_version, job_dict, list_jobs,
    list_publishers, list_versions, page_datasets, publisher_dict, storable, version_dict, visible,
)
from catalogue.meta.models import Dataset, HarvestJob
from catalogue.meta.extent import parse_bbox
from catalogue.meta.search import search_datasets
from catalogue.meta.tokens import Credential

router = APIRouter()


@router.get("/datasets")
def datasets(
    request: Request,
    response: Response,
    session: Session = Depends(get_session),
    limit: int = int_query(100, ge=1, le=1000, description="Datasets per page."),
    offset: int = int_query(0, ge=0, description="Datasets to skip."),
    publisher: str | None = Query(None, description="Only datasets of this publisher."),
    q: str | None = Query(None, description="Search: datasets whose title, description or keywords contain "
                          "every word (case-insensitive); title matches first."),
    bbox: str | None = Query(None, description="Area search: datasets whose spatial extent intersects this box, "
                             "west,south,east,north in degrees (WGS 84), e.g. 9.9,53.5,10.1,53.6."),
    credential: Credential | None = Depends(get_credential),
) -> dict[str, Any]:
    """List datasets with their metadata and current version, or search them with `q` and/or by area with `bbox`."""
    area = parse_bbox(bbox) if bbox is not None else None
    if q is not None or area is not None:
        hits = search_datasets(session, q, limit, offset, publisher=publisher, private_of=private_of(credential),
                               bbox=area)
        total, page = hits.total, hits.datasets
    else:
        total, page = page_datasets(session, limit, offset, publisher, private_of=private_of(credential))
    links = offset_links(request.app.state.hub.settings.public_url, request.url, offset, limit, total)
    if links:
        response.headers["Link"] = link_header(links)
    return {"total_count": total, "limit": limit, "offset": offset, "results": [dataset_dict(d) for d in page]}


def offset_links(public_url: str, url: URL, offset: int, limit: int, total: int) -> dict[str, str]:
    """``next`` and ``prev`` of an offset-paged list, under the configured public URL (never the Host header)."""
    def at(start: int) -> str:
        pairs = [(k, v) for k, v in parse_qsl(url.query, keep_blank_values=True) if k not in ("offset", "limit")]
        return f"{public_url.rstrip('/')}{url.path}?{urlencode([*pairs, ('limit', str(limit)), ('offset', str(start))])}"
    links = {}
    if offset + limit < total:
        links["next"] = at(offset + limit)
    if offset > 0:
        links["prev"] = at(max(0, offset - limit))
    return links


@router.get("/datasets/{name}", response_model=None)
def dataset(name: str, request: Request, response: Response,
            session: Session = Depends(get_session)) -> dict[str, Any] | Response:
    """One dataset's metadata, Table Schema and current version; DCAT-AP.de when Accept prefers RDF."""
    syntax = rdf_syntax(request.headers.get("accept", ""))
    if syntax is not None:
        return dataset_rdf(request, session, name, syntax)
    response.headers["Vary"] = "Accept"
    return dataset_dict(get_dataset(session, name))


@router.get("/datasets/{name}/versions")
def versions(name: str, session: Session = Depends(get_session)) -> dict[str, Any]:
    """Every published version of a dataset, newest first."""
    ds = get_dataset(session, name)
    found = [version_dict(v) for v in list_versions(session, ds)]
    return {"dataset": name, "total_count": len(found), "results": found}


@router.get("/datasets/{name}/versions/{number}")
def version(
    name: str, number: int = int_path(description="Version number."), session: Session = Depends(get_session), hub: Hub = Depends(get_hub)
) -> dict[str, Any]:
    """One version with its Frictionless Data Package descriptor."""
    ds = get_dataset(session, name)
    v = get_version(session, ds, number)
    return {"dataset": name, **version_dict(v), "datapackage": load_descriptor(hub, v)}


@router.get("/datasets/{name}/deliveries")
def deliveries(
    name: str, session: Session = Depends(get_session),
    limit: int = int_query(50, ge=1, le=500, description="Deliveries listed, newest first."),
) -> dict[str, Any]:
    """The latest deliveries (harvests) of a dataset with their outcome."""
    ds = get_dataset(session, name)
    found = [job_dict(j) for j in list_jobs(session, ds, limit)]
    return {"dataset": name, "results": found}


@router.get("/datasets/{name}/deliveries/{job_id}/report")
def delivery_report(
    name: str, job_id: int = int_path(description="The delivery's number, as listed under deliveries."), session: Session = Depends(get_session), hub: Hub = Depends(get_hub)
) -> dict[str, Any]:
    """The Frictionless validation report of one delivery."""
    ds = get_dataset(session, name)
    job = session.get(HarvestJob, job_id) if storable(job_id) else None
    if job is None or job.dataset_id != ds.id or job.report_key is None:
        raise NotFound(f"Dataset '{name}' has no delivery {job_id} with a validation report.")
    return json.loads(hub.storage.read_bytes(job.report_key))  # type: ignore[no-any-return]


@router.get("/publishers")
def publishers(session: Session = Depends(get_session),
               credential: Credential | None = Depends(get_credential)) -> dict[str, Any]:
    """Every publisher with its number of datasets (those the reader may see)."""
    counts = dict(session.execute(select(Dataset.publisher_id, func.count()).where(visible(private_of(credential)))
                                  .group_by(Dataset.publisher_id)).all())
    found = [{**publisher_dict(p), "dataset_count": counts.get(p.id, 0)} for p in list_publishers(session)]
    return {"total_count": len(found), "results": found}


@router.get("/publishers/{name}")
def publisher(name: str, session: Session = Depends(get_session),
              credential: Credential | None = Depends(get_credential)) -> dict[str, Any]:
    """One publisher and the names of its datasets (those the reader may see)."""
    org = get_publisher(session, name)
    names = list(session.scalars(select(Dataset.name).where(Dataset.publisher_id == org.id,
                                                            visible(private_of(credential))).order_by(Dataset.name)))
    return {**publisher_dict(org), "datasets": names}
