"""Shared fixtures: real files, a real HTTP feed server on a free port, a real catalogue."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from api.app import create_app
from api.feed_server import FeedServer
from catalogue.meta.definitions import load_definitions, sync_definitions
from catalogue.hub import Hub, open_hub
from catalogue.settings import PROJECT_ROOT, Settings
from tests.catalogue.seaweed_server import seaweed  # noqa: F401 - the production-backend run's object store
from tests import production_backend

DEMO = PROJECT_ROOT / "datasets"

# The tests' feed servers listen on loopback, which harvests refuse unless allow-listed: allow it here
# explicitly, for every Settings the tests build and the CLI subprocesses they start (which inherit it).
# tests/harvesters/test_outbound_guard.py passes its own allow-list to check what is refused.
LOOPBACK_ALLOWED = ["127.0.0.1"]
os.environ["URBANDATA_HARVEST_ALLOWED_HOSTS"] = json.dumps(LOOPBACK_ALLOWED)


def pytest_configure(config: pytest.Config) -> None:
    # A plugin, not conftest hooks: a conftest's hooks miss the session-scoped fixtures' setup.
    config.pluginmanager.register(production_backend, "urbandata-production-backend")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def feed_dir(tmp_path: Path) -> Path:
    """A copy of the demo feeds that a test may change: served as <server>/feeds/..."""
    root = tmp_path / "feeds-root"
    shutil.copytree(DEMO / "feeds", root / "feeds")
    return root


@pytest.fixture
def feed_server(feed_dir: Path) -> Iterator[FeedServer]:
    """A real HTTP server on a free loopback port serving ``feed_dir``."""
    with FeedServer(feed_dir) as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path, feed_server: FeedServer) -> Settings:
    return Settings(data_dir=tmp_path / "var", feed_base_url=feed_server.url, harvest_allowed_hosts=LOOPBACK_ALLOWED)


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    """A catalogue with the demo publishers and datasets defined, nothing harvested yet."""
    hub = open_hub(settings)
    sync_definitions(hub, load_definitions(settings.definitions_dir))
    yield hub
    hub.close()


@pytest.fixture
def harvested(hub: Hub) -> Hub:
    """The demo catalogue with every source harvested once over HTTP."""
    from harvesters.runner import harvest_source, list_sources

    for name in list_sources(hub):
        outcome = harvest_source(hub, name)
        assert outcome.status == "published", outcome.message
    return hub


@pytest.fixture
async def client(harvested: Hub) -> AsyncIterator[httpx.AsyncClient]:
    """The API app in process over httpx' ASGI transport, on the harvested demo catalogue."""
    from catalogue.sitegen.builder import build_site

    build_site(harvested)
    app = create_app(harvested.settings, harvested)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as c:
        yield c
    app.state.query_engine.close()
    app.state.sql_pool.close()


PUBLISHERS_YAML = """publishers:
  - name: testamt
    title: Testamt Musterstadt
"""


