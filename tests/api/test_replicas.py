"""Two API replicas (`urbandata serve` processes) on one PostgreSQL catalogue and one store (issue 19).

A push through one replica is read at once through the other (no cache of either serves the old version),
and the other's stream of live values hears it through PostgreSQL's NOTIFY (catalogue/pg_notices.py), not
through its poll: the replicas poll every 600 s here, far beyond the test's wait.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from catalogue.commit_notices import CommitNotices
from catalogue.hub import Hub
from catalogue.pg_notices import CommitListener, notify_commit
from tests.api.live_server import live_server
from tests.api.push_support import bearer, token
from tests.api.test_stream import FIRST, SCHEMA, events, next_event, reading
from tests.conftest import pg_schema

POLL_S = 600.0  # the replicas' look at the current version: never within the test
WAIT_S = 60.0  # how long the test waits for an event (well below POLL_S)
API = "/api/v1/datasets/readings"


@pytest.fixture
def catalogue(make_catalogue: Any) -> Iterator[tuple[Hub, dict[str, Any]]]:
    with pg_schema("replicas") as database:
        hub: Hub = make_catalogue("readings", SCHEMA, FIRST, **database)
        settings = {"data_dir": str(hub.settings.data_dir), "definitions_dir": str(hub.settings.definitions_dir),
                    "stream_poll_s": POLL_S, "stream_heartbeat_s": 0.5, **database}
        yield hub, settings
        hub.engine.dispose()


@pytest.fixture
def replicas(catalogue: tuple[Hub, dict[str, Any]], tmp_path: Path) -> Iterator[tuple[str, str]]:
    _, settings = catalogue
    with live_server(settings, tmp_path / "a.log") as a, live_server(settings, tmp_path / "b.log") as b:
        yield f"{a}/api/v1", f"{b}/api/v1"


def _csv(*lines: str) -> bytes:
    return ("sensor,at,value\n" + "".join(lines)).encode()


def test_a_push_through_one_replica_is_read_and_streamed_through_the_other(
        catalogue: tuple[Hub, dict[str, Any]], replicas: tuple[str, str]) -> None:
    hub, _ = catalogue
    a, b = replicas
    pusher = {**bearer(token(hub, "testamt", "push")), "Content-Type": "text/csv"}
    # Both replicas answer version 1 (and keep it in their result caches).
    for base in (a, b):
        assert httpx.get(f"{base}/datasets/readings/records", timeout=30).headers["X-Dataset-Version"] == "1"
    with httpx.Client(timeout=WAIT_S) as client, client.stream("GET", f"{b}/datasets/readings/stream") as response:
        assert response.status_code == 200
        stream = events(response)
        assert next(stream) == {"comment": "live values of version 1 on"}
        # B's listener may still be connecting when the first push commits (a notice it missed is only
        # heard at the next poll): push again until an event arrives, each push a new version through A.
        minute, event, started = 1, None, time.monotonic()
        while event is None and time.monotonic() - started < WAIT_S:
            answer = httpx.post(f"{a}/datasets/readings/deliveries?mode=append",
                                content=_csv(reading("z", minute, float(minute))), headers=pusher, timeout=60)
            assert answer.status_code == 201, answer.text
            event = _event_within(stream, 3.0)
            minute += 1
        assert event is not None, f"replica B heard no commit of replica A within {WAIT_S} s (poll: {POLL_S} s)"
        assert event["event"] == "rows" and int(event["id"]) >= 2
        assert {"sensor": "z", "at": "2026-12-01T00:01:00", "value": 1.0} in json.loads(event["data"])["rows"]
    newest = minute  # versions 2..minute were pushed: the first page was version 1
    for base in (a, b):  # both serve the newest version at once, though both had version 1 cached
        answer = httpx.get(f"{base}/datasets/readings/records", params={"where": "sensor = 'z'"}, timeout=30)
        assert answer.headers["X-Dataset-Version"] == str(newest)
        assert answer.json()["total_count"] == minute - 1


def _event_within(stream: Iterator[dict[str, str]], seconds: float) -> dict[str, str] | None:
    """The next event if one comes within ``seconds`` of heartbeats (0.5 s apart), else None."""
    for _ in range(int(seconds / 0.5) + 1):
        item = next(stream)
        if "comment" not in item:
            return item
    return None


def test_the_listener_hands_on_other_processes_notices_of_its_own_catalogue_only(
        catalogue: tuple[Hub, dict[str, Any]]) -> None:
    hub, _ = catalogue
    heard: list[tuple[str, int]] = []
    notices = CommitNotices()
    notices.listen(lambda dataset, number: heard.append((dataset, number)))
    listener = CommitListener(hub.engine, notices).start()
    try:
        deadline = time.monotonic() + WAIT_S
        while not listener.listening and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listener.listening
        notify_commit(hub.engine, "readings", 7)  # this process's own notice: heard in-process, not again
        with pg_schema("replicas_other") as other:  # another catalogue on the same server
            from sqlalchemy import create_engine

            foreign = create_engine(other["database_url"])
            notify_commit(foreign, "readings", 8)
            foreign.dispose()
        listener._hand_on(json.dumps({"schema": "x", "dataset": "readings", "number": 9, "pid": -1}), "y")
        listener._hand_on("not json", "y")  # an unreadable notice is logged and ignored
        listener._hand_on(json.dumps({"schema": "y", "dataset": "readings", "number": 10, "pid": -1}), "y")
        time.sleep(1.5)
        assert heard == [("readings", 10)]
    finally:
        listener.stop()
