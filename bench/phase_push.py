"""15. Push deliveries: a 10,000-row CSV pushed over HTTP against the same file harvested, and concurrent appends.

One catalogue holds two datasets with the parking schema: ``pushed`` (no source: it is delivered to) and
``harvested`` (an ``http-file`` source on a loopback HTTP server). In turns, the same 10,000-row CSV is
pushed end to end (``POST /deliveries``, mode replace, through ``urbandata serve``: upload, validation,
commit) and harvested (``harvest_source``: download from the loopback server, the same pipeline, commit).
Each side alternates between two different files, so every turn makes a new version (never "unchanged").

Then 10 clients push 100-row append deliveries at once to a third dataset (each client its own readings),
while a client reads its ``/stream``: pushes per second, and the delay from the start of each POST to its
version's event under that load (phase 10 measures the same delay one delivery at a time).

Alone: ``python -m bench.phase_push [--quick]`` prints the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from rich.console import Console

from bench.context import Context
from bench.data import START, STEP_MINUTES, Shape, write_csv, write_definitions
from bench.measure import Figure, per_turn, ratio_target, settle, timed_alternately
from bench.phase_live import _stream_reader
from bench.servers import our_api
from catalogue.hub import Hub, open_hub
from catalogue.meta.definitions import load_definitions, sync_definitions
from catalogue.meta.tokens import create_token
from catalogue.settings import Settings
from harvesters.runner import harvest_source

SECTION = "push"
PUSHED, HARVESTED, APPENDED = "pushed", "harvested", "appended"
DELIVERY_ROWS = 10_000
SMALL_ROWS = 100
CLIENTS = 10
HEADER = "sensor_id,lot_id,district,timestamp,occupied,free,lon,lat\n"


class _Feed(BaseHTTPRequestHandler):
    """Serves ``body[0]`` (the file of the turn) at any path, always 200: the harvest never gets a 304."""

    body: list[bytes]

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        body = self.body[0]
        self.send_response(200)
        self.send_header("Content-Type", "text/csv; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


def _catalogue(ctx: Context, feed_url: str) -> Hub:
    root = ctx.work / "push"
    defs = write_definitions(root / "defs", PUSHED, {name: "international" for name in (PUSHED, HARVESTED, APPENDED)})
    definition = root / "defs" / "definitions" / f"{HARVESTED}.yaml"
    harvested = json.loads(definition.read_text(encoding="utf-8"))
    harvested["source"] = {"type": "http-file", "url": feed_url, "format": "csv", "mode": "replace",
                           "options": {"delimiter": ",", "encoding": "utf-8"}}
    definition.write_text(json.dumps(harvested), encoding="utf-8")
    hub = open_hub(Settings(data_dir=root / "var", definitions_dir=defs, harvest_allowed_hosts=["127.0.0.1"]))
    sync_definitions(hub, load_definitions(defs))
    return hub


def _readings(client: int, number: int) -> bytes:
    """SMALL_ROWS readings of ``client``'s own sensors at its ``number``-th tick (never a key seen before)."""
    at = (START + timedelta(minutes=STEP_MINUTES * number)).strftime("%Y-%m-%dT%H:%M:%S")
    lines = [f"C{client:02d}S{s:03d},L{s // 10:04d},Altstadt,{at},{s % 50},{50 - s % 50},9.950000,53.550000\n"
             for s in range(SMALL_ROWS)]
    return (HEADER + "".join(lines)).encode()


def push_against_harvest(ctx: Context, hub: Hub, client: httpx.Client, base: str, feed: list[bytes]) -> None:
    """The 10,000-row CSV pushed over HTTP and harvested, timed in turns."""
    files = [write_csv(ctx.work / "push" / f"delivery-{i}.csv", shape, "international").read_bytes()
             for i, shape in enumerate((Shape(DELIVERY_ROWS, 100, 100), Shape(DELIVERY_ROWS, 125, 80)))]
    turns = {"push": 0, "harvest": 0}

    def push() -> None:
        body = files[turns["push"] % 2]
        turns["push"] += 1
        answer = client.post(f"{base}/datasets/{PUSHED}/deliveries", params={"mode": "replace"}, content=body,
                             headers={"Content-Type": "text/csv"})
        if answer.status_code != 201:
            raise RuntimeError(f"the push did not publish: {answer.status_code} {answer.text[:300]}")

    def harvest() -> None:
        feed[0] = files[turns["harvest"] % 2]
        turns["harvest"] += 1
        outcome = harvest_source(hub, HARVESTED)
        if outcome.status != "published":
            raise RuntimeError(f"the harvest did not publish: {outcome.status} {outcome.message}")

    def measure() -> dict[str, list[float]]:
        return timed_alternately({"push": push, "harvest": harvest}, ctx.heavy * 2, warmup=1)

    times, repeated = settle(measure, lambda t: per_turn(t["push"], t["harvest"]), 1.2)
    res = ctx.results
    res.add(Figure("push.csv10k.push_s", f"push of a {DELIVERY_ROWS:,}-row CSV over HTTP (replace)", "s", times["push"]))
    res.add(Figure("push.csv10k.harvest_s", f"harvest of the same {DELIVERY_ROWS:,}-row CSV", "s", times["harvest"]))
    res.targets.append(ratio_target(SECTION, f"push / harvest of a {DELIVERY_ROWS:,}-row CSV (push overhead)",
                                    per_turn(times["push"], times["harvest"]), "<=", 1.2, repeated=repeated))


