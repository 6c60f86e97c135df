"""MQTT sources against the machine's Mosquitto (127.0.0.1:1883), a unique topic prefix per test."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.demo_sources import broker_reachable, parking_reading
from catalogue.hub import Hub
from catalogue.meta.metadata import get_dataset
from harvesters.base import SourceSpec
from harvesters.mqtt import FollowStats, Subscription, _flush, follow, sort_messages
from harvesters.runner import harvest_source
from tests.api.live_server import threaded_server
from tests.harvesters.sources import demo_schema, last_job, source_catalogue, versions

paho = pytest.importorskip("paho.mqtt.client")
pytestmark = pytest.mark.skipif(not broker_reachable(), reason="no MQTT broker on 127.0.0.1:1883")

NAME = "parking-occupancy"
WAIT_S = 30.0


@pytest.fixture
def prefix() -> str:
    return f"urbandata-test/{uuid.uuid4().hex[:12]}"


def _hub(tmp_path: Path, prefix: str, url: str = "mqtt://127.0.0.1:1883", **settings: Any) -> Hub:
    source = {"type": "mqtt", "url": url, "format": "json", "mode": "append",
              "options": {"topics": [f"{prefix}/#"], "client_id": f"urbandata-test-{uuid.uuid4().hex[:12]}",
                          "flush_rows": 50, "flush_seconds": 0.5}}
    return source_catalogue(tmp_path, NAME, demo_schema(NAME), source, **settings)


def _readings(count: int, start: int = 0) -> list[dict[str, Any]]:
    from datetime import datetime, timedelta

    base = datetime(2026, 11, 26)
    return [parking_reading(("P01", "P02", "P03")[i % 3], base + timedelta(minutes=15 * (i // 3)), 10 + i % 7)
            for i in range(start, start + count)]


def _publish(prefix: str, payloads: list[bytes | dict[str, Any]]) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:12]}")
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    try:
        for payload in payloads:
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            lot = payload.get("lot_id", "x") if isinstance(payload, dict) else "raw"
            client.publish(f"{prefix}/{lot}", body, qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


class Follower:
    """``follow`` in a thread, as `urbandata follow` or the demo runs it; stopped and joined on exit."""

    def __init__(self, hub: Hub) -> None:
        self.hub, self.stop, self.stats, self.lines = hub, threading.Event(), FollowStats(), []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.stats = follow(self.hub, NAME, self.stop, on_part=self._on_part)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def _on_part(self, line: str, stats: FollowStats) -> None:
        self.lines.append(line)
        self.stats = stats

    def until(self, check: Callable[[FollowStats], bool]) -> FollowStats:
        deadline = time.monotonic() + WAIT_S
        while not check(self.stats):
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"follower did not get there: {self.stats} {self.lines}"
            time.sleep(0.05)
        return self.stats

    def __enter__(self) -> Follower:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def test_readings_become_queryable_in_records_and_repeats_make_no_version(tmp_path: Path, prefix: str) -> None:
    hub = _hub(tmp_path, prefix)
    app = create_app(hub.settings, hub)
    try:
        _open_session(hub)
        with Follower(hub) as follower, threaded_server(app) as (host, port):
            _publish(prefix, _readings(30))
            follower.until(lambda s: s.appended >= 30)
            url = f"http://{host}:{port}/api/v1/datasets/{NAME}/records"
            body = httpx.get(url, params={"limit": 100}, timeout=30).json()
            assert body["total_count"] == 30
            assert {(r["lot_id"], r["occupied"]) for r in body["results"]} == {
                (r["lot_id"], r["occupied"]) for r in _readings(30)}
            before = versions(hub, NAME)

            _publish(prefix, _readings(30))  # the same readings again: nothing new
            stats = follower.until(lambda s: s.readings + s.repeats >= 60)
            assert (stats.quarantined, stats.appended) == (0, 30)
            assert versions(hub, NAME) == before
            assert last_job(hub).status in ("unchanged",)

            _publish(prefix, _readings(12, start=30))  # changed: new readings
            follower.until(lambda s: s.appended >= 42)
            body = httpx.get(url, params={"limit": 100}, timeout=30).json()
            assert body["total_count"] == 42
            assert versions(hub, NAME)[0][1] == 42
    finally:
        app.state.query_engine.close()
        app.state.sql_pool.close()
        hub.close()


def test_a_bad_message_is_quarantined_with_topic_and_payload_and_the_stream_goes_on(tmp_path: Path, prefix: str) -> None:
    hub = _hub(tmp_path, prefix)
    good = _readings(4)
    bad_enum = {**_readings(1)[0], "lot_id": "P99"}
    unknown = {**_readings(1)[0], "colour": "red"}
    # Text where an integer belongs passes the message check; the part's validation refuses that row alone.
    wordy = {**_readings(1, start=20)[0], "occupied": "viele"}
    try:
        _open_session(hub)
        with Follower(hub) as follower:
            _publish(prefix, [good[0], b"{not json", bad_enum, good[1], unknown, [1, 2], good[2], wordy, good[3]])
            stats = follower.until(lambda s: s.appended + s.quarantined >= 9)
        assert (stats.appended, stats.quarantined) == (4, 5)
        assert versions(hub, NAME)[0][1] == 4
        quarantined = _quarantined(hub, follower)
        by_error = {m["error"].split(":")[0]: m for m in quarantined}
        assert sorted(m["payload"] for m in quarantined) == sorted(
            ["{not json", json.dumps(bad_enum), json.dumps(unknown), "[1, 2]", json.dumps(wordy)])
        assert all(m["topic"].startswith(prefix + "/") for m in quarantined)
        assert "not JSON text in UTF-8" in by_error
        assert any("not in the dataset's Table Schema" in m["error"] for m in quarantined)
        assert any("not one of" in m["error"] for m in quarantined)
        assert any("refused by the Table Schema's validation" in m["error"] for m in quarantined)
    finally:
        hub.close()


def _quarantined(hub: Hub, follower: Follower) -> list[dict[str, Any]]:
    """Every quarantined message, read from the keys the follower's jobs name."""
    from sqlalchemy import select

    from catalogue.meta.models import HarvestJob

    found: list[dict[str, Any]] = []
    with hub.sessions() as session:
        messages = [j.message or "" for j in session.scalars(select(HarvestJob).order_by(HarvestJob.id))]
    for message in messages:
        if "quarantined at " in message:
            key = message.split("quarantined at ")[1].split(";")[0].strip()
            found += json.loads(hub.storage.read_bytes(key))["messages"]
    return found


