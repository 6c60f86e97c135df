"""Shared fixtures: real files, a real HTTP feed server on a free port, a real catalogue."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.feed_server import FeedServer
from catalogue.definitions import load_definitions, sync_definitions
from catalogue.hub import Hub, open_hub
from catalogue.settings import PROJECT_ROOT, Settings

DEMO = PROJECT_ROOT / "datasets"


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
    return Settings(data_dir=tmp_path / "var", feed_base_url=feed_server.url)


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
    from catalogue.site_builder import build_site

    build_site(harvested)
    app = create_app(harvested.settings, harvested)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as c:
        yield c
    app.state.query_engine.close()
