"""Harvest jobs as the public sees them: filtered, paged, with credentials redacted.

Jobs are written by ``catalogue.ingest.jobs`` alone; this module only reads them. A catalogue run's job
has no dataset: it is public (it names its catalogue, counts its datasets and lists its failures by the
source record's id), while its datasets' jobs are shown as their datasets are.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from catalogue.errors import InvalidParameter
from catalogue.meta.metadata import visible
from catalogue.meta.models import Dataset, HarvestJob, HarvestSource
from catalogue.redact import redact_text

# A dataset's job: running, then published, unchanged, quarantined, failed or withdrawn (by its catalogue);
# a catalogue run's: running, then finished or failed.
STATUSES = ("queued", "running", "published", "unchanged", "quarantined", "failed", "withdrawn", "finished")


def page_jobs(session: Session, limit: int, offset: int, *, status: str | None = None, dataset: str | None = None,
              private_of: int | None = None, catalogue: str | None = None,
              parent: int | None = None) -> tuple[int, list[HarvestJob]]:
    """How many jobs match, and one page of them, newest first (catalogue runs, and the jobs of datasets ``visible``).

    ``catalogue``: only the runs of that catalogue source; ``parent``: only the dataset jobs of that catalogue run.
    """
    if status is not None and status not in STATUSES:
        raise InvalidParameter(f"status '{status}' is not a job status; use one of {', '.join(STATUSES)}.",
                               details={"parameter": "status", "statuses": list(STATUSES)})
    query = (select(HarvestJob).outerjoin(Dataset, HarvestJob.dataset_id == Dataset.id)
             .where(or_(HarvestJob.dataset_id.is_(None), visible(private_of))))
    if status is not None:
        query = query.where(HarvestJob.status == status)
    if dataset is not None:
        query = query.where(Dataset.name == dataset)
    if catalogue is not None:
        query = query.where(HarvestJob.catalogue == catalogue)
    if parent is not None:
        query = query.where(HarvestJob.parent_id == parent)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(HarvestJob.id.desc()).limit(limit).offset(offset)
                           .options(selectinload(HarvestJob.dataset)))
    return total, list(rows)


def job_outcomes(session: Session) -> dict[str, tuple[int, int]]:
    """Every job so far by status: (how many, the rows they counted), of all datasets (for /metrics)."""
    rows = session.execute(select(HarvestJob.status, func.count(), func.coalesce(func.sum(HarvestJob.rows), 0))
                           .group_by(HarvestJob.status))
    return {status: (int(count), int(total or 0)) for status, count, total in rows}


def source_names(session: Session, jobs: list[HarvestJob]) -> dict[int, str]:
    """The name of each job's source, by source id (one query for a page)."""
    ids = {j.source_id for j in jobs if j.source_id is not None}
    if not ids:
        return {}
    rows = session.execute(select(HarvestSource.id, HarvestSource.name).where(HarvestSource.id.in_(sorted(ids))))
    return {source_id: name for source_id, name in rows}


def public_job(job: HarvestJob, source: str | None = None) -> dict[str, Any]:
    """A job as JSON-ready data: outcome, timings, bytes, rows, errors; no credential of its source.

    A catalogue run (``kind`` "catalogue") has no dataset; its source is its catalogue, ``counts`` says what
    became of the catalogue's datasets. A dataset's job in such a run names the run as ``parent``.
    """
    duration = (job.finished_at - job.started_at).total_seconds() if job.finished_at else None
    return {
        "id": job.id, "kind": "dataset" if job.catalogue is None else "catalogue",
        "dataset": job.dataset.name if job.dataset is not None else None,
        "source": source if job.catalogue is None else job.catalogue, "status": job.status,
        "error_code": job.error_code, "message": redact_text(job.message or ""),
        "started_at": job.started_at.isoformat(), "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "duration_s": round(duration, 3) if duration is not None else None,
        "version": job.version_number, "rows": job.rows, "bytes_received": job.bytes_received,
        "rows_added": job.rows_added, "rows_changed": job.rows_changed, "rows_removed": job.rows_removed,
        "errors": [_public_error(e) for e in job.errors or []], "has_report": job.report_key is not None,
        "catalogue": job.catalogue, "counts": job.counts, "parent": job.parent_id,
    }


def _public_error(error: dict[str, Any]) -> dict[str, Any]:
    return {k: redact_text(v) if isinstance(v, str) else v for k, v in error.items()}
