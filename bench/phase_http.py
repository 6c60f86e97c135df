"""3–5. HTTP: records throughput vs Datasette, exports vs static files and Datasette's CSV, server memory."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import httpx

from bench.context import DATASET, Context
from bench.loadgen import load
from bench.measure import Figure, RssSampler, Target, mib
from bench.phase_queries import version_ref
from bench.servers import Server, datasette, our_api
from catalogue.query.exports import parquet_file
from catalogue.hub import open_hub
from catalogue.query.engine import QueryEngine
from catalogue.settings import Settings

RECORDS = f"/api/v1/datasets/{DATASET}/records"
DS_TABLE = "/parking/parking"


def _server_env(ctx: Context, **extra: str) -> dict[str, str]:
    assert ctx.defs is not None
    return {"URBANDATA_DEFINITIONS_DIR": str(ctx.defs), "URBANDATA_MAX_RETURNED_ROWS": "10000", **extra}


def _download(url: str, max_time_s: float | None = None) -> tuple[int, float]:
    """(bytes, seconds) of one GET from a separate process (curl), or from httpx if curl is missing."""
    curl = shutil.which("curl")
    if curl:
        command = [curl, "-s", "-o", os.devnull, "-w", "%{http_code} %{size_download} %{time_total}"]
        if max_time_s:
            command += ["--max-time", str(max_time_s)]
        done = subprocess.run(command + [url], capture_output=True, text=True, timeout=(max_time_s or 1800) + 60)
        status, size, seconds = done.stdout.split()
        if done.returncode not in (0, 28) or status not in ("200", "000"):
            raise RuntimeError(f"GET {url} answered {status} (curl exit {done.returncode})")
        return int(size), float(seconds)
    size, started = 0, time.perf_counter()
    with httpx.stream("GET", url, timeout=None) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes(1 << 20):
            size += len(chunk)
            if max_time_s and time.perf_counter() - started > max_time_s:
                break
    return size, time.perf_counter() - started


def _bytes_per_row(url: str) -> float:
    body = httpx.get(url, timeout=60).content
    lines = body.count(b"\n") - 1  # without the header line
    return (len(body) - body.index(b"\n") - 1) / max(lines, 1)


def _pages(ctx: Context) -> dict[str, tuple[str, str]]:
    """page -> (our path, Datasette's path)."""
    sensor = ctx.shape.sensor(42)
    return {
        "first": (f"{RECORDS}?limit=100", f"{DS_TABLE}.json?_size=100&_shape=objects&_nosuggest=1"),
        "filtered": (f"{RECORDS}?limit=100&where={quote(f'sensor_id = {chr(39)}{sensor}{chr(39)}')}",
                     f"{DS_TABLE}.json?sensor_id={sensor}&_size=100&_shape=objects&_nosuggest=1"),
    }


def uncached(ctx: Context, ours: Server) -> None:
    """The same loads on a server whose result cache is off: every request runs its query (no target)."""
    res = ctx.results
    repeat = min(ctx.repeat, 2)  # (no target: two runs show the spread and keep the default run short)
    for page, (our_path, _) in _pages(ctx).items():
        values = []
        for i in range(repeat):
            ctx.step(f"HTTP {page} page: ours with the result cache off, repeat {i + 1}/{repeat}")
            result = load(ours.url + our_path, ctx.concurrency, ctx.http_seconds, ctx.prefer_wrk)
            if result.errors:
                raise RuntimeError(f"ours answered {result.errors} of {result.requests} requests with errors")
            values.append(result.rps)
        res.add(Figure(f"http.{page}.ours_nocache", f"records endpoint, {page} page (100 rows): ours, result cache "
                       "off (`URBANDATA_RESULT_CACHE_MB=0`)", "req/s", values, higher_is_better=True))
    res.note("http", "Without the result cache (no target; every request plans, prunes and runs its DuckDB query): "
             + "; ".join(f"{page} page ours / Datasette **{res.median(f'http.{page}.ours_nocache') / res.median(f'http.{page}.datasette'):.3g}×**"
                         for page in ("first", "filtered")) + ".")


def throughput(ctx: Context, ours: Server, theirs: Server) -> None:
    res = ctx.results
    pages = _pages(ctx)
    for page, (our_path, their_path) in _pages(ctx).items():
        rps: dict[str, list[float]] = {"ours": [], "datasette": []}
        for who, server, path in (("ours", ours, our_path), ("datasette", theirs, their_path)):
            body = httpx.get(server.url + path, timeout=60)
            body.raise_for_status()
            rows = len(body.json()["results" if who == "ours" else "rows"])
            if rows != 100:
                raise RuntimeError(f"{who} {page} page returned {rows} rows, not 100")
            for i in range(ctx.repeat):
                ctx.step(f"HTTP {page} page: {who}, {ctx.concurrency} connections × {ctx.http_seconds:g} s, "
                         f"repeat {i + 1}/{ctx.repeat}")
                result = load(server.url + path, ctx.concurrency, ctx.http_seconds, ctx.prefer_wrk)
                if result.errors:
                    raise RuntimeError(f"{who} answered {result.errors} of {result.requests} requests with errors")
                rps[who].append(result.rps)
                res.texts["loadgen"] = result.tool
        cache = httpx.get(ours.url + our_path, timeout=60).headers.get("X-Cache", "none")
        res.add(Figure(f"http.{page}.ours", f"records endpoint, {page} page (100 rows): ours", "req/s", rps["ours"],
                       higher_is_better=True, note=f"X-Cache after the load: {cache}"))
        res.add(Figure(f"http.{page}.datasette", f"table JSON, {page} page (100 rows): Datasette", "req/s",
                       rps["datasette"], higher_is_better=True))
    res.targets.append(Target("http", "records first page: our req/s / Datasette's",
                              res.median("http.first.ours") / res.median("http.first.datasette"), ">=", 2))
    res.targets.append(Target("http", "records filtered page (one sensor): our req/s / Datasette's",
                              res.median("http.filtered.ours") / res.median("http.filtered.datasette"), ">=", 1))
    res.note("http", f"Both servers run as subprocesses on free loopback ports, one process each: ours is "
             f"`urbandata serve` (uvicorn, default settings except max_returned_rows=10000), Datasette is "
             f"`datasette serve -i parking.db` (immutable, so its table count is cached; default settings). "
             f"Load: {ctx.concurrency} keep-alive connections for {ctx.http_seconds:g} s per repeat, from a second "
             f"process ({'wrk -t1' if res.texts.get('loadgen') == 'wrk' else 'bench.loadgen, asyncio'}). "
             f"Ours: `{pages['first'][0]}` and `{pages['filtered'][0]}`; Datasette: `{pages['first'][1]}` and "
             f"`{pages['filtered'][1]}` (`_nosuggest=1` spares Datasette its facet suggestions). Each page was "
             "checked to hold 100 rows before the load. Ours keeps answers per (version content hash, parameters) "
             "in its result cache (versions never change), so after the first request of a load it answers from "
             "memory; the same loads on a server with the cache off are listed too.")


DOWNLOAD_TURNS = 15  # downloads of each side for the Parquet download ratio


def exports(ctx: Context, ours: Server, theirs: Server, settings: Settings) -> None:
    res = ctx.results
    url = f"{ours.url}/api/v1/datasets/{DATASET}/exports/parquet"
    ctx.step("Parquet export: first download (combines the parts once)")
    size, first = _download(url)
    res.add(Figure("export.parquet.first", "first Parquet download (combines a multipart version once, then keeps it)",
                   "s", [first], note="once"))
    hub = open_hub(settings)
    engine = QueryEngine(hub)
    try:
        combined = Path(parquet_file(hub, engine, version_ref(hub)))
    finally:
        engine.close()
        hub.close()
    static_dir = settings.site_dir / "bench-static"
    static_dir.mkdir(parents=True, exist_ok=True)
    static = static_dir / "parking.parquet"
    static.unlink(missing_ok=True)
    os.link(combined, static)
    speeds: dict[str, list[float]] = {"ours": [], "static": []}
    # A download takes a tenth of a second: many, in turns, each side first every other time.
    turns = max(ctx.repeat, DOWNLOAD_TURNS)
    ctx.step(f"Parquet download: ours vs static file, {turns} each, in turns")
    sides = [("ours", url), ("static", f"{ours.url}/bench-static/parking.parquet")]
    for i in range(turns):
        for who, target in (sides if i % 2 == 0 else sides[::-1]):
            got, seconds = _download(target)
            if got != combined.stat().st_size:
                raise RuntimeError(f"{who} sent {got} bytes, the file has {combined.stat().st_size}")
            speeds[who].append(got / 1e6 / seconds)
    res.add(Figure("export.parquet.ours", f"whole-version Parquet download ({size / 1e6:.0f} MB): ours", "MB/s",
                   speeds["ours"], higher_is_better=True))
    res.add(Figure("export.parquet.static", "same file from Starlette StaticFiles on the same uvicorn", "MB/s",
                   speeds["static"], higher_is_better=True))
    res.targets.append(Target("exports", "Parquet download MB/s: ours / static file serving",
                              res.median("export.parquet.ours") / res.median("export.parquet.static"), ">=", 0.8))
    static.unlink()

    cap = max(ctx.http_seconds, 5)  # Datasette streams about 1 MB/s: a few seconds give its rate
    their_csv = f"{theirs.url}{DS_TABLE}.csv?_stream=on&_size=max"
    their_speeds = []
    for i in range(ctx.repeat):
        ctx.step(f"CSV: Datasette ?_stream=on for at most {cap:g} s, repeat {i + 1}/{ctx.repeat}")
        got, seconds = _download(their_csv, max_time_s=cap)
        their_speeds.append(got / 1e6 / seconds)
    res.add(Figure("export.csv.datasette", f"Datasette CSV streaming (`?_stream=on`), first {cap:g} s at most",
                   "MB/s", their_speeds, higher_is_better=True))
    their_row = _bytes_per_row(f"{theirs.url}{DS_TABLE}.csv?_size=100")
    res.texts["csv_row_bytes.datasette"] = f"{their_row:.1f}"


def csv_export_memory(ctx: Context, env: dict[str, str], log: Path) -> None:
    """Full CSV export from a fresh server, its RSS sampled."""
    res = ctx.results
    assert ctx.store_dir is not None
    speeds, growth, peaks = [], [], []
    with our_api(ctx.store_dir, env, log) as server:
        url = f"{server.url}/api/v1/datasets/{DATASET}/exports/csv"
        for i in range(ctx.heavy):  # (a slow step: 750 MB a time at 10M rows)
            ctx.step(f"CSV export of the whole version: ours, repeat {i + 1}/{ctx.heavy}")
            with RssSampler(server.pid) as rss:
                got, seconds = _download(url)
            speeds.append(got / 1e6 / seconds)
            growth.append(mib(rss.peak - rss.start_rss))
            peaks.append(mib(rss.peak))
    res.add(Figure("export.csv.ours", f"CSV export of the whole version ({got / 1e6:.0f} MB): ours", "MB/s", speeds,
                   higher_is_better=True))
    res.add(Figure("export.csv.ours_rss", "server RSS peak during the CSV export", "MiB", peaks))
    res.add(Figure("export.csv.ours_growth", "server RSS growth during the CSV export (peak − before)", "MiB", growth))
    res.texts["csv_row_bytes.ours"] = f"{got / ctx.rows:.1f}"
    res.targets.append(Target("exports", "CSV export MB/s: ours / Datasette's CSV streaming",
                              res.median("export.csv.ours") / res.median("export.csv.datasette"), ">=", 20))
    res.targets.append(Target("exports", "CSV export memory is flat: server RSS growth during a full export",
                              max(growth), "<=", 256, unit="MiB"))
    res.note("exports", "Downloads are fetched by curl (a separate process) to /dev/null; MB/s = bytes / curl's "
             "total time. The static baseline is the very Parquet file our endpoint sends, hard-linked under "
             "the site directory and served by the same uvicorn process through Starlette's StaticFiles; "
             f"{DOWNLOAD_TURNS} downloads of each (more with a larger --repeat), in turns, each side first every "
             "other time (one takes about a tenth of a second, so a few would be noise). "
             "Datasette's CSV stream is cut after the stated time (its rate is steady; a full stream of a large "
             "table would take many minutes). Bytes per CSV row: ours "
             f"{res.texts.get('csv_row_bytes.ours')}, Datasette {res.texts.get('csv_row_bytes.datasette')} "
             "(it adds the rowid column), so MB/s compares near-equal rows. Memory: RSS of the server process "
             "sampled every 20 ms by psutil in the bench process; a fresh server for this measurement.")


def groupby_memory(ctx: Context, log: Path) -> None:
    """A heavy group-by (every sensor × hour) on a fresh server under its memory limit."""
    res = ctx.results
    assert ctx.store_dir is not None
    limit = ctx.server_memory_limit_mb
    # Result cache off: every repeat must run the group-by, not answer it from memory.
    env = _server_env(ctx, URBANDATA_DUCKDB_MEMORY_LIMIT_MB=str(limit), URBANDATA_QUERY_TIME_LIMIT_MS="600000",
                      URBANDATA_RESULT_CACHE_MB="0")
    query = ("select=sensor_id, date_trunc('hour', timestamp) as hour, avg(free) as mean_free, max(occupied) as peak"
             "&group_by=sensor_id, date_trunc('hour', timestamp) as hour&order_by=mean_free desc&limit=100")
    growth, peaks, seconds = [], [], []
    with our_api(ctx.store_dir, env, log) as server:
        url = f"{server.url}{RECORDS}?{query}"
        for i in range(ctx.repeat):
            ctx.step(f"memory: group-by every sensor × hour under a {limit} MiB limit, repeat {i + 1}/{ctx.repeat}")
            with RssSampler(server.pid) as rss:
                started = time.perf_counter()
                response = httpx.get(url, timeout=900)
                seconds.append(time.perf_counter() - started)
            response.raise_for_status()
            growth.append(mib(rss.peak - rss.start_rss))
            peaks.append(mib(rss.peak))
    groups = response.json()["total_count"]
    res.add(Figure("mem.groupby.seconds", f"group-by sensor × hour ({groups:,} groups) through the records endpoint",
                   "s", seconds))
    res.add(Figure("mem.groupby.rss", f"server RSS peak during it (duckdb_memory_limit_mb={limit})", "MiB", peaks))
    res.add(Figure("mem.groupby.growth", "server RSS growth during it (peak − before)", "MiB", growth))
    res.targets.append(Target("memory", f"group-by: server RSS growth ≤ its DuckDB memory limit ({limit} MiB)",
                              max(growth), "<=", limit, unit="MiB"))
    res.note("memory", "A fresh `urbandata serve` with URBANDATA_DUCKDB_MEMORY_LIMIT_MB set, the result cache off and the query deadline "
             f"raised (so the query finishes): `{RECORDS}?{query}`. DuckDB's limit covers its buffer manager; the "
             "process also holds Python, the interpreter's heap and the response.")


def run(ctx: Context) -> None:
    assert ctx.store_dir is not None
    logs = ctx.work / "logs"
    logs.mkdir(exist_ok=True)
    env = _server_env(ctx)
    settings = Settings(data_dir=ctx.store_dir, definitions_dir=ctx.defs, max_returned_rows=10_000)
    ctx.step("starting our API (uvicorn) and Datasette on free loopback ports")
    with our_api(ctx.store_dir, env, logs / "urbandata.log") as ours, \
            datasette(ctx.work / "datasette" / "parking.db", logs / "datasette.log") as theirs:
        throughput(ctx, ours, theirs)
        exports(ctx, ours, theirs, settings)
    with our_api(ctx.store_dir, _server_env(ctx, URBANDATA_RESULT_CACHE_MB="0"), logs / "urbandata-nocache.log") as bare:
        uncached(ctx, bare)
    csv_export_memory(ctx, env, logs / "urbandata-csv.log")
    groupby_memory(ctx, logs / "urbandata-groupby.log")
