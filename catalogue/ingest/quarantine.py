"""Quarantine: an invalid delivery is kept, with its report, beside the store; nothing is published."""

from __future__ import annotations

import json
from typing import Any

from catalogue.hub import Hub
from catalogue.ingest.delivery import Delivery, IngestResult
from catalogue.meta.models import Version, utcnow


def quarantine(
    hub: Hub, name: str, delivery: Delivery, report: dict[str, Any], *, current: Version | None, rows: int,
    job_id: int | None = None,
) -> IngestResult:
    """Keep ``delivery`` and its ``report`` under ``quarantine/<name>/``; the current version stays."""
    stamp = f"job-{job_id}" if job_id else utcnow().strftime("%Y%m%dT%H%M%S%f")
    base = f"quarantine/{name}/{stamp}"
    if delivery.path is not None:
        hub.storage.publish_file(f"{base}/delivery.{delivery.format}", delivery.path)
    else:
        hub.storage.write_bytes(f"{base}/delivery.{delivery.format}", delivery.content)
    report_key = f"{base}/report.json"
    hub.storage.write_bytes(report_key, json.dumps(report, indent=1, ensure_ascii=False).encode())
    count = report.get("stats", {}).get("errors", 0)
    number = current.number if current else None
    return IngestResult("quarantined", name, number, rows, report, report_key=report_key,
                        note=f"{count} validation errors; delivery quarantined")
