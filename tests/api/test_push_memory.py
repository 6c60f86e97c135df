"""A pushed body is streamed to disk: a 256 MB push raises the server's peak memory by far less than its size."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.api.live_server import start_server, stop_server
from tests.api.push_support import bearer, make_push_hub, token

BODY_MB = 256


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status (not Linux?)")


def _body() -> Iterator[bytes]:
    block = b"\0" * (1 << 20)  # not Parquet: the ingest refuses it at once, so the figure is the route's
    for _ in range(BODY_MB):
        yield block


def test_a_large_body_never_sits_in_the_servers_memory(tmp_path: Path) -> None:
    hub = make_push_hub(tmp_path)
    settings = {"data_dir": str(hub.settings.data_dir), "definitions_dir": str(hub.settings.definitions_dir)}
    pusher = bearer(token(hub, "stadtwerke", "push"))
    hub.close()
    proc, url = start_server(settings, tmp_path / "server.log")
    try:
        httpx.get(f"{url}/api/v1/datasets/meters/records")  # everything a request loads, loaded
        before = _peak_rss_mb(proc.pid)
        answer = httpx.post(f"{url}/api/v1/datasets/meters/deliveries", params={"format": "parquet"}, content=_body(),
                            headers={**pusher, "Content-Length": str(BODY_MB << 20)}, timeout=300)
        after = _peak_rss_mb(proc.pid)
    finally:
        stop_server(proc)
    assert (answer.status_code, answer.json()["error"]["code"]) == (422, "delivery-invalid"), answer.text
    print(f"peak RSS {before:.0f} MB before, {after:.0f} MB after a {BODY_MB} MB push")
    assert after - before < BODY_MB / 4, f"peak RSS grew {after - before:.0f} MB for a {BODY_MB} MB body"