def test_a_qos1_redelivery_after_a_crash_is_stored_once(tmp_path: Path, prefix: str) -> None:
    hub = _hub(tmp_path, prefix)
    try:
        with hub.sessions() as session:
            ds = get_dataset(session, NAME)
            from catalogue.meta.models import HarvestSource
            from sqlalchemy import select

            row = session.scalar(select(HarvestSource).where(HarvestSource.name == NAME))
            spec = SourceSpec(name=NAME, dataset=NAME, url=row.url, format="json", mode="append",
                              options=dict(row.options))
            source_id, dataset_id, schema = row.id, ds.id, ds.schema
        # A follower stores a part and dies before acknowledging it.
        crashed = Subscription(hub.settings, spec)
        _publish(prefix, _readings(9))
        messages: list[Any] = []
        deadline = time.monotonic() + WAIT_S
        while len(messages) < 9 and time.monotonic() < deadline:
            messages += crashed.take(9 - len(messages), 0.5)
        assert len(messages) == 9 and not any(m.dup for m in messages)
        _flush(hub, spec, source_id, dataset_id, sort_messages(messages, schema), FollowStats())
        crashed.close()  # no ack
        assert versions(hub, NAME) == [(1, 9)]

        # The next follower gets the unacknowledged readings again (dup set) and stores them once.
        with Follower(hub) as follower:
            stats = follower.until(lambda s: s.readings + s.repeats >= 9)
        assert versions(hub, NAME) == [(1, 9)]
        assert (stats.redelivered, stats.appended) == (9, 0)  # the broker sent them again; none stored twice
        assert last_job(hub).status == "unchanged"
    finally:
        hub.close()


def test_one_shot_harvest_and_broken_brokers(tmp_path: Path, prefix: str) -> None:
    hub = _hub(tmp_path, prefix)
    try:
        _open_session(hub)
        _publish(prefix, _readings(6))
        outcome = harvest_source(hub, NAME)
        assert (outcome.status, outcome.version) == ("published", 1), outcome.message
        assert versions(hub, NAME) == [(1, 6)]
        again = harvest_source(hub, NAME)  # nothing new on the broker
        assert again.status == "unchanged" and versions(hub, NAME) == [(1, 6)]
        _publish(prefix, _readings(6) + _readings(3, start=6))  # six repeated, three new
        changed = harvest_source(hub, NAME)
        assert (changed.status, changed.version) == ("published", 2), changed.message
        assert versions(hub, NAME) == [(2, 9), (1, 6)]
    finally:
        hub.close()

    closed = _hub(tmp_path / "closed", prefix, url="mqtt://127.0.0.1:1")  # nothing listens on port 1
    try:
        outcome = harvest_source(closed, NAME)
        assert (outcome.status, outcome.error_code) == ("failed", "source-unreachable"), outcome.message
        assert "cannot reach its MQTT broker" in (last_job(closed).message or "")
        assert versions(closed, NAME) == []
    finally:
        closed.close()

    refused = _hub(tmp_path / "refused", prefix, harvest_allowed_hosts=[])
    try:
        outcome = harvest_source(refused, NAME)
        assert (outcome.status, outcome.error_code) == ("failed", "source-address-refused"), outcome.message
    finally:
        refused.close()