def concurrent_appends(ctx: Context, token: str, base: str) -> None:
    """CLIENTS clients pushing SMALL_ROWS-row appends at once; a /stream client notes each version's event."""
    per_client = 2 if ctx.rows < 1_000_000 else 5 if ctx.quick else 20  # tiny runs (test_bench) stay short
    sent: dict[int, float] = {}
    arrived: dict[int, float] = {}
    failed: list[str] = []
    lock = threading.Lock()

    def run_client(number: int) -> None:
        with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {token}"}) as client:
            for tick in range(per_client):
                started = time.perf_counter()
                answer = client.post(f"{base}/datasets/{APPENDED}/deliveries", params={"mode": "append"},
                                     content=_readings(number, tick), headers={"Content-Type": "text/csv"})
                with lock:
                    if answer.status_code == 201:
                        sent[int(answer.json()["version"])] = started
                    else:
                        failed.append(f"{answer.status_code} {answer.text[:200]}")

    with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {token}"}) as client:
        first = client.post(f"{base}/datasets/{APPENDED}/deliveries", params={"mode": "append"},
                            content=_readings(CLIENTS, 0), headers={"Content-Type": "text/csv"})
        if first.status_code != 201:  # the stream follows a dataset that has a version
            raise RuntimeError(f"the first append did not publish: {first.status_code} {first.text[:300]}")
    stop = threading.Event()
    with _stream_reader(f"{base}/datasets/{APPENDED}/stream", arrived, stop) as connected:
        if not connected.wait(60):
            raise RuntimeError("the stream did not open")
        began = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(run_client, range(CLIENTS)))
        wall = time.perf_counter() - began
        deadline = time.monotonic() + 30
        while not sent.keys() <= arrived.keys() and time.monotonic() < deadline:
            time.sleep(0.05)
    if failed:
        raise RuntimeError(f"{len(failed)} of {CLIENTS * per_client} concurrent appends failed, e.g. {failed[0]}")
    delays = sorted((arrived[v] - t) * 1000 for v, t in sent.items() if v in arrived)
    if len(delays) < len(sent):
        raise RuntimeError(f"{len(sent) - len(delays)} of {len(sent)} pushed versions never reached the stream")
    res = ctx.results
    note = f"{CLIENTS} clients x {per_client} deliveries of {SMALL_ROWS} rows"
    res.add(Figure("push.append.per_s", f"{SMALL_ROWS}-row append pushes per second, {CLIENTS} concurrent clients",
                   "pushes/s", [len(sent) / wall], note=note))
    res.add(Figure("push.sse.p50.ms", f"push to /stream event under {CLIENTS} concurrent clients, p50", "ms",
                   [statistics.median(delays)], note=note))
    res.add(Figure("push.sse.p99.ms", f"push to /stream event under {CLIENTS} concurrent clients, p99", "ms",
                   [delays[min(len(delays) - 1, round(0.99 * (len(delays) - 1)))]], note=note))
    res.note(SECTION, f"Concurrent appends: one server process takes a dataset's pushes in turn, so the delay "
             f"from a POST's start to its event includes waiting behind the other {CLIENTS - 1} clients' deliveries.")


def run(ctx: Context) -> None:
    feed: list[bytes] = [HEADER.encode()]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("Feed", (_Feed,), {"body": feed}))
    thread = threading.Thread(target=httpd.serve_forever, name="bench-feed", daemon=True)
    thread.start()
    hub = None
    try:
        hub = _catalogue(ctx, f"http://127.0.0.1:{httpd.server_address[1]}/feed.csv")
        token, _ = create_token(hub, "bench-stadtwerke", "bench push", ["push"], expires_in_days=1)
        env = {"URBANDATA_DEFINITIONS_DIR": str(hub.settings.definitions_dir), "URBANDATA_STREAM_HEARTBEAT_S": "0.5"}
        with our_api(hub.settings.data_dir, env, log=ctx.work / "push-server.log") as server, \
                httpx.Client(timeout=120, headers={"Authorization": f"Bearer {token}"}) as client:
            base = f"{server.url}{hub.settings.api_prefix}"
            ctx.step(f"push: a {DELIVERY_ROWS:,}-row CSV pushed and harvested in turns")
            push_against_harvest(ctx, hub, client, base, feed)
            ctx.step(f"push: {CLIENTS} clients pushing {SMALL_ROWS}-row appends")
            concurrent_appends(ctx, token, base)
    finally:
        if hub is not None:
            hub.close()
        httpd.shutdown()
        httpd.server_close()
    ctx.results.note(SECTION, "Push: the POST's whole round trip through `urbandata serve` (upload, validation, "
                     "commit); harvest: `harvest_source` in the bench process (download from a loopback server, "
                     "the same pipeline, commit); timed in turns, each side alternating two different files.")


def main(argv: list[str] | None = None) -> None:
    """Run this phase alone and print its figures and targets."""
    parser = argparse.ArgumentParser(prog="python -m bench.phase_push", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5 deliveries per client instead of 20.")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="urbandata-bench-push-") as work:
        ctx = Context(work=Path(work), rows=1_000_000, repeat=args.repeat, quick=args.quick, console=console)
        run(ctx)  # rows: the suite's default size (1,000,000 or more): 5 (quick) or 20 deliveries per client
        for line in ctx.results.lines():
            console.print(line)


if __name__ == "__main__":
    main()
