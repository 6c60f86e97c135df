"""Harvest jobs: every run of every source, with its outcome (``GET /harvest/jobs``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session

from api.auth import get_credential, private_of
from api.deps import get_session
from api.params import int_query
from api.routes.catalog import offset_links
from api.routes.data import link_header
from catalogue.meta.job_reads import page_jobs, public_job, source_names
from catalogue.meta.tokens import Credential

router = APIRouter()


@router.get("/harvest/jobs")
def harvest_jobs(
    request: Request,
    response: Response,
    session: Session = Depends(get_session),
    status: str | None = Query(None, description="Only jobs with this status: queued, running, published, "
                               "unchanged, quarantined, failed or withdrawn (a dataset's job); running, finished or "
                               "failed (a catalogue run's)."),
    dataset: str | None = Query(None, description="Only jobs of this dataset."),
    catalogue: str | None = Query(None, description="Only the runs of this catalogue source (CKAN, DCAT)."),
    parent: int | None = int_query(None, ge=1, description="Only the dataset jobs of this catalogue run (its job id)."),
    limit: int = int_query(50, ge=1, le=500, description="Jobs per page, newest first."),
    offset: int = int_query(0, ge=0, description="Jobs to skip."),
    credential: Credential | None = Depends(get_credential),
) -> dict[str, Any]:
    """List harvest jobs, newest first: status, timings, bytes, rows added/changed/removed and errors.

    A catalogue run is a job too (``kind`` "catalogue", no dataset): it counts the datasets created, updated,
    unchanged, withdrawn and failed, lists each failure with the source record's id, and its datasets' jobs
    name it as ``parent``.
    """
    total, page = page_jobs(session, limit, offset, status=status, dataset=dataset,
                            private_of=private_of(credential), catalogue=catalogue, parent=parent)
    names = source_names(session, page)
    links = offset_links(request.app.state.hub.settings.public_url, request.url, offset, limit, total)
    if links:
        response.headers["Link"] = link_header(links)
    return {"total_count": total, "limit": limit, "offset": offset,
            "results": [public_job(j, names.get(j.source_id) if j.source_id else None) for j in page]}
