"""Run tests/site_browser/browse.mjs (playwright-core driving Debian's Chromium) from pytest.

``browse(pages, allowed)`` returns one result dict per page (see browse.mjs). The tools come
from the repository's own files: Chromium from ``scripts/install-test-deps.sh``
(``apt-get install chromium``), playwright-core and axe-core from ``site/package.json``
(``npm ci`` in ``site/``). Screenshots go to ``$URBANDATA_SCREENSHOTS`` when set, else to the
test's temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MODULES = ROOT / "site" / "node_modules"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCRIPT = Path(__file__).with_name("browse.mjs")


def missing_tools() -> str | None:
    """Why the browser tests cannot run here (None when they can), naming the command that fixes it."""
    if not Path(CHROMIUM).exists():
        return "Chromium is not installed: run scripts/install-test-deps.sh (apt-get install chromium)"
    if shutil.which("node") is None:
        return "Node.js is not installed: run scripts/install-test-deps.sh"
    if not (MODULES / "playwright-core").is_dir() or not (MODULES / "axe-core").is_dir():
        return "playwright-core/axe-core are not installed: run scripts/install-test-deps.sh (npm ci in site/)"
    return None


def browse(pages: list[dict[str, Any]], allowed: list[str], screenshots: Path | None,
           timeout: float = 600) -> list[dict[str, Any]]:
    """Open every page of ``pages`` in headless Chromium; requests to origins outside ``allowed`` are aborted
    and reported."""
    job = {"chromium": CHROMIUM, "modules": str(MODULES), "allowed": allowed, "pages": pages,
           "screenshots": str(screenshots) if screenshots else None}
    if screenshots:
        screenshots.mkdir(parents=True, exist_ok=True)
    spec = (screenshots or Path(os.environ.get("TMPDIR", "/tmp"))) / f"browse-{os.getpid()}-{id(pages)}.json"
    spec.write_text(json.dumps(job), encoding="utf-8")
    try:
        done = subprocess.run(["node", str(SCRIPT), str(spec)], capture_output=True, text=True, timeout=timeout)
    finally:
        spec.unlink(missing_ok=True)
    assert done.returncode == 0, f"browse.mjs failed ({done.returncode}): {done.stderr[-3000:]}"
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass


@contextmanager
def static_server(root: Path) -> Iterator[str]:
    """A plain static file server (Python's http.server) for ``root`` on a free loopback port; yields its URL.

    Python's server answers no Range requests; a host that serves the site's Parquet files for the SQL
    console must (nginx, Apache and object stores do) — the tests serve those from the API."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def screenshot_dir(tmp_path: Path, name: str) -> Path:
    """Where a test's screenshots go: ``$URBANDATA_SCREENSHOTS/<name>`` or the test's temporary directory."""
    base = os.environ.get("URBANDATA_SCREENSHOTS")
    return Path(base) / name if base else tmp_path / "screenshots"
