"""Harvesting the demo city over real HTTP: publish, unchanged, new version, quarantine, failures."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select

from catalogue.hub import Hub
from catalogue.meta.metadata import get_dataset, list_versions
from catalogue.meta.models import HarvestJob, HarvestSource
from catalogue.query.engine import QueryEngine, VersionRef
from catalogue.settings import Settings
from catalogue.store.keys import part_key
from harvesters.runner import harvest_source, list_sources
from tests.conftest import parquet_file

DEMO_ROWS = {
    "car-parks": 6,
    "city-districts": 6,
    "egovernment-services": 16,
    "groundwater-levels": 150,
    "parking-occupancy": 576,
    "waste-bin-fill-levels": 40,
}


def _versions(hub: Hub, name: str) -> list[tuple[int, int]]:
    with hub.sessions() as session:
        return [(v.number, v.row_count) for v in list_versions(session, get_dataset(session, name))]


def _part_bytes(hub: Hub, name: str, number: int) -> dict[str, bytes]:
    with hub.sessions() as session:
        ds = get_dataset(session, name)
        version = next(v for v in list_versions(session, ds) if v.number == number)
        return {p["sha256"]: hub.storage.read_bytes(part_key(name, p["sha256"])) for p in version.parts}


def _records(hub: Hub, name: str, number: int | None = None) -> dict:
    engine = QueryEngine(hub)
    try:
        with hub.sessions() as session:
            ds = get_dataset(session, name)
            version = ds.current_version if number is None else next(
                v for v in list_versions(session, ds) if v.number == number)
            ref = VersionRef.of(hub, ds, version)
        return engine.records(ref, limit=1000, offset=0)
    finally:
        engine.close()


def test_demo_harvest_publishes_every_dataset_over_http(hub: Hub) -> None:
    outcomes = {name: harvest_source(hub, name) for name in list_sources(hub)}
    assert {n: (o.status, o.version) for n, o in outcomes.items()} == {n: ("published", 1) for n in DEMO_ROWS}
    assert {n: _versions(hub, n) for n in DEMO_ROWS} == {n: [(1, rows)] for n, rows in DEMO_ROWS.items()}
    with hub.sessions() as session:
        jobs = session.scalars(select(HarvestJob)).all()
        assert sorted((j.status, j.version_number) for j in jobs) == [("published", 1)] * 6
        assert all(j.bytes_received and j.bytes_received > 0 for j in jobs)


def test_parts_are_content_addressed_geoparquet(harvested: Hub) -> None:
    for sha, data in _part_bytes(harvested, "city-districts", 1).items():
        assert hashlib.sha256(data).hexdigest() == sha
    with harvested.sessions() as session:
        version = get_dataset(session, "city-districts").current_version
        key = part_key("city-districts", version.parts[0]["sha256"])
    geo = json.loads(parquet_file(harvested.storage, key).schema_arrow.metadata[b"geo"])
    assert geo == {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"], "bbox": [9.9, 53.5, 10.1, 53.62]}},
    }


def test_reharvest_of_unchanged_feed_makes_no_version(harvested: Hub) -> None:
    before = {n: _versions(harvested, n) for n in DEMO_ROWS}
    outcomes = [harvest_source(harvested, n) for n in DEMO_ROWS]
    assert [(o.status, o.version) for o in outcomes] == [("unchanged", 1)] * 6
    assert {n: _versions(harvested, n) for n in DEMO_ROWS} == before


def test_changed_feed_makes_version_2_and_version_1_stays_byte_for_byte(harvested: Hub, feed_dir: Path) -> None:
    name = "groundwater-levels"
    v1_parts = _part_bytes(harvested, name, 1)
    v1_records = _records(harvested, name, 1)
    feed = feed_dir / "feeds" / "groundwater-levels.json"
    rows = json.loads(feed.read_text(encoding="utf-8"))
    rows[0]["level_m_nn"] = 9.99  # changed
    removed = rows.pop()  # removed
    rows.append({**removed, "date": "2026-12-01"})  # added
    feed.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")

    outcome = harvest_source(harvested, name)

    assert (outcome.status, outcome.version) == ("published", 2)
    assert _versions(harvested, name) == [(2, 150), (1, 150)]
    with harvested.sessions() as session:
        v2 = get_dataset(session, name).current_version
        assert v2.changes == {"added": 1, "removed": 1, "changed": 1, "compared_by": "primary key",
                              "schema_changed": False}
    assert _part_bytes(harvested, name, 1) == v1_parts
    assert _records(harvested, name, 1) == v1_records
    current = _records(harvested, name)
    assert current["results"][0]["level_m_nn"] == 9.99


def test_invalid_feed_is_quarantined_with_report_and_version_1_still_served(
    harvested: Hub, feed_dir: Path
) -> None:
    name = "egovernment-services"
    v1_records = _records(harvested, name)
    feed = feed_dir / "feeds" / "egovernment-services.csv"
    lines = feed.read_bytes().split(b"\r\n")
    cells = lines[2].split(b";")
    cells[4] = b"zwanzig Euro"  # fee_eur is a number
    lines[2] = b";".join(cells)
    feed.write_bytes(b"\r\n".join(lines))

    outcome = harvest_source(harvested, name)

    assert (outcome.status, outcome.version) == ("quarantined", 1)
    assert _versions(harvested, name) == [(1, 16)]
    assert _records(harvested, name) == v1_records
    with harvested.sessions() as session:
        job = session.get(HarvestJob, outcome.job_id)
        assert (job.status, job.version_number) == ("quarantined", 1)
        report = json.loads(harvested.storage.read_bytes(job.report_key))
        quarantined = harvested.storage.read_bytes(job.report_key.replace("report.json", "delivery.csv"))
    assert quarantined == feed.read_bytes()
    assert report["valid"] is False
    task = report["tasks"][0]
    assert task["stats"]["errors"] == 1
    error = task["errors"][0]
    assert {k: error[k] for k in ("type", "rowNumber", "fieldName", "fieldNumber", "cell", "note")} == {
        "type": "type-error", "rowNumber": 3, "fieldName": "fee_eur", "fieldNumber": 5,
        "cell": "zwanzig Euro", "note": 'type is "number/default"',
    }
    assert error["cells"][0] == cells[0].decode("cp1252")


def test_malformed_feed_is_quarantined_with_format_error(harvested: Hub, feed_dir: Path) -> None:
    (feed_dir / "feeds" / "groundwater-levels.json").write_text('[{"gauge_id": "GW-101", ', encoding="utf-8")
    outcome = harvest_source(harvested, "groundwater-levels")
    assert (outcome.status, outcome.version) == ("quarantined", 1)
    with harvested.sessions() as session:
        report = json.loads(harvested.storage.read_bytes(session.get(HarvestJob, outcome.job_id).report_key))
    assert report["valid"] is False
    assert [e["type"] for e in report["errors"]] == ["format-error"]
    assert "not valid JSON" in report["errors"][0]["note"]


def test_missing_feed_fails_with_http_status_and_keeps_current(harvested: Hub, feed_dir: Path) -> None:
    (feed_dir / "feeds" / "car-parks.geojson").unlink()
    outcome = harvest_source(harvested, "car-parks")
    assert (outcome.status, outcome.error_code) == ("failed", "source-unreachable")
    assert "HTTP 404" in outcome.message
    assert _versions(harvested, "car-parks") == [(1, 6)]


@contextmanager
def _refusing_port() -> Iterator[int]:
    """A loopback port held bound but not listening: connecting is refused, and no other program can take it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def _point_source_at(hub: Hub, name: str, url: str) -> None:
    with hub.sessions.begin() as session:
        session.scalar(select(HarvestSource).where(HarvestSource.name == name)).url = url


