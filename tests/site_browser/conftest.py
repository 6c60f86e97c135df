"""Fixtures of the browser tests: the demo site served by a real server, Chromium ready."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from catalogue.hub import Hub
from tests.api.live_server import live_server
from tests.site_browser.harness import missing_tools


@pytest.fixture(scope="session")
def browser_ready() -> None:
    """Skip with the command that installs the tools, where Chromium, Node.js or the npm packages are missing."""
    reason = missing_tools()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def hub_url(demo_hub: Hub, tmp_path_factory: pytest.TempPathFactory, browser_ready: None) -> Iterator[str]:
    """`urbandata serve` (site at /, API under /api/v1) on the built demo catalogue, on a free port."""
    log = tmp_path_factory.mktemp("browser-server") / "server.log"
    with live_server({"data_dir": str(demo_hub.settings.data_dir)}, log) as url:
        yield url


@pytest.fixture(scope="session")
def demo_site(demo_hub: Hub) -> Path:
    """The built demo site's folder."""
    return demo_hub.settings.site_dir
