"""GET /datasets/{name}/stream: Server-Sent Events of each committed delivery's new rows, on a real uvicorn server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from anyio import to_thread

from api.app import create_app
from api.live_channels import LiveChannels
from catalogue.hub import Hub
from catalogue.ingest.pipeline import Delivery, ingest_delivery
from catalogue.meta.loop_reads import LoopReads
from catalogue.settings import PROJECT_ROOT
from tests.api.live_server import start_server, stop_server, threaded_server

URL = "/api/v1/datasets/readings/stream"
SCHEMA = {"fields": [{"name": "sensor", "type": "string"}, {"name": "at", "type": "datetime"},
                     {"name": "value", "type": "number"}], "primaryKey": ["sensor", "at"]}
FIRST = b"sensor,at,value\na,2026-12-01T00:00:00,1\nb,2026-12-01T00:00:00,2\n"


def reading(sensor: str, minute: int, value: float) -> str:
    return f"{sensor},2026-12-01T00:{minute:02d}:00,{value}\n"


def push(hub: Hub, *lines: str, mode: str = "append") -> int:
    result = ingest_delivery(hub, "readings", Delivery(("sensor,at,value\n" + "".join(lines)).encode(), "csv", {},
                                                       mode, {"source_url": "test"}))
    assert result.status == "published", result.report
    assert result.version is not None
    return result.version


def events(response: httpx.Response) -> Iterator[dict[str, str]]:
    """The stream's events and comments, one dict each (``comment`` for a comment line)."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in fields:  # a block of only ``retry`` dispatches no event
                yield fields
            fields = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def next_event(stream: Iterator[dict[str, str]], comments: int = 100) -> dict[str, str]:
    """The next event that is not a comment; fails after ``comments`` comments (heartbeats) without one."""
    for _, event in zip(range(comments + 1), stream):
        if "comment" not in event:
            return event
    raise AssertionError(f"no event after {comments} comments")


@pytest.fixture
def readings(make_catalogue: Any) -> Hub:
    hub: Hub = make_catalogue("readings", SCHEMA, FIRST, stream_heartbeat_s=0.3, stream_poll_s=0.3)
    return hub


@pytest.fixture
def base(readings: Hub) -> Iterator[str]:
    app = create_app(readings.settings, readings)
    with threaded_server(app) as (host, port):
        yield f"http://{host}:{port}"
    app.state.query_engine.close()
    app.state.sql_pool.close()


def no_connection_held(hub: Hub, within_s: float = 5.0) -> bool:
    """Whether the request pool has every connection back within ``within_s`` while a stream stays open.

    The channel's look at the current version (every ``stream_poll_s``) takes a pooled connection for one query
    on a database server, so one sample may catch it in flight; a connection held by the stream never comes back.
    """
    deadline = time.monotonic() + within_s
    while hub.engine.pool.checkedout():  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def later(work: Any) -> threading.Thread:
    """Run ``work`` in a thread shortly after the client started reading."""
    thread = threading.Thread(target=work)
    thread.start()
    return thread


def test_each_committed_delivery_arrives_as_an_event_of_its_new_rows(readings: Hub, base: str) -> None:
    with httpx.Client(base_url=base, timeout=30) as client, client.stream("GET", URL) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = events(response)
        assert next(stream) == {"comment": "live values of version 1 on"}
        worker = later(lambda: push(readings, reading("a", 5, 3.5), reading("c", 1, 4)))
        event = next_event(stream)
        worker.join()
        assert no_connection_held(readings)
        assert event["id"] == "2" and event["event"] == "rows"
        assert json.loads(event["data"]) == {
            "dataset": "readings", "version": 2, "total_count": 2, "truncated": False,
            "rows": [{"sensor": "a", "at": "2026-12-01T00:05:00", "value": 3.5},
                     {"sensor": "c", "at": "2026-12-01T00:01:00", "value": 4.0}]}


def test_where_filters_the_rows_and_a_replace_sends_only_rows_that_changed(readings: Hub, base: str) -> None:
    with httpx.Client(base_url=base, timeout=30) as client, \
            client.stream("GET", URL, params={"where": "value > 2"}) as response:
        stream = events(response)
        next(stream)

        def deliveries() -> None:
            push(readings, reading("a", 5, 1), reading("b", 5, 9))
            push(readings, "a,2026-12-01T00:00:00,1\n", "b,2026-12-01T00:00:00,7\n", mode="replace")

        worker = later(deliveries)
        first, second = next_event(stream), next_event(stream)
        worker.join()
    assert json.loads(first["data"])["rows"] == [{"sensor": "b", "at": "2026-12-01T00:05:00", "value": 9.0}]
    # Version 3 keeps a's row as it was: only b's changed row is new.
    assert (second["id"], json.loads(second["data"])["rows"]) == (
        "3", [{"sensor": "b", "at": "2026-12-01T00:00:00", "value": 7.0}])


def test_last_event_id_resumes_after_that_version(readings: Hub, base: str) -> None:
    push(readings, reading("a", 1, 10))
    push(readings, reading("a", 2, 20))
    with httpx.Client(base_url=base, timeout=30) as client, \
            client.stream("GET", URL, headers={"Last-Event-ID": "2"}) as response:
        stream = events(response)
        assert next(stream) == {"comment": "live values of version 3 on"}
        event = next_event(stream)
    assert (event["id"], json.loads(event["data"])["rows"]) == ("3", [{"sensor": "a", "at": "2026-12-01T00:02:00",
                                                                       "value": 20.0}])


