"""10. Live values: ``/latest`` against the length of the history, and a pushed delivery's way to a stream client.

Two catalogues hold the same 1,000 sensors with a history of ``rows / 10``
and ``rows`` readings (1M and 10M by default). ``/latest`` (the latest row per
sensor, kept at commit time) is timed against the records query a client
would send without it (``group_by`` the sensor, ``max(timestamp)``), as the
routes compute them with the result cache off. Then, on the smaller
catalogue served by ``urbandata serve``, 100-row append deliveries are pushed
through the push API while a client reads ``/stream``: the delay from the
start of each POST to the arrival of its version's event.

Alone: ``python -m bench.phase_live --rows 200000`` prints the figures.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
from rich.console import Console

from bench.context import Context
from bench.data import START, STEP_MINUTES, Shape, csv_options, write_csv, write_definitions
from bench.measure import Figure, per_turn, ratio_target, settle, timed_alternately
from bench.servers import our_api
from catalogue.hub import Hub, open_hub
from catalogue.ingest.pipeline import Delivery, ingest_delivery
from catalogue.meta.definitions import load_definitions, sync_definitions
from catalogue.query.engine import QueryEngine
from catalogue.query.latest import latest_page
from catalogue.query.records import RecordsRequest, plan_records, run_records
from catalogue.settings import Settings

SECTION = "live"
DATASET = "live"
SENSORS = 1_000
PAGE = 100
PUSH_ROWS = 100


def _catalogue(ctx: Context, rows: int) -> Hub:
    """A catalogue whose dataset ``live`` holds ``rows`` readings of SENSORS sensors, ingested through the store."""
    root = ctx.work / f"live-{rows}"
    defs = write_definitions(root / "defs", DATASET, {DATASET: "international"})
    csv = write_csv(root / "history.csv", Shape(rows, SENSORS, -(-rows // SENSORS)), "international")
    hub = open_hub(Settings(data_dir=root / "var", definitions_dir=defs, result_cache_mb=0,
                            query_time_limit_ms=600_000))
    sync_definitions(hub, load_definitions(defs))
    result = ingest_delivery(hub, DATASET, Delivery(b"", "csv", csv_options("international"), "replace",
                                                    {"source_url": "bench"}, path=csv))
    if result.status != "published":
        raise RuntimeError(f"the live history did not publish: {result.message}")
    return hub


def _latest(engine: QueryEngine) -> Callable[[], object]:
    request = RecordsRequest(limit=PAGE)

    def run() -> object:
        ref = engine.version(DATASET)
        return latest_page(engine, ref, request, limit=PAGE)
    return run


def _grouped(engine: QueryEngine) -> Callable[[], object]:
    request = RecordsRequest(select="sensor_id, max(timestamp) as t", group_by="sensor_id", limit=PAGE)

    def run() -> object:
        ref = engine.version(DATASET)
        plan = plan_records(request, ref.schema, list(ref.uris), ref.number, row_count=ref.row_count)
        return engine.run(lambda cur: run_records(cur, plan, version=ref.number, limit=PAGE,
                                                  time_limit_ms=engine.hub.settings.query_time_limit_ms))
    return run


def latest_latency(ctx: Context, hubs: dict[int, Hub]) -> None:
    """``/latest`` at both history lengths, and the records group_by it spares, timed in turns."""
    res = ctx.results
    small, big = sorted(hubs)
    engines = {rows: QueryEngine(hub) for rows, hub in hubs.items()}
    try:
        fns = {f"{kind}.{rows}": (_latest if kind == "latest" else _grouped)(engines[rows])
               for rows in (small, big) for kind in ("latest", "grouped")}

        def measure() -> dict[str, list[float]]:
            return timed_alternately(fns, ctx.repeat * 3, warmup=1)

        flat, repeated = settle(measure, lambda t: per_turn(t[f"latest.{big}"], t[f"latest.{small}"]), 1.2)
    finally:
        for engine in engines.values():
            engine.close()
    for rows in (small, big):
        res.add(Figure(f"live.latest.{rows}.ms", f"/latest ({PAGE} of {SENSORS:,} sensors), {rows:,} rows of history",
                       "ms", [v * 1000 for v in flat[f"latest.{rows}"]]))
        res.add(Figure(f"live.grouped.{rows}.ms", f"records group_by sensor_id, max(timestamp), {rows:,} rows",
                       "ms", [v * 1000 for v in flat[f"grouped.{rows}"]]))
    res.targets.append(ratio_target(
        SECTION, f"/latest at {big:,} / at {small:,} rows of history (flat)",
        per_turn(flat[f"latest.{big}"], flat[f"latest.{small}"]), "<=", 1.2, repeated=repeated))
    res.targets.append(ratio_target(
        SECTION, f"records group_by the sensor / /latest, {big:,} rows",
        per_turn(flat[f"grouped.{big}"], flat[f"latest.{big}"]), ">=", 2))
    res.note(SECTION, f"Same {SENSORS:,} sensors at both lengths; the route's computation (version lookup, plan, "
             "DuckDB query, JSON rows) in process with the result cache off, timed in turns.")


def _readings(tick: int) -> bytes:
    """PUSH_ROWS readings of the first sensors at ``tick`` steps after the history's start."""
    at = (START + timedelta(minutes=STEP_MINUTES * tick)).strftime("%Y-%m-%dT%H:%M:%S")
    lines = [f"S{s:05d},L{s // 10:04d},Altstadt,{at},{s % 50},{50 - s % 50},9.950000,53.550000\n"
             for s in range(PUSH_ROWS)]
    return ("sensor_id,lot_id,district,timestamp,occupied,free,lon,lat\n" + "".join(lines)).encode()


