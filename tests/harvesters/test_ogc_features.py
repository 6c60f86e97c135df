"""OGC API Features against a real pygeoapi server started on a free port: pages, GeoParquet, failures."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.demo_sources import Collection, PygeoapiServer, pygeoapi_venv
from api.feed_server import FeedServer
from catalogue.hub import Hub
from catalogue.meta.metadata import get_dataset
from catalogue.query.engine import QueryEngine, VersionRef
from catalogue.store.keys import part_key
from harvesters.runner import harvest_source
from tests.harvesters.sources import DEMO, demo_schema, last_job, set_source, source_catalogue, versions
from tests.conftest import parquet_file

NAME = "car-parks"


@pytest.fixture(scope="session")
def pygeoapi() -> str:
    """An interpreter with pygeoapi (api.demo_sources.pygeoapi_venv); skipped when it cannot be built."""
    try:
        return pygeoapi_venv()
    except RuntimeError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, pygeoapi: str) -> Iterator[tuple[PygeoapiServer, Path]]:
    """pygeoapi serving a copy of the demo's car parks (the GeoJSON provider reads the file on every request)."""
    root = tmp_path_factory.mktemp("ogc")
    feed = root / "car-parks.geojson"
    shutil.copy(DEMO / "feeds" / "car-parks.geojson", feed)
    with PygeoapiServer([Collection(NAME, feed, "lot_id", "Parkhäuser")], workdir=root, python=pygeoapi) as server:
        yield server, feed


@pytest.fixture
def feed(served: tuple[PygeoapiServer, Path]) -> Iterator[Path]:
    """The served file, restored after a test that changes it."""
    path = served[1]
    original = path.read_bytes()
    yield path
    path.write_bytes(original)


def _hub(tmp_path: Path, url: str, collection: str = NAME, **settings: object) -> Hub:
    source = {"type": "ogc-features", "url": url, "format": "geojson", "mode": "replace",
              "options": {"collection": collection, "page_size": 2}}
    return source_catalogue(tmp_path, NAME, demo_schema(NAME), source, **settings)


def _records(hub: Hub) -> list[dict]:
    engine = QueryEngine(hub)
    try:
        with hub.sessions() as session:
            ds = get_dataset(session, NAME)
            ref = VersionRef.of(hub, ds, ds.current_version)
        return engine.records(ref, limit=100, offset=0)["results"]
    finally:
        engine.close()


def test_first_unchanged_and_changed_runs(tmp_path: Path, served: tuple[PygeoapiServer, Path], feed: Path) -> None:
    server = served[0]
    hub = _hub(tmp_path, server.url)
    try:
        first = harvest_source(hub, NAME)
        assert (first.status, first.version) == ("published", 1), first.message
        assert versions(hub, NAME) == [(1, 6)]
        rows = {r["lot_id"]: r for r in _records(hub)}
        assert sorted(rows) == ["P01", "P02", "P03", "P04", "P05", "P06"]
        assert rows["P01"]["capacity"] == 420
        with hub.sessions() as session:
            version = get_dataset(session, NAME).current_version
            assert version.provenance["pages"] >= 3  # six features, two a page: the next links were followed
            key = part_key(NAME, version.parts[0]["sha256"])
        geo = json.loads(parquet_file(hub.storage, key).schema_arrow.metadata[b"geo"])
        assert geo["primary_column"] == "geometry" and geo["columns"]["geometry"]["geometry_types"] == ["Point"]

        again = harvest_source(hub, NAME)
        assert (again.status, again.version) == ("unchanged", 1)
        assert versions(hub, NAME) == [(1, 6)]

        doc = json.loads(feed.read_text(encoding="utf-8"))
        doc["features"][0]["properties"]["capacity"] = 450
        del doc["features"][-1]
        feed.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
        changed = harvest_source(hub, NAME)
        assert (changed.status, changed.version) == ("published", 2), changed.message
        assert versions(hub, NAME) == [(2, 5), (1, 6)]
        with hub.sessions() as session:
            changes = get_dataset(session, NAME).current_version.changes
        assert (changes["added"], changes["removed"], changes["changed"]) == (0, 1, 1)
        assert {r["lot_id"]: r["capacity"] for r in _records(hub)}["P01"] == 450
    finally:
        hub.close()


def _fails_and_keeps_version(hub: Hub, code: str) -> str:
    """Harvest once more, expecting failure ``code``; the current version stays 1. The job's message."""
    outcome = harvest_source(hub, NAME)
    assert (outcome.status, outcome.error_code) == ("failed", code), outcome.message
    assert versions(hub, NAME) == [(1, 6)]
    job = last_job(hub)
    assert job.status == "failed"
    return job.message or ""


