"""The real server (api.server, as `urbandata serve` runs it) in a subprocess on a free loopback port.

For the tests that need a process of its own: limits on open files or file
size apply to the whole process, and a load test must not share its event
loop with the clients that load it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.production_backend import backend_env

SCRIPT = r"""
import json, resource, signal, socket, sys
args = json.loads(sys.argv[1])
if args["fsize"] is not None:
    # Writing past the limit then fails with EFBIG, as a full disk fails with ENOSPC (and kills no process).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (args["fsize"], args["fsize"]))
if args["nofile"] is not None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (args["nofile"], args["nofile"]))
from api.app import create_app
from api.server import make_server, run_server
from catalogue.hub import open_hub
from catalogue.settings import Settings
# IPPROTO_TCP named, as api.cli._bind does: asyncio then sets TCP_NODELAY on each connection (else 40 ms a reply).
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
sock.bind(("127.0.0.1", 0))
if args.get("own_public_url"):  # links in answers point at this server, as `urbandata serve` makes them
    args["settings"]["public_url"] = f"http://127.0.0.1:{sock.getsockname()[1]}"
settings = Settings(**args["settings"])
hub = open_hub(settings)
options = {k: args[k] for k in ("read_timeout_s", "max_connections") if args[k] is not None}
server = make_server(create_app(settings, hub), **options)
print(sock.getsockname()[1], flush=True)
run_server(server, sock)
"""


@contextmanager
def live_server(settings: dict[str, Any], log: Path, *, fsize: int | None = None, nofile: int | None = None,
                read_timeout_s: float | None = None, max_connections: int | None = None,
                own_public_url: bool = False) -> Iterator[str]:
    """Serve the catalogue of ``settings`` (Settings arguments, JSON-able); yields the base URL.

    ``fsize``: RLIMIT_FSIZE in bytes (a full disk); ``nofile``: RLIMIT_NOFILE. The server's
    stderr goes to ``log``. ``own_public_url``: the server's public_url is its own address (the
    absolute links in its answers, CKAN resource URLs and DCAT IRIs, lead back to it).
    """
    proc, url = start_server(settings, log, fsize=fsize, nofile=nofile, read_timeout_s=read_timeout_s,
                             max_connections=max_connections, own_public_url=own_public_url)
    try:
        yield url
    finally:
        stop_server(proc)


def start_server(settings: dict[str, Any], log: Path, *, fsize: int | None = None, nofile: int | None = None,
                 read_timeout_s: float | None = None, max_connections: int | None = None,
                 own_public_url: bool = False) -> tuple[subprocess.Popen[bytes], str]:
    """``live_server`` for a caller that needs the process (to measure or kill it): the process and its
    base URL once /health answers; ``stop_server`` ends it."""
    args = {"settings": settings, "fsize": fsize, "nofile": nofile, "read_timeout_s": read_timeout_s,
            "max_connections": max_connections, "own_public_url": own_public_url}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    if "data_dir" in settings:  # the production-backend run: that catalogue's database and storage
        env.update(backend_env(settings["data_dir"]))
    with open(log, "ab") as errors:
        proc = subprocess.Popen([sys.executable, "-c", SCRIPT, json.dumps(args, default=str)],
                                stdout=subprocess.PIPE, stderr=errors, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip().isdigit(), f"the server did not start: {log.read_text(errors='replace')[-2000:]}"
        url = f"http://127.0.0.1:{int(line)}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-2000:]
            time.sleep(0.1)
    except BaseException:
        stop_server(proc)
        raise
    return proc, url


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """End a server ``start_server`` started (SIGTERM, then SIGKILL after 20 s); a killed one is reaped."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def generated_catalogue(root: Path, rows: int, **settings: Any) -> dict[str, Any]:
    """A catalogue under ``root`` holding dataset 'generated': ``rows`` rows made by DuckDB, ingested through
    the store with ``settings``. Returns the Settings arguments that open it."""
    import duckdb
    import yaml

    from catalogue.hub import open_hub
    from catalogue.ingest.pipeline import Delivery, ingest_delivery
    from catalogue.meta.definitions import load_definitions, sync_definitions
    from catalogue.settings import Settings

    defs = root / "defs"
    (defs / "definitions").mkdir(parents=True)
    (defs / "schemas").mkdir()
    (defs / "publishers.yaml").write_text("publishers:\n  - name: testamt\n    title: Testamt Musterstadt\n")
    schema = {"fields": [{"name": "id", "type": "integer"}, {"name": "label", "type": "string"},
                         {"name": "value", "type": "number"}, {"name": "district", "type": "string"}],
              "primaryKey": ["id"]}
    (defs / "schemas" / "generated.json").write_text(json.dumps(schema))
    (defs / "definitions" / "generated.yaml").write_text(yaml.safe_dump({
        "name": "generated", "title": "Generated rows", "description": "Erzeugte Zeilen.", "publisher": "testamt",
        "license": "http://dcat-ap.de/def/licenses/dl-zero-de/2.0", "schema": "schemas/generated.json"}))
    feed = root / "generated.csv"
    duckdb.sql(f"COPY (SELECT range AS id, 'Zeile ' || range || ' ' || md5(range::VARCHAR) AS label, "
               f"range / 7 AS value, 'Bezirk ' || (range % 9) AS district FROM range({rows})) TO '{feed}' (HEADER)")
    arguments = {"data_dir": str(root / "var"), "definitions_dir": str(defs), **settings}
    hub = open_hub(Settings(**arguments))
    try:
        sync_definitions(hub, load_definitions(defs))
        delivery = Delivery(feed.read_bytes(), "csv", {}, "replace", {"source_url": "test"})
        result = ingest_delivery(hub, "generated", delivery)
        assert (result.status, result.rows) == ("published", rows), result.report
    finally:
        hub.close()
    return arguments


@contextmanager
def threaded_server(app: Any, **config: Any) -> Iterator[tuple[str, int]]:
    """``app`` under uvicorn in a background thread of this process, on a free loopback port: (host, port).

    For tests that share the process's catalogue with the server (no limits of its own needed).
    """
    import socket
    import threading

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY, as served
    sock.bind(("127.0.0.1", 0))
    runner = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **config))
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not runner.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start within 30 s"
        time.sleep(0.05)
    try:
        yield "127.0.0.1", sock.getsockname()[1]
    finally:
        runner.should_exit = True
        thread.join(timeout=30)
        sock.close()
