"""The demo's parking feed (appended: each day of readings added makes a new version) in a folder a test serves."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path


class Feed:
    """The parking feed the feed server serves, one more day of readings per round."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header, *self.rows = path.read_text(encoding="utf-8").splitlines()
        self.days = 0

    def add_day(self) -> None:
        self.days += 1
        moved = []
        for row in self.rows:
            lot, stamp, rest = row.split(",", 2)
            moved.append(f"{lot},{(datetime.fromisoformat(stamp) + timedelta(days=self.days)).isoformat()},{rest}")
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write("\n".join(moved) + "\n")