def test_unknown_collection_and_unreachable_server_fail_and_keep_the_version(
    tmp_path: Path, served: tuple[PygeoapiServer, Path]
) -> None:
    hub = _hub(tmp_path, served[0].url)
    try:
        assert harvest_source(hub, NAME).status == "published"
        set_source(hub, NAME, options={"collection": "no-such-collection"})
        assert "HTTP 404" in _fails_and_keeps_version(hub, "source-unreachable")
        with FeedServer(tmp_path) as gone:
            url = gone.url
        set_source(hub, NAME, url=url, options={"collection": NAME})
        assert "cannot be reached" in _fails_and_keeps_version(hub, "source-unreachable")
    finally:
        hub.close()


def _static_api(root: Path, pages: dict[str, object]) -> None:
    """Files a plain HTTP server serves as if it were an OGC API (the query string is ignored)."""
    for path, doc in pages.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(doc if isinstance(doc, bytes) else json.dumps(doc).encode())


def test_malformed_page_and_next_link_loop_fail_and_keep_the_version(
    tmp_path: Path, served: tuple[PygeoapiServer, Path]
) -> None:
    hub = _hub(tmp_path, served[0].url)
    api = tmp_path / "api"
    try:
        assert harvest_source(hub, NAME).status == "published"
        with FeedServer(api) as bad:
            set_source(hub, NAME, url=bad.url, options={"collection": "truncated"})
            _static_api(api, {"collections/truncated/items": b'{"type": "FeatureCollection", "features": [{"ty'})
            assert "not JSON" in _fails_and_keeps_version(hub, "malformed-feed")

            feature = json.loads((DEMO / "feeds" / "car-parks.geojson").read_text(encoding="utf-8"))["features"][0]
            _static_api(api, {"collections/loop/items": {
                "type": "FeatureCollection", "features": [feature],
                "links": [{"rel": "next", "type": "application/geo+json", "href": f"{bad.url}collections/loop/items"}],
            }})
            set_source(hub, NAME, options={"collection": "loop"})
            assert "loop" in _fails_and_keeps_version(hub, "malformed-feed")
    finally:
        hub.close()


def test_a_source_on_loopback_is_refused_unless_allow_listed(
    tmp_path: Path, served: tuple[PygeoapiServer, Path]
) -> None:
    hub = _hub(tmp_path, served[0].url, harvest_allowed_hosts=[])
    try:
        outcome = harvest_source(hub, NAME)
        assert (outcome.status, outcome.error_code) == ("failed", "source-address-refused"), outcome.message
        assert versions(hub, NAME) == []
    finally:
        hub.close()


def test_the_demo_harvests_car_parks_from_pygeoapi_and_restores_the_source(hub: Hub, pygeoapi: str) -> None:
    import io

    from rich.console import Console

    from api.demo_sources import start_demo_sources
    from catalogue.meta.models import HarvestSource
    from sqlalchemy import select

    said = io.StringIO()
    started = start_demo_sources(hub, Console(file=said, width=200), live=False, python=pygeoapi)
    try:
        assert "OGC API Features (pygeoapi) at http://127.0.0.1:" in said.getvalue()
        outcome = harvest_source(hub, NAME)
        assert (outcome.status, outcome.version) == ("published", 1), outcome.message
        with hub.sessions() as session:
            version = get_dataset(session, NAME).current_version
            assert (version.row_count, version.provenance["collection"]) == (6, NAME)
    finally:
        started.stop()
    with hub.sessions() as session:
        source = session.scalar(select(HarvestSource).where(HarvestSource.name == NAME))
        assert (source.type, source.url) == ("http-file", "feeds/car-parks.geojson")


def test_pages_beyond_the_byte_cap_stop_the_run(tmp_path: Path, served: tuple[PygeoapiServer, Path]) -> None:
    hub = _hub(tmp_path, served[0].url, harvest_max_bytes=1500)  # about three pages of two car parks
    try:
        outcome = harvest_source(hub, NAME)
        assert (outcome.status, outcome.error_code) == ("failed", "feed-too-large"), outcome.message
        assert "URBANDATA_HARVEST_MAX_BYTES" in (last_job(hub).message or "")
        assert versions(hub, NAME) == []
    finally:
        hub.close()


def test_a_dripping_server_is_stopped_at_the_harvest_deadline(tmp_path: Path) -> None:
    """A server that sends its items a few bytes a second: each read is quick, the run's deadline ends it."""
    import socket
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    stop = threading.Event()

    class Drip(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "application/geo+json")
            self.end_headers()
            try:
                for _ in range(600):
                    if stop.is_set():
                        return
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                return

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hub = _hub(tmp_path, f"http://127.0.0.1:{server.server_address[1]}/", harvest_deadline_s=1.0)
    try:
        outcome = harvest_source(hub, NAME)
        assert (outcome.status, outcome.error_code) == ("failed", "harvest-deadline-exceeded"), outcome.message
        assert versions(hub, NAME) == []
    finally:
        hub.close()
        stop.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
