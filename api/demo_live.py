"""The demo city's live feed: while ``urbandata demo`` serves, Stadtwerke push car park readings every few seconds.

A subsidiary's cron job, played in a thread: it reads the newest reading of
each car park from the served API (``/latest``), walks each occupancy a few
places up or down, and pushes the next quarter hour's readings as a CSV
delivery through the real push API (``POST /deliveries?mode=append``) with a
push token of its publisher. So ``/latest`` and ``/stream`` show values that
move while the demo runs.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx

from catalogue.background import BackgroundThread
from catalogue.hub import Hub

log = logging.getLogger(__name__)

DATASET = "parking-occupancy"
PUBLISHER = "stadtwerke"
INTERVAL_S = 5.0
STEP = timedelta(minutes=15)  # the feed's own rhythm: one reading per car park and quarter hour
HEADER = "lot_id,timestamp,occupied,free,capacity,location\n"


def next_readings(latest: list[dict[str, Any]], rng: random.Random) -> str:
    """The CSV of each car park's next reading after its ``latest`` one (occupancy moves by up to 5 % of capacity)."""
    lines = []
    for row in latest:
        capacity = int(row["capacity"])
        step = max(1, capacity // 20)
        occupied = min(capacity, max(0, int(row["occupied"]) + rng.randint(-step, step)))
        at = datetime.fromisoformat(str(row["timestamp"]).replace("Z", "+00:00")) + STEP
        lon, lat = row["location"]["coordinates"][:2]
        lines.append(f'{row["lot_id"]},{at.strftime("%Y-%m-%dT%H:%M:%S")},{occupied},{capacity - occupied},'
                     f'{capacity},"{lon}, {lat}"\n')
    return HEADER + "".join(lines)


class LiveFeed(BackgroundThread):
    """A thread pushing parking readings to the API at ``base_url`` every ``interval_s`` seconds until stopped."""

    def __init__(self, hub: Hub, base_url: str, interval_s: float = INTERVAL_S) -> None:
        super().__init__("demo-live-feed")
        self.hub, self.interval_s = hub, interval_s
        self.url = f"{base_url.rstrip('/')}{hub.settings.api_prefix}/datasets/{DATASET}"
        self.pushed = 0

    def _run(self) -> None:
        from catalogue.meta.tokens import create_token  # the push helper's token store

        token, _ = create_token(self.hub, PUBLISHER, "demo live feed", ["push"], expires_in_days=1)
        rng = random.Random(16)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/csv"}
        with httpx.Client(timeout=30, headers=headers) as client:
            while not self.stopped.wait(self.interval_s):
                try:
                    self._push_once(client, rng)
                except (httpx.HTTPError, KeyError, ValueError) as exc:
                    log.warning("demo live feed: a push failed (%s); trying again in %.0f s", exc, self.interval_s)

    def _push_once(self, client: httpx.Client, rng: random.Random) -> None:
        latest = client.get(f"{self.url}/latest", params={"limit": 100})
        latest.raise_for_status()
        body = next_readings(latest.json()["results"], rng)
        answer = client.post(f"{self.url}/deliveries", params={"mode": "append"}, content=body.encode(),
                             headers={"Idempotency-Key": f"demo-{time.time_ns()}"})
        answer.raise_for_status()
        self.pushed += 1


def local_url(host: str, port: int) -> str:
    """The URL this machine reaches a server listening on ``host``:``port`` at."""
    address = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"


@contextmanager
def feeding(hub: Hub, host: str, port: int, interval_s: float = INTERVAL_S) -> Iterator[LiveFeed]:
    """Push parking readings to the server listening on ``host``:``port`` while the block runs (the demo's serve)."""
    feed = LiveFeed(hub, local_url(host, port), interval_s).start()
    try:
        yield feed
    finally:
        feed.stop()