def test_unreachable_source_fails_cleanly(harvested: Hub) -> None:
    with _refusing_port() as port:
        _point_source_at(harvested, "car-parks", f"http://127.0.0.1:{port}/feeds/car-parks.geojson")
        outcome = harvest_source(harvested, "car-parks")
    assert (outcome.status, outcome.error_code) == ("failed", "source-unreachable")
    assert "cannot be reached" in outcome.message
    assert _versions(harvested, "car-parks") == [(1, 6)]


class _SlowServer(ThreadingHTTPServer):
    released = threading.Event()  # replaced per server; set when the test is over


class _SlowHandler(BaseHTTPRequestHandler):
    server: _SlowServer

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        # Answers only once the test is over, so any harvest timeout fires first (no race with a fixed sleep).
        self.server.released.wait(60)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"[]")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_server() -> Iterator[str]:
    httpd = _SlowServer(("127.0.0.1", 0), _SlowHandler)
    httpd.released = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/slow.json"
    httpd.released.set()
    httpd.shutdown()
    httpd.server_close()


def test_source_slower_than_timeout_fails(tmp_path: Path, slow_server: str) -> None:
    from catalogue.meta.definitions import load_definitions, sync_definitions
    from catalogue.hub import open_hub

    hub = open_hub(Settings(data_dir=tmp_path / "slow", harvest_timeout_s=0.3, harvest_allowed_hosts=["127.0.0.1"]))
    sync_definitions(hub, load_definitions(hub.settings.definitions_dir))
    _point_source_at(hub, "groundwater-levels", slow_server)
    outcome = harvest_source(hub, "groundwater-levels")
    hub.close()
    assert (outcome.status, outcome.error_code) == ("failed", "source-unreachable")
    assert "did not answer within 0.3 s" in outcome.message