def test_an_idle_stream_sends_heartbeats(base: str) -> None:
    with httpx.Client(base_url=base, timeout=30) as client, client.stream("GET", URL) as response:
        stream = events(response)
        assert [next(stream), next(stream)] == [{"comment": "live values of version 1 on"}, {"comment": "heartbeat"}]


@pytest.mark.parametrize(("path", "headers", "status", "code"), [
    (URL + "?where=nonsense >", {}, 400, "invalid-query"),
    (URL, {"Last-Event-ID": "7"}, 400, "invalid-parameter"),
    (URL, {"Last-Event-ID": "abc"}, 400, "invalid-parameter"),
    ("/api/v1/datasets/nothing-here/stream", {}, 404, "dataset-not-found"),
])
def test_bad_stream_requests_are_errors_before_the_stream_starts(base: str, path: str, headers: dict[str, str],
                                                                 status: int, code: str) -> None:
    answer = httpx.get(base + path, headers=headers, timeout=30)
    assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), answer.text


COMMIT_ELSEWHERE = """
import sys
from catalogue.hub import open_hub
from catalogue.ingest.pipeline import Delivery, ingest_delivery
from catalogue.settings import Settings
hub = open_hub(Settings(data_dir=sys.argv[1], definitions_dir=sys.argv[2]))
body = b"sensor,at,value\\nz,2026-12-01T00:30:00,30\\n"
print(ingest_delivery(hub, "readings", Delivery(body, "csv", {}, "append", {"source_url": "other"})).status)
hub.close()
"""


def test_a_commit_by_another_process_is_found_by_the_poll(readings: Hub, base: str) -> None:
    settings = readings.settings
    with httpx.Client(base_url=base, timeout=60) as client, client.stream("GET", URL) as response:
        stream = events(response)
        next(stream)
        done = subprocess.run([sys.executable, "-c", COMMIT_ELSEWHERE, str(settings.data_dir),
                               str(settings.definitions_dir)], capture_output=True, text=True, timeout=120,
                              cwd=PROJECT_ROOT)
        assert done.stdout.strip() == "published", done.stderr
        event = next_event(stream)
    assert json.loads(event["data"])["rows"] == [{"sensor": "z", "at": "2026-12-01T00:30:00", "value": 30.0}]


@pytest.mark.anyio
async def test_a_client_that_falls_behind_is_dropped_and_the_others_keep_up(readings: Hub) -> None:
    reads = LoopReads(readings.engine)
    channels = LiveChannels(reads, poll_s=0.2, buffer_versions=2)
    try:
        slow, newest = await channels.subscribe("readings")
        fast, _ = await channels.subscribe("readings")
        assert newest == 1
        heard: list[int] = []
        for minute in range(1, 5):
            await to_thread.run_sync(push, readings, reading("a", minute, minute))
            async with asyncio.timeout(10):
                heard.append(await fast.queue.get())
        assert heard == [2, 3, 4, 5]
        assert slow.dropped and slow.queue.qsize() == 2
        assert channels.channels["readings"].subscribers == {fast}
        channels.unsubscribe(slow)
        channels.unsubscribe(fast)
        assert channels.channels == {}
    finally:
        await channels.close()
        reads.close()


def test_the_demo_pushes_parking_readings_that_reach_latest_and_the_stream(harvested: Hub) -> None:
    from api.demo_live import feeding

    app = create_app(harvested.settings.model_copy(update={"stream_heartbeat_s": 0.3}), harvested)
    parking = "/api/v1/datasets/parking-occupancy"
    try:
        with threaded_server(app) as (host, port), httpx.Client(base_url=f"http://{host}:{port}", timeout=60) as client:
            before = client.get(f"{parking}/latest").json()
            with client.stream("GET", f"{parking}/stream") as response, feeding(harvested, host, port, 0.2):
                stream = events(response)
                assert next(stream) == {"comment": f"live values of version {before['version']} on"}
                event = next_event(stream)
            after = client.get(f"{parking}/latest", params={"version": event["id"]}).json()
    finally:
        app.state.query_engine.close()
        app.state.sql_pool.close()
    pushed = json.loads(event["data"])
    assert (pushed["version"], pushed["total_count"]) == (before["version"] + 1, 6)
    assert pushed["rows"] == after["results"]  # each car park's new reading is its latest now
    for old, new in zip(before["results"], after["results"]):
        assert (new["lot_id"], new["capacity"], new["location"]) == (old["lot_id"], old["capacity"], old["location"])
        assert new["timestamp"] > old["timestamp"] and new["occupied"] + new["free"] == new["capacity"]



def test_a_server_shutting_down_closes_open_streams_instead_of_waiting_for_them(readings: Hub, tmp_path: Path) -> None:
    settings = {"data_dir": str(readings.settings.data_dir), "definitions_dir": str(readings.settings.definitions_dir),
                "stream_heartbeat_s": 0.3}
    log = tmp_path / "server.log"
    proc, base_url = start_server(settings, log)
    try:
        with httpx.Client(base_url=base_url, timeout=30) as client, client.stream("GET", URL) as response:
            stream = events(response)
            assert next(stream) == {"comment": "live values of version 1 on"}
            stop_server(proc)
            rest = list(stream)  # the server closed the stream: the client's read ends
    finally:
        stop_server(proc)
    assert rest[-1] == {"comment": "the server is shutting down"}
    assert set(map(str, rest[:-1])) <= {str({"comment": "heartbeat"})}
    assert "graceful shutdown exceeded" not in log.read_text(errors="replace")
