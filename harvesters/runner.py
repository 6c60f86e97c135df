"""Run harvest sources: fetch, then hand the delivery to the versioned store."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urljoin

from sqlalchemy import select

from catalogue.errors import SourceNotFound, UrbandataError
from catalogue.hub import Hub
from catalogue.ingest import jobs
from catalogue.ingest.commit import current_version
from catalogue.meta.models import HarvestSource
from catalogue.ingest.pipeline import Delivery, IngestResult, ingest_delivery
from harvesters.base import SourceSpec

log = logging.getLogger(__name__)


@dataclass
class HarvestOutcome:
    """What one harvest run did."""

    source: str
    dataset: str
    status: str  # published | unchanged | quarantined | failed
    message: str
    version: int | None = None
    job_id: int | None = None
    error_code: str | None = None
    seconds: float | None = None  # wall time of the run
    changes: dict[str, Any] | None = None  # rows added, removed, changed of a published version


def list_sources(hub: Hub) -> list[str]:
    """Names of every harvest source."""
    with hub.sessions() as session:
        return list(session.scalars(select(HarvestSource.name).order_by(HarvestSource.name)))


def resolve_url(hub: Hub, url: str) -> str:
    """An absolute URL: relative ones resolve against the configured feed base URL."""
    if "://" in url:
        return url
    base = hub.settings.feed_base_url
    if not base:
        raise UrbandataError(
            f"The source URL '{url}' is relative, but no feed base URL is configured. "
            "Set URBANDATA_FEED_BASE_URL or use an absolute URL."
        )
    return urljoin(base.rstrip("/") + "/", url)


def harvest_source(hub: Hub, name: str, job_id: int | None = None) -> HarvestOutcome:
    """Harvest one source now (``run_source``), with the run's wall time on its outcome."""
    began = time.monotonic()
    outcome = run_source(hub, name, job_id)
    return replace(outcome, seconds=round(time.monotonic() - began, 3))


def run_source(hub: Hub, name: str, job_id: int | None = None) -> HarvestOutcome:
    """Harvest one source now; never raises for a source's fault or a failed ingest, the outcome says it.

    ``job_id``: the running job a scheduler claimed for this run (``jobs.claim``); None starts one.

    Every exception after the job started, ours included (a full disk, a busy
    database, a bug), ends the job as ``failed`` with a clear message.
    """
    with hub.sessions() as session:
        source = session.scalar(select(HarvestSource).where(HarvestSource.name == name))
        if source is None:
            known = ", ".join(session.scalars(select(HarvestSource.name).order_by(HarvestSource.name))) or "none"
            raise SourceNotFound(f"There is no harvest source named '{name}'. Known sources: {known}.")
        source_id, dataset_id, dataset = source.id, source.dataset_id, source.dataset.name
        url, kind, fmt, mode, options, etag, last_modified = (
            source.url, source.type, source.format, source.mode, dict(source.options), source.etag,
            source.last_modified)
    try:
        job_id = jobs.start(hub, source_id, dataset_id) if job_id is None else job_id
    except Exception as exc:  # noqa: BLE001 - the database cannot take the job (full, gone): say so, no job
        error = jobs.describe(exc, hub)
        return HarvestOutcome(name, dataset, "failed", f"{dataset}: {error.message}", error_code=error.code)
    try:
        spec = SourceSpec(name=name, dataset=dataset, url=resolve_url(hub, url), format=fmt, mode=mode,
                          options=options, etag=etag, last_modified=last_modified)
        delivery = hub.registry.get("harvesters", kind)(hub.settings).fetch(spec)
        result = None if delivery is None else ingest_delivery(hub, dataset, delivery, job_id=job_id)
    except Exception as exc:  # noqa: BLE001 - every failure ends the job; jobs.fail describes it
        error = jobs.fail(hub, job_id, exc)
        return HarvestOutcome(name, dataset, "failed", f"{dataset}: {error.message}", job_id=job_id,
                              error_code=error.code)
    _record(hub, job_id, source_id, delivery, result)
    if result is None:
        current = current_version(hub, dataset)
        return HarvestOutcome(name, dataset, "unchanged", f"{dataset}: source unchanged (HTTP 304)",
                              version=current.number if current else None, job_id=job_id)
    return HarvestOutcome(name, dataset, result.status, result.message, version=result.version, job_id=job_id,
                          changes=result.changes if result.status == "published" else None)


def _record(hub: Hub, job_id: int, source_id: int, delivery: Delivery | None, result: IngestResult | None) -> None:
    """Keep what became of the delivery on its job, and the source's ETag.

    The delivery's fate is settled by now: if this write fails (the database
    is full), the job stays ``running`` until the collector settles it from
    the versions (``catalogue.ingest.jobs.interrupt_orphans``).
    """
    try:
        if delivery is None or result is None:
            jobs.finish(hub, job_id, None, note="source reports no change (HTTP 304)")
            return
        jobs.finish(hub, job_id, result, bytes_received=delivery.provenance.get("delivery_bytes") or len(delivery.content))
        # Remember the validators only for accepted deliveries: a quarantined one must be fetched again.
        if result.status != "quarantined":
            _remember_validators(hub, source_id, delivery.provenance.get("etag"),
                                 delivery.provenance.get("last_modified"))
    except Exception as exc:  # noqa: BLE001 - said once, without a traceback; nothing published changes
        log.warning("harvest job %s: its outcome could not be recorded: %s", job_id, jobs.describe(exc, hub).message)


def _remember_validators(hub: Hub, source_id: int, etag: str | None, last_modified: str | None) -> None:
    """The source's ETag and Last-Modified, for the next run's conditional request."""
    with hub.sessions.begin() as session:
        source = session.get(HarvestSource, source_id)
        if source is not None:
            source.etag, source.last_modified = etag, last_modified