def parquet_file(storage: Any, key: str) -> Any:
    """A stored Parquet file opened through its storage (a local file, or ranged reads of the object store)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(storage.open_read(key))


def read_stored_table(storage: Any, key: str) -> Any:
    """A stored Parquet file read whole as a pyarrow Table, through its storage."""
    return parquet_file(storage, key).read()


def duckdb_on(storage: Any) -> Any:
    """A DuckDB connection that reads ``storage.engine_uri(...)`` (httpfs and a scoped secret on the object store)."""
    import duckdb

    con = duckdb.connect()
    storage.prepare_duckdb(con)
    return con


def remove_stored(storage: Any, key: str) -> None:
    """Delete one stored file, on either backend (the collector's own delete, with a write time in the future)."""
    import time

    assert storage.remove_stale(key, time.time() + 3600) > 0, f"nothing stored under {key}"


def stored_mtime_ns(storage: Any, key: str) -> int:
    """When a stored file was last written (the file's mtime, or the object's Last-Modified)."""
    path = storage.local_path(key)
    if path is not None:
        return int(path.stat().st_mtime_ns)
    return int(storage.fs.get_file_info(storage._path(key)).mtime_ns)


def stored(data_dir: Path) -> Any:
    """The storage of the catalogue in ``data_dir`` (local files, or the object store of the production-backend run)."""
    hub = open_hub(Settings(data_dir=data_dir))
    hub.close()
    return hub.storage


@pytest.fixture
def make_catalogue(tmp_path: Path) -> Iterator[Any]:
    """Build a catalogue from datasets made in the test: ``make(name, schema, content, ...) -> Hub``."""
    yield from catalogue_maker(tmp_path)


def catalogue_maker(tmp_path: Path) -> Iterator[Any]:
    """``make_catalogue`` for fixtures of any scope: yields ``make``, closes the hubs it made when resumed.

    Each call adds one dataset (definition, Table Schema, feed file) to a
    definitions directory in tmp_path and ingests the feed through the store.
    """
    from catalogue.ingest.pipeline import Delivery, ingest_delivery

    root = tmp_path / "defs"
    (root / "definitions").mkdir(parents=True)
    (root / "schemas").mkdir()
    (root / "publishers.yaml").write_text(PUBLISHERS_YAML, encoding="utf-8")
    hubs: list[Hub] = []

    def make(name: str, schema: dict[str, Any], content: bytes, fmt: str = "csv", *, mode: str = "replace",
             options: dict[str, Any] | None = None, **settings_overrides: Any) -> Hub:
        (root / "schemas" / f"{name}.json").write_text(json.dumps(schema), encoding="utf-8")
        definition = {
            "name": name, "title": f"Test {name}", "description": "Testdaten.", "publisher": "testamt",
            "license": "http://dcat-ap.de/def/licenses/dl-zero-de/2.0", "schema": f"schemas/{name}.json",
        }
        (root / "definitions" / f"{name}.yaml").write_text(yaml.safe_dump(definition), encoding="utf-8")
        hub = open_hub(Settings(data_dir=tmp_path / "var", definitions_dir=root, **settings_overrides))
        sync_definitions(hub, load_definitions(root))
        result = ingest_delivery(hub, name, Delivery(content, fmt, options or {}, mode, {"source_url": "test"}))
        assert result.status == "published", result.report
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.close()


@pytest.fixture(scope="session")
def demo_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """The harvested demo city, built once per test session: for tests that only read."""
    from catalogue.sitegen.builder import build_site
    from harvesters.runner import harvest_source, list_sources

    root = tmp_path_factory.mktemp("demo")
    shutil.copytree(DEMO / "feeds", root / "feeds-root" / "feeds")
    with FeedServer(root / "feeds-root") as server:
        hub = open_hub(Settings(data_dir=root / "var", feed_base_url=server.url))
        sync_definitions(hub, load_definitions(hub.settings.definitions_dir))
        for name in list_sources(hub):
            assert harvest_source(hub, name).status == "published"
    build_site(hub)
    yield hub
    hub.close()


async def in_process_client(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of ``hub``'s API in process (ASGI, no server); closes the app's engine, pool and reads after."""
    app = create_app(hub.settings, hub)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as client:
        yield client
    app.state.query_engine.close()
    app.state.sql_pool.close()
    app.state.loop_reads.close()


@pytest.fixture
async def api(demo_hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    """The API in process on the shared, read-only demo catalogue."""
    async for client in in_process_client(demo_hub):
        yield client


PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgis_or_skip() -> None:
    """Install PostGIS in the test database's ``public`` schema once (pg_schema's search path reaches it), or skip."""
    from sqlalchemy import create_engine, text

    pytest.importorskip("psycopg")
    admin = create_engine(PG_URL)
    try:
        with admin.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(4242)"))  # two first tests at once: one creates it
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS postgis SCHEMA public"))
    except Exception as exc:  # noqa: BLE001 - no server, no package postgresql-15-postgis-3, or no right to create it
        pytest.skip(f"PostGIS cannot be created in 127.0.0.1:5432/test (apt-get install postgresql-15-postgis-3; "
                    f"needs a superuser): {str(exc).splitlines()[0]}")
    finally:
        admin.dispose()


@contextmanager
def pg_schema(prefix: str, postgis: bool = False) -> Iterator[dict[str, Any]]:
    """Settings overrides putting the catalogue in a throwaway schema of the machine's PostgreSQL (dropped after).

    ``postgis``: the search path also reaches ``public``, where postgis_or_skip installs PostGIS.
    Skips the test when psycopg is missing or the server cannot be reached.
    """
    import uuid

    from sqlalchemy import create_engine, text

    pytest.importorskip("psycopg")
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server skips
        admin.dispose()
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432/test is not reachable: {exc}")
    try:
        # public after the schema: PostGIS's types and functions live there (see postgis_or_skip); tables do not.
        yield {"database_url": f"{PG_URL}?options=-csearch_path%3D{schema}{'%2Cpublic' if postgis else ''}"}
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