@contextmanager
def _stream_reader(url: str, arrived: dict[int, float], stop: threading.Event) -> Iterator[threading.Event]:
    """A thread reading ``url``'s events, noting when each version's arrives; yields once it is connected."""
    connected = threading.Event()

    def read() -> None:
        with httpx.Client(timeout=60) as client, client.stream("GET", url) as response:
            for line in response.iter_lines():
                connected.set()
                if line.startswith("id: "):
                    arrived[int(line[4:])] = time.perf_counter()
                if stop.is_set():
                    return

    thread = threading.Thread(target=read, name="bench-stream", daemon=True)
    thread.start()
    try:
        yield connected
    finally:
        stop.set()
        thread.join(timeout=30)


def stream_delay(ctx: Context, hub: Hub, rows: int) -> None:
    """Delay from the start of a push to its event on ``/stream``, through ``urbandata serve``."""
    from catalogue.meta.tokens import create_token

    token, _ = create_token(hub, "bench-stadtwerke", "bench push", ["push"], expires_in_days=1)
    settings = hub.settings
    env = {"URBANDATA_DEFINITIONS_DIR": str(settings.definitions_dir), "URBANDATA_STREAM_HEARTBEAT_S": "0.5"}
    deliveries = 20 if ctx.quick or rows < 1_000_000 else 100  # the smoke runs keep their time
    sent: dict[int, float] = {}
    arrived: dict[int, float] = {}
    ticks = -(-rows // SENSORS)
    with our_api(settings.data_dir, env, log=ctx.work / "live-server.log") as server:
        base = f"http://127.0.0.1:{server.port}{settings.api_prefix}/datasets/{DATASET}"
        stop = threading.Event()
        with _stream_reader(f"{base}/stream", arrived, stop) as connected, \
                httpx.Client(timeout=120, headers={"Authorization": f"Bearer {token}"}) as client:
            if not connected.wait(60):
                raise RuntimeError("the stream did not open")
            for number in range(deliveries):
                started = time.perf_counter()
                answer = client.post(f"{base}/deliveries", params={"mode": "append"},
                                     content=_readings(ticks + number), headers={"Content-Type": "text/csv"})
                answer.raise_for_status()
                sent[int(answer.json()["version"])] = started
                time.sleep(0.1)
            deadline = time.monotonic() + 30
            while not sent.keys() <= arrived.keys() and time.monotonic() < deadline:
                time.sleep(0.05)
    delays = [(arrived[v] - t) * 1000 for v, t in sent.items() if v in arrived]
    if len(delays) < len(sent):
        raise RuntimeError(f"{len(sent) - len(delays)} of {len(sent)} pushed versions never reached the stream")
    res = ctx.results
    ordered = sorted(delays)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    res.add(Figure("live.sse.p50.ms", f"push to /stream event, p50 ({PUSH_ROWS}-row appends, {rows:,} rows)", "ms",
                   [statistics.median(delays)], note=f"{len(delays)} deliveries"))
    res.add(Figure("live.sse.p99.ms", f"push to /stream event, p99 ({PUSH_ROWS}-row appends, {rows:,} rows)", "ms",
                   [p99], note=f"{len(delays)} deliveries"))
    res.note(SECTION, "Delay: from the start of the POST (the whole push: upload, validation, commit, latest file) "
             "to the arrival of the version's event at a client of the same server, one delivery at a time.")


def run(ctx: Context) -> None:
    sizes = (max(ctx.rows // 10, SENSORS * 10), ctx.rows)
    hubs: dict[int, Hub] = {}
    try:
        for rows in sizes:
            ctx.step(f"live: a history of {rows:,} readings")
            hubs[rows] = _catalogue(ctx, rows)
        latest_latency(ctx, hubs)
        stream_delay(ctx, hubs[sizes[0]], sizes[0])
    finally:
        for hub in hubs.values():
            hub.close()


def main(argv: list[str] | None = None) -> None:
    """Run this phase alone and print its figures and targets."""
    parser = argparse.ArgumentParser(prog="python -m bench.phase_live", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows of the longer history.")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="urbandata-bench-live-") as work:
        ctx = Context(work=Path(work), rows=args.rows, repeat=args.repeat, quick=False, console=console)
        run(ctx)
        for line in ctx.results.lines():
            console.print(line)


if __name__ == "__main__":
    main()