def _open_session(hub: Hub) -> None:
    """Open the source's persistent session once: the broker keeps what is published from now on."""
    Subscription(hub.settings, _spec(hub)).close()


def _spec(hub: Hub) -> SourceSpec:
    from sqlalchemy import select

    from catalogue.meta.models import HarvestSource

    with hub.sessions() as session:
        row = session.scalar(select(HarvestSource).where(HarvestSource.name == NAME))
        return SourceSpec(name=NAME, dataset=NAME, url=row.url, format="json", mode="append",
                          options=dict(row.options))


def test_the_demo_publishes_parking_readings_once_served_and_follows_them_into_the_dataset(
    settings: Any, tmp_path: Path
) -> None:
    import io

    from rich.console import Console

    from api.demo_sources import start_demo_sources
    from catalogue.hub import open_hub
    from catalogue.meta.definitions import load_definitions, sync_definitions

    hub = open_hub(settings)
    sync_definitions(hub, load_definitions(settings.definitions_dir))
    app = create_app(settings, hub)
    said = io.StringIO()
    try:
        with threaded_server(app) as (host, port):
            hub.settings = settings.model_copy(update={"public_url": f"http://{host}:{port}"})
            started = start_demo_sources(hub, Console(file=said, width=200), live=True)
            try:
                assert "followed into parking-occupancy" in said.getvalue()
                deadline = time.monotonic() + WAIT_S
                while not versions(hub, NAME) and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert versions(hub, NAME) and versions(hub, NAME)[0][1] >= 6  # a reading of each car park at least
            finally:
                started.stop()
            assert started.follower is not None and not started.follower.is_alive()
    finally:
        app.state.query_engine.close()
        app.state.sql_pool.close()
        hub.close()


def test_a_failed_part_is_sent_again_by_the_broker_and_stored_after_the_failure(tmp_path: Path, prefix: str) -> None:
    from sqlalchemy import update

    from catalogue.meta.models import Dataset

    hub = _hub(tmp_path, prefix)

    def rename(old: str, new: str) -> None:  # a real failure of the ingest: its dataset cannot be found
        with hub.sessions.begin() as session:
            session.execute(update(Dataset).where(Dataset.name == old).values(name=new))

    try:
        _open_session(hub)
        with Follower(hub) as follower:
            _publish(prefix, _readings(2))
            follower.until(lambda s: s.appended >= 2)
            rename(NAME, "elsewhere")
            _publish(prefix, _readings(5, start=2))
            follower.until(lambda s: s.failed >= 1)
            assert last_job(hub).status == "failed"
            assert versions(hub, "elsewhere") == [(1, 2)]
            rename("elsewhere", NAME)
            stats = follower.until(lambda s: s.appended >= 7)
        assert stats.redelivered >= 5  # the broker sent the unacknowledged readings again
        found = versions(hub, NAME)
        assert (found[0][1], found[-1]) == (7, (1, 2))
    finally:
        hub.close()


def test_urbandata_follow_streams_for_a_while_and_sums_up(tmp_path: Path, prefix: str) -> None:
    from typer.testing import CliRunner

    from api.cli import app

    hub = _hub(tmp_path, prefix)
    try:
        _open_session(hub)
        _publish(prefix, _readings(12) + [b"nonsense"])  # kept by the broker for the session until follow runs
        result = CliRunner().invoke(app, ["follow", NAME, "--for", "3", "-d", str(tmp_path / "var")])
        assert result.exit_code == 0, result.output
        text = " ".join(result.output.split())
        assert "12 valid readings, 12 rows appended, 0 repeats dropped, 1 bad messages quarantined" in text
        assert versions(hub, NAME)[0][1] == 12
        missing = CliRunner().invoke(app, ["follow", "no-such-source", "--for", "1", "-d", str(tmp_path / "var")])
        assert missing.exit_code == 1 and "source-not-found" in missing.output
    finally:
        hub.close()
