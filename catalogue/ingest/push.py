"""A pushed delivery: a publisher's system sends a file, it is ingested like a harvest, as a job of its own.

The HTTP side (api/routes/push.py) streams the body to a scratch file and
asks here; this module finds what the dataset expects (its publisher, its
source's CSV dialect), runs the one pipeline (``ingest_delivery``) under a
harvest job without a source, and words the answer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from catalogue.errors import InvalidParameter, UnsupportedDeliveryFormat
from catalogue.hub import Hub
from catalogue.ingest import jobs
from catalogue.ingest.delivery import MODES
from catalogue.ingest.pipeline import Delivery, IngestResult, ingest_delivery
from catalogue.meta.metadata import get_dataset
from catalogue.meta.models import HarvestSource

FORMATS = ("csv", "json", "ndjson", "geojson", "parquet")
MEDIA_TYPES = {
    "text/csv": "csv", "application/csv": "csv",
    "application/json": "json",
    "application/x-ndjson": "ndjson", "application/ndjson": "ndjson", "application/jsonl": "ndjson",
    "application/geo+json": "geojson",
    "application/vnd.apache.parquet": "parquet", "application/x-parquet": "parquet", "application/parquet": "parquet",
}
SHOWN_ERRORS = 100  # errors in a 422 answer; the whole report is at its report URL


@dataclass(frozen=True)
class PushTarget:
    """What a push needs to know of its dataset before reading the body."""

    dataset_id: int
    name: str
    publisher_id: int
    publisher: str
    current_version: int | None
    source_options: dict[str, Any]
    source_format: str | None


def push_target(hub: Hub, name: str) -> PushTarget:
    """The dataset ``name`` as a push target; DatasetNotFound if there is none."""
    with hub.sessions() as session:
        dataset = get_dataset(session, name)
        source = session.scalar(select(HarvestSource).where(HarvestSource.dataset_id == dataset.id).limit(1))
        current = dataset.current_version
        return PushTarget(dataset.id, dataset.name, dataset.publisher_id, dataset.publisher.name,
                          current.number if current else None, dict(source.options) if source else {},
                          source.format if source else None)


def delivery_format(requested: str | None, content_type: str | None) -> str:
    """The body's format: ``?format=`` if given, else from its Content-Type; 415 when neither names one we read."""
    if requested is not None:
        if requested not in FORMATS:
            raise UnsupportedDeliveryFormat(f"format '{requested}' is not one the hub reads; use one of "
                                            f"{', '.join(FORMATS)}.", details={"parameter": "format"})
        return requested
    media = (content_type or "").split(";")[0].strip().lower()
    if media in MEDIA_TYPES:
        return MEDIA_TYPES[media]
    raise UnsupportedDeliveryFormat(
        f"Content-Type '{media or '(none)'}' names no format the hub reads. Send one of "
        f"{', '.join(sorted(MEDIA_TYPES))}, or say the format with ?format= ({', '.join(FORMATS)}).",
        details={"header": "Content-Type", "formats": list(FORMATS)})


def check_mode(mode: str) -> str:
    """``mode`` if the pipeline has it; InvalidParameter (400) naming the ones it has."""
    if mode not in MODES:
        missing = " (upsert is not built into the ingest pipeline yet)" if mode == "upsert" else ""
        raise InvalidParameter(f"mode '{mode}' is not available{missing}; use one of {', '.join(MODES)}.",
                               details={"parameter": "mode", "modes": list(MODES)})
    return mode


_TURNS: dict[tuple[str, str], threading.Lock] = {}
_TURNS_GUARD = threading.Lock()


def _dataset_turn(hub: Hub, name: str) -> threading.Lock:
    """The lock under which this process ingests pushes to ``name``, one at a time.

    The commit is optimistic (``catalogue.ingest.commit.publish``): a delivery overtaken by another commit
    of its dataset is compared again, at most a few times. Ten clients appending at once overtook one
    another more often than that and got 409 commit-conflict; in turn, each is compared with the version
    the one before it made and commits at the first attempt. (Servers in several processes still rely on
    the commit's retries.) A push pinned with If-Match still gets its 409 when another landed first.
    """
    key = (str(hub.settings.data_dir), name)
    with _TURNS_GUARD:
        return _TURNS.setdefault(key, threading.Lock())


def push_delivery(hub: Hub, target: PushTarget, path: Path, fmt: str, mode: str, *, base_version: int | None,
                  provenance: dict[str, Any], size: int) -> tuple[IngestResult, int]:
    """Ingest the file at ``path`` (which is consumed) as a delivery for ``target``: the result and its job id.

    Any failure ends the job failed and is raised as one of our errors.
    """
    options = target.source_options if target.source_format == fmt else {}
    try:
        job_id = jobs.start(hub, None, target.dataset_id)
    except Exception as exc:
        path.unlink(missing_ok=True)
        raise jobs.describe(exc, hub) from exc
    delivery = Delivery(b"", fmt, options, mode, provenance, path=path, base_version=base_version)
    try:
        with _dataset_turn(hub, target.name):
            result = ingest_delivery(hub, target.name, delivery, job_id=job_id)
    except Exception as exc:  # noqa: BLE001 - every failure ends the job; jobs.fail describes it
        error = jobs.fail(hub, job_id, exc)
        if error is exc:
            raise
        raise error from exc
    finally:
        path.unlink(missing_ok=True)
    jobs.finish(hub, job_id, result, bytes_received=size)
    return result, job_id


def answer(hub: Hub, result: IngestResult, job_id: int) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body for what became of a pushed delivery."""
    prefix = f"{hub.settings.public_url.rstrip('/')}{hub.settings.api_prefix}/datasets/{result.dataset}"
    report_url = f"{prefix}/deliveries/{job_id}/report" if result.report_key else None
    if result.status == "quarantined":
        errors = report_errors(result.report)
        count = result.report.get("stats", {}).get("errors", len(errors))
        body = {"code": "delivery-invalid", "status": 422, "message": (
            f"The delivery has {count} validation error(s) and was quarantined; version "
            f"{result.version or '—'} stays current. Fix the rows listed and push again."),
            "details": {"delivery": job_id, "current_version": result.version, "error_count": count,
                        "errors": errors[:SHOWN_ERRORS], "report_url": report_url}}
        return 422, {"error": body}
    body = {"status": result.status, "dataset": result.dataset, "version": result.version, "rows": result.rows,
            "delivery": job_id, "message": result.message, "report_url": report_url,
            "version_url": f"{prefix}/versions/{result.version}" if result.version else None}
    if result.status == "published":
        body["changes"] = {k: (result.changes or {}).get(k, 0) for k in ("added", "removed", "changed")}
        return 201, body
    return 200, body


def report_errors(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The errors of a Frictionless report as (row, field, message), in the report's order."""
    found = list(report.get("errors", []))
    for task in report.get("tasks", []):
        found += task.get("errors", [])
    return [{"row": e.get("rowNumber"), "field": e.get("fieldName"), "type": e.get("type", ""),
             "message": str(e.get("message") or e.get("note", ""))} for e in found]
