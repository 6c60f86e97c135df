"""What arrives (a delivery) and what became of it (an ingest result)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODES = ("replace", "append", "upsert")


@dataclass
class Delivery:
    """What was delivered for one dataset, how to read it and where it came from.

    Small deliveries carry their bytes in ``content``; large ones lie in a
    scratch file at ``path`` (the harvester streams to disk), which the store
    moves into quarantine or deletes when done.
    """

    content: bytes
    format: str
    options: dict[str, Any] = field(default_factory=dict)
    mode: str = "replace"
    provenance: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    # The version the sender based it on (a push's If-Match; 0: none yet): published only while that is current.
    base_version: int | None = None

    @property
    def source(self) -> bytes | Path:
        """The file if there is one, else the bytes."""
        return self.path if self.path is not None else self.content


@dataclass
class IngestResult:
    """What became of a delivery; ``note`` is the short line kept on its harvest job."""

    status: str  # published | unchanged | quarantined
    dataset: str
    version: int | None
    rows: int
    report: dict[str, Any]
    changes: dict[str, Any] | None = None
    report_key: str | None = None
    note: str = ""

    @property
    def message(self) -> str:
        """One line for people: what happened."""
        if self.status == "published":
            c = self.changes or {}
            return (f"{self.dataset}: published version {self.version} ({self.rows} rows; "
                    f"+{c.get('added', 0)} −{c.get('removed', 0)} ~{c.get('changed', 0)})")
        if self.status == "unchanged":
            return f"{self.dataset}: unchanged, version {self.version} stays current"
        count = self.report.get("stats", {}).get("errors", 0)
        return f"{self.dataset}: quarantined, {count} validation errors; version {self.version or '—'} stays current"
