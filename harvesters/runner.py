"""Run harvest sources: fetch, then hand the delivery to the versioned store."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin

from sqlalchemy import select

from catalogue.errors import SourceNotFound, UrbandataError
from catalogue.hub import Hub
from catalogue.meta.models import HarvestJob, HarvestSource, utcnow
from catalogue.ingest.pipeline import ingest_delivery
from harvesters.base import SourceSpec


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


def harvest_source(hub: Hub, name: str) -> HarvestOutcome:
    """Harvest one source now; never raises for a source's fault, the outcome says it."""
    with hub.sessions.begin() as session:
        source = session.scalar(select(HarvestSource).where(HarvestSource.name == name))
        if source is None:
            known = ", ".join(session.scalars(select(HarvestSource.name).order_by(HarvestSource.name))) or "none"
            raise SourceNotFound(f"There is no harvest source named '{name}'. Known sources: {known}.")
        job = HarvestJob(source_id=source.id, dataset_id=source.dataset_id, status="running")
        session.add(job)
        session.flush()
        job_id, dataset = job.id, source.dataset.name
        raw_spec = (source.url, source.type, source.format, source.mode, dict(source.options), source.etag)
    url, kind, fmt, mode, options, etag = raw_spec
    try:
        spec = SourceSpec(name=name, dataset=dataset, url=resolve_url(hub, url), format=fmt, mode=mode,
                          options=options, etag=etag)
        harvester = hub.registry.get("harvesters", kind)(hub.settings)
        delivery = harvester.fetch(spec)
        if delivery is None:
            _close_job(hub, job_id, "unchanged", "source reports no change (HTTP 304)")
            return HarvestOutcome(name, dataset, "unchanged", f"{dataset}: source unchanged (HTTP 304)", job_id=job_id)
        result = ingest_delivery(hub, dataset, delivery, job_id=job_id)
    except UrbandataError as exc:
        _close_job(hub, job_id, "failed", exc.message, exc.code)
        return HarvestOutcome(name, dataset, "failed", f"{dataset}: {exc.message}", job_id=job_id, error_code=exc.code)
    with hub.sessions.begin() as session:
        finished = session.get(HarvestJob, job_id)
        if finished is not None:
            finished.bytes_received = delivery.provenance.get("delivery_bytes") or len(delivery.content)
        # Remember the ETag only for accepted deliveries: a quarantined one must be fetched again.
        stored = session.scalar(select(HarvestSource).where(HarvestSource.name == name))
        if stored is not None and result.status != "quarantined":
            stored.etag = delivery.provenance.get("etag")
    return HarvestOutcome(name, dataset, result.status, result.message, version=result.version, job_id=job_id)


def _close_job(hub: Hub, job_id: int, status: str, message: str, code: str | None = None) -> None:
    with hub.sessions.begin() as session:
        job = session.get(HarvestJob, job_id)
        if job is not None:
            job.status, job.message, job.error_code, job.finished_at = status, message, code, utcnow()