def test_feed_over_size_cap_is_refused(tmp_path: Path, feed_server) -> None:  # type: ignore[no-untyped-def]
    from catalogue.meta.definitions import load_definitions, sync_definitions
    from catalogue.hub import open_hub

    hub = open_hub(Settings(data_dir=tmp_path / "cap", harvest_max_bytes=1000, feed_base_url=feed_server.url,
                            harvest_allowed_hosts=["127.0.0.1"]))
    sync_definitions(hub, load_definitions(hub.settings.definitions_dir))
    outcome = harvest_source(hub, "parking-occupancy")
    hub.close()
    assert (outcome.status, outcome.error_code) == ("failed", "feed-too-large")
    assert "more than the limit of 1000 bytes" in outcome.message


def test_append_mode_adds_one_part_with_only_new_rows(harvested: Hub, feed_dir: Path) -> None:
    name = "parking-occupancy"
    v1_parts = _part_bytes(harvested, name, 1)
    feed = feed_dir / "feeds" / "parking-occupancy.csv"
    header, *rows = feed.read_text(encoding="utf-8").splitlines()
    # The next delivery repeats the last 10 readings and brings 2 new ones.
    new = [rows[-1].replace("2026-11-20T23:45:00", "2026-11-21T00:00:00"),
           rows[-1].replace("2026-11-20T23:45:00", "2026-11-21T00:15:00")]
    assert new[0] != rows[-1]
    feed.write_text("\n".join([header, *rows[-10:], *new]) + "\n", encoding="utf-8")

    outcome = harvest_source(harvested, name)

    assert (outcome.status, outcome.version) == ("published", 2)
    assert _versions(harvested, name) == [(2, 578), (1, 576)]
    v2_parts = _part_bytes(harvested, name, 2)
    assert set(v1_parts) < set(v2_parts) and len(v2_parts) == 2
    with harvested.sessions() as session:
        assert get_dataset(session, name).current_version.changes["added"] == 2
    # The same delivery again brings nothing new.
    assert harvest_source(harvested, name).status == "unchanged"
