"""3–5. HTTP: records throughput vs Datasette, exports vs static files and Datasette's CSV, server memory.

Headline: our server with the result cache and every read-path memo off,
asked questions drawn from a seeded list, in turns with Datasette deployed
both ways (``-i``, and ``-i --inspect-file``); the faster Datasette is the peer.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pyarrow.parquet as pq

from bench.context import DATASET, Context
from bench.loadgen import load
from bench.measure import Figure, RssSampler, Target, mib, per_turn, ratio_target, settle
from bench.phase_queries import version_ref
from bench.queries import SEED
from bench.servers import Server, datasette, datasette_inspect, our_api
from catalogue.hub import open_hub
from catalogue.query.engine import QueryEngine
from catalogue.query.exports import parquet_file
from catalogue.settings import Settings

RECORDS = f"/api/v1/datasets/{DATASET}/records"
DS_TABLE = "/parking/parking"
URLS_PER_LOAD = 500  # the seeded list a load picks from
HEADLINE_ENV = {"URBANDATA_RESULT_CACHE_MB": "0", "URBANDATA_READ_MEMOS": "false"}
GROUPBY_MEMORY_LIMIT_MB = 64
GROUPBY_SLACK_MB = 64  # the interpreter's heap, the response and DuckDB's allocations outside its buffer manager
DATASETTES = {"ds": "Datasette `-i`", "dsi": "Datasette `-i --inspect-file`"}


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


def _bytes_per_row(url: str, sample_bytes: int = 1 << 20) -> float:
    """Bytes per CSV row of a stream, from its first ``sample_bytes`` (the header line left out)."""
    body = b""
    with httpx.stream("GET", url, timeout=120) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes(1 << 16):
            body += chunk
            if len(body) >= sample_bytes:
                break
    body = body[:body.rindex(b"\n") + 1]
    lines = body.count(b"\n") - 1
    return (len(body) - body.index(b"\n") - 1) / max(lines, 1)


def _paths(ctx: Context, page: str, who: str) -> list[str]:
    """The paths a load picks from: the first page (one URL), or a filtered page per seeded random sensor."""
    if page == "first":
        return [f"{RECORDS}?limit=100" if who == "ours" else f"{DS_TABLE}.json?_size=100&_shape=objects&_nosuggest=1"]
    rng = random.Random(SEED)
    sensors = [ctx.shape.sensor(rng.randrange(ctx.shape.sensors)) for _ in range(URLS_PER_LOAD)]
    if who == "ours":
        return [f"{RECORDS}?limit=100&where={quote(f'sensor_id = {chr(39)}{s}{chr(39)}')}" for s in sensors]
    return [f"{DS_TABLE}.json?sensor_id={s}&_size=100&_shape=objects&_nosuggest=1" for s in sensors]


def _check_page(server: Server, path: str, who: str) -> str:
    response = httpx.get(server.url + path, timeout=120)
    response.raise_for_status()
    rows = len(response.json()["results" if who == "ours" else "rows"])
    if rows != 100:
        raise RuntimeError(f"{who} answered {path} with {rows} rows, not 100")
    return response.headers.get("X-Cache", "")


def _load(ctx: Context, server: Server, paths: list[str], who: str) -> float:
    result = load([server.url + p for p in paths], ctx.concurrency, ctx.http_seconds, ctx.prefer_wrk, seed=SEED)
    if result.errors:
        raise RuntimeError(f"{who} answered {result.errors} of {result.requests} requests with errors")
    ctx.results.texts["loadgen"] = result.tool
    return result.rps


def throughput(ctx: Context, ours: Server, peers: dict[str, Server]) -> None:
    """Each page: ours (uncached), Datasette -i, Datasette -i --inspect-file, in turns."""
    res = ctx.results
    for page in ("first", "filtered"):
        paths = {"ours": _paths(ctx, page, "ours"), **{k: _paths(ctx, page, k) for k in peers}}
        for who, server in (("ours", ours), *peers.items()):
            state = _check_page(server, paths[who][0], who)
            if who == "ours":
                res.facts.setdefault("headline_x_cache", []).append(state)
                if state != "miss":
                    raise RuntimeError(f"the headline server answered X-Cache: {state!r}, not a miss")

        def measure() -> dict[str, list[float]]:
            out: dict[str, list[float]] = {"ours": [], **{k: [] for k in peers}}
            for i in range(ctx.repeat):
                for who, server in (("ours", ours), *peers.items()):
                    ctx.step(f"HTTP {page} page: {who}, {ctx.concurrency} connections × {ctx.http_seconds:g} s, "
                             f"turn {i + 1}/{ctx.repeat}")
                    out[who].append(_load(ctx, server, paths[who], who))
            return out

        def best_ratio(t: dict[str, list[float]]) -> list[float]:
            best = max(peers, key=lambda k: statistics.median(t[k]))
            return per_turn(t["ours"], t[best])

        rps, again = settle(measure, best_ratio, 2.0)
        asked = "one URL" if page == "first" else f"{URLS_PER_LOAD} URLs, one random sensor each, seeded"
        res.add(Figure(f"http.{page}.ours", f"records endpoint, {page} page (100 rows, {asked}): ours UNCACHED "
                       "(result cache and memos off)", "req/s", rps["ours"], higher_is_better=True))
        for key, server in peers.items():
            res.add(Figure(f"http.{page}.{key}", f"table JSON, {page} page (100 rows, {asked}): {DATASETTES[key]}",
                           "req/s", rps[key], higher_is_better=True))
        best = max(peers, key=lambda k: res.median(f"http.{page}.{k}"))
        res.texts[f"http.{page}.peer"] = best
        res.targets.append(ratio_target("http", f"records {page} page, uncached: our req/s / Datasette's",
                                        per_turn(rps["ours"], rps[best]), ">=", 2.0,
                                        note=f"peer: {DATASETTES[best]}", repeated=again))
        other = next(k for k in peers if k != best)
        res.note("http", f"{page} page: ours / {DATASETTES[other]} (not the peer: the slower Datasette) "
                 f"**{statistics.median(per_turn(rps['ours'], rps[other])):.3g}×**.")


def cached(ctx: Context, ours: Server) -> None:
    """Our default server (result cache and memos on), the same URLs: labelled CACHED, no target."""
    res = ctx.results
    for page in ("first", "filtered"):
        paths = _paths(ctx, page, "ours")[:1]  # one URL repeated: what the caches are for
        values = []
        for i in range(min(ctx.repeat, 2)):
            ctx.step(f"HTTP {page} page: ours CACHED (default settings), run {i + 1}")
            values.append(_load(ctx, ours, paths, "ours"))
        res.add(Figure(f"http.{page}.ours_cached", f"records endpoint, {page} page: ours CACHED (default settings: "
                       "result cache and memos on), one URL repeated", "req/s", values, higher_is_better=True,
                       note=f"X-Cache after: {httpx.get(ours.url + paths[0], timeout=60).headers.get('X-Cache')}"))
        peer = res.texts[f"http.{page}.peer"]
        res.note("http", f"CACHED (no target): {page} page ours with its caches / {DATASETTES[peer]} "
                 f"**{res.median(f'http.{page}.ours_cached') / res.median(f'http.{page}.{peer}'):.3g}×** "
                 "(not in turns).")


DOWNLOAD_TURNS = 15  # downloads of each side for the Parquet download ratio


def parquet_download(ctx: Context, ours: Server, settings: Settings) -> None:
    """The whole version as one Parquet file, the combine step counted, in turns with the same file served statically."""
    res = ctx.results
    url = f"{ours.url}/api/v1/datasets/{DATASET}/exports/parquet"
    hub = open_hub(settings)
    engine = QueryEngine(hub)
    try:
        ref = version_ref(hub)
        combined = Path(parquet_file(hub, engine, ref))
    finally:
        engine.close()
        hub.close()
    multipart = len(ref.uris) > 1
    static_dir = settings.site_dir / "bench-static"
    static_dir.mkdir(parents=True, exist_ok=True)
    static = static_dir / "parking.parquet"
    static.unlink(missing_ok=True)
    os.link(combined, static)
    size = static.stat().st_size
    turns = max(ctx.repeat, DOWNLOAD_TURNS if ctx.rows <= 2_000_000 else ctx.repeat * 2)
    sides = [("ours", url), ("static", f"{ours.url}/bench-static/parking.parquet")]

    def measure() -> dict[str, list[float]]:
        speeds: dict[str, list[float]] = {"ours": [], "static": []}
        for i in range(turns):
            ctx.step(f"Parquet download (combine counted): ours vs static, turn {i + 1}/{turns}")
            for who, target in (sides if i % 2 == 0 else sides[::-1]):
                if who == "ours" and multipart:
                    combined.unlink(missing_ok=True)  # no kept combination: this download combines the parts
                got, seconds = _download(target)
                if got != size and who == "static":
                    raise RuntimeError(f"static sent {got} bytes, the file has {size}")
                speeds[who].append(size / 1e6 / seconds)
        return speeds

    speeds, again = settle(measure, lambda t: per_turn(t["ours"], t["static"]), 0.8)
    res.add(Figure("export.parquet.ours", f"whole-version Parquet download ({size / 1e6:.0f} MB, {len(ref.uris)} "
                   "part(s)): ours, the combine step counted (nothing kept)", "MB/s", speeds["ours"],
                   higher_is_better=True))
    res.add(Figure("export.parquet.static", "the same combined file from Starlette StaticFiles on the same uvicorn",
                   "MB/s", speeds["static"], higher_is_better=True))
    res.targets.append(ratio_target("exports", "whole-version Parquet download, combine counted: ours / static "
                                    "file serving", per_turn(speeds["ours"], speeds["static"]), ">=", 0.8,
                                    repeated=again))
    static.unlink()


def csv_rows(ctx: Context, ours: Server, theirs: Server) -> None:
    """CSV export rows per second, ours and Datasette's ``?_stream=on``, in turns, both cut at the same time."""
    res = ctx.results
    cap = max(ctx.http_seconds, 5)
    our_csv = f"{ours.url}/api/v1/datasets/{DATASET}/exports/csv"
    their_csv = f"{theirs.url}{DS_TABLE}.csv?_stream=on&_size=max"
    ours_row, their_row = _bytes_per_row(our_csv), _bytes_per_row(their_csv)
    res.texts["csv_row_bytes"] = f"ours {ours_row:.1f}, Datasette {their_row:.1f}"

    def measure() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {"ours": [], "datasette": []}
        for i in range(ctx.repeat):
            ctx.step(f"CSV rows/s: ours vs Datasette ?_stream=on, at most {cap:g} s each, turn {i + 1}/{ctx.repeat}")
            for who, url, per_row in (("ours", our_csv, ours_row), ("datasette", their_csv, their_row)):
                got, seconds = _download(url, max_time_s=cap)
                out[who].append(got / per_row / seconds)
        return out

    rows, again = settle(measure, lambda t: per_turn(t["ours"], t["datasette"]), 20)
    res.add(Figure("export.csv.rows_ours", f"CSV export (whole version, cut at {cap:g} s): ours", "rows/s",
                   rows["ours"], higher_is_better=True))
    res.add(Figure("export.csv.rows_datasette", f"Datasette CSV streaming (`?_stream=on`, cut at {cap:g} s)",
                   "rows/s", rows["datasette"], higher_is_better=True))
    res.targets.append(ratio_target("exports", "CSV export rows/s: ours / Datasette's CSV streaming",
                                    per_turn(rows["ours"], rows["datasette"]), ">=", 20, repeated=again))


def csv_export_memory(ctx: Context, env: dict[str, str], log: Path) -> None:
    """Full CSV export from a fresh server, its RSS sampled."""
    res = ctx.results
    assert ctx.store_dir is not None
    growth, peaks = [], []
    with our_api(ctx.store_dir, env, log) as server:
        url = f"{server.url}/api/v1/datasets/{DATASET}/exports/csv"
        for i in range(ctx.heavy):  # (a slow step: 750 MB a time at 10M rows)
            ctx.step(f"CSV export of the whole version, memory: ours, repeat {i + 1}/{ctx.heavy}")
            with RssSampler(server.pid) as rss:
                got, seconds = _download(url)
            growth.append(mib(rss.peak - rss.start_rss))
            peaks.append(mib(rss.peak))
    res.add(Figure("export.csv.ours_rss", f"server RSS peak during a whole CSV export ({got / 1e6:.0f} MB)", "MiB",
                   peaks))
    res.add(Figure("export.csv.ours_growth", "server RSS growth during the CSV export (peak − before)", "MiB", growth))
    res.targets.append(Target("exports", "CSV export memory is flat: server RSS growth during a full export",
                              max(growth), "<=", 256, unit="MiB"))
    res.note("exports", "Downloads are fetched by curl (a separate process) to /dev/null. Parquet: our endpoint "
             "combines a multipart version into one file and keeps it; the kept file is deleted before each of our "
             "downloads, so every one of them pays the combination (the work a whole-version download needs), "
             "against the combined file hard-linked under the site directory and served by the same uvicorn "
             "through Starlette's StaticFiles; in turns, each side first every other time. CSV is compared per "
             f"row: bytes ÷ that side's bytes per CSV row ({res.texts.get('csv_row_bytes')}; Datasette adds the "
             "rowid) ÷ curl's time, both streams cut at the same time, in turns; Datasette is the "
             "`-i --inspect-file` server (the count does not enter a stream). Memory: RSS of the server process "
             "sampled every 20 ms by psutil; a fresh server for this measurement.")


def groupby_memory(ctx: Context, log: Path) -> None:
    """A heavy group-by (every sensor × hour) on a fresh server under a memory limit smaller than the data."""
    res = ctx.results
    assert ctx.store_dir is not None
    limit = GROUPBY_MEMORY_LIMIT_MB
    data_mb = sum(os.path.getsize(p) for p in ctx.parts) / (1 << 20)
    # Decoded, as DuckDB would hold it without spilling: the row groups' uncompressed sizes.
    raw_mb = sum(meta.row_group(g).total_byte_size for meta in (pq.read_metadata(p) for p in ctx.parts)
                 for g in range(meta.num_row_groups)) / (1 << 20)
    env = _server_env(ctx, URBANDATA_DUCKDB_MEMORY_LIMIT_MB=str(limit), URBANDATA_QUERY_TIME_LIMIT_MS="600000",
                      **HEADLINE_ENV)
    query = ("select=sensor_id, date_trunc('hour', timestamp) as hour, avg(free) as mean_free, max(occupied) as peak"
             "&group_by=sensor_id, date_trunc('hour', timestamp) as hour&order_by=mean_free desc&limit=100")
    growth, peaks, seconds = [], [], []
    failure = ""
    with our_api(ctx.store_dir, env, log) as server:
        url = f"{server.url}{RECORDS}?{query}"
        for i in range(ctx.repeat):
            ctx.step(f"memory: group-by every sensor × hour under a {limit} MiB limit, repeat {i + 1}/{ctx.repeat}")
            with RssSampler(server.pid) as rss:
                started = time.perf_counter()
                response = httpx.get(url, timeout=900)
                seconds.append(time.perf_counter() - started)
            growth.append(mib(rss.peak - rss.start_rss))
            peaks.append(mib(rss.peak))
            if response.status_code != 200:
                failure = f"answered {response.status_code}: {response.text[:300]}"
                break
    groups = response.json().get("total_count", 0) if not failure else 0
    res.add(Figure("mem.groupby.seconds", f"group-by sensor × hour ({groups:,} groups) through the records endpoint",
                   "s", seconds))
    res.add(Figure("mem.groupby.rss", f"server RSS peak during it (duckdb_memory_limit_mb={limit})", "MiB", peaks))
    res.add(Figure("mem.groupby.growth", "server RSS growth during it (peak − before)", "MiB", growth))
    value = float("inf") if failure else max(growth)
    res.targets.append(Target("memory", f"group-by under a {limit} MiB DuckDB limit (data: {raw_mb:.0f} MiB "
                              f"uncompressed): server RSS growth ≤ limit + {GROUPBY_SLACK_MB} MiB slack"
                              + (f" — the query FAILED: {failure}" if failure else ""),
                              value, "<=", limit + GROUPBY_SLACK_MB, unit="MiB"))
    res.note("memory", f"A fresh `urbandata serve` with URBANDATA_DUCKDB_MEMORY_LIMIT_MB={limit} (the version's "
             f"Parquet parts hold {data_mb:.1f} MiB, {raw_mb:.0f} MiB uncompressed), the caches off and "
             f"the query deadline raised (so the query finishes): `{RECORDS}?{query}`. DuckDB must spill to stay in "
             f"its limit; the slack of {GROUPBY_SLACK_MB} MiB is for what lies outside its buffer manager (the "
             "interpreter's heap, the response, allocator slack). A failed query fails the target.")


def run(ctx: Context) -> None:
    assert ctx.store_dir is not None
    logs = ctx.work / "logs"
    logs.mkdir(exist_ok=True)
    db = ctx.work / "datasette" / "parking.db"
    ctx.step("datasette inspect: the inspect file (hash and counts)")
    inspect = datasette_inspect(db, ctx.work / "datasette" / "inspect-data.json")
    settings = Settings(data_dir=ctx.store_dir, definitions_dir=ctx.defs, max_returned_rows=10_000)
    ctx.step("starting our API (uncached) and Datasette both ways on free loopback ports")
    headline = _server_env(ctx, **HEADLINE_ENV)
    with our_api(ctx.store_dir, headline, logs / "urbandata.log") as ours, \
            datasette(db, logs / "datasette.log") as plain, \
            datasette(db, logs / "datasette-inspect.log", inspect_file=inspect) as inspected:
        ctx.results.facts["datasette_commands"] = [plain.command, inspected.command]
        ctx.results.facts["headline_env"] = {k: headline[k] for k in HEADLINE_ENV}
        throughput(ctx, ours, {"ds": plain, "dsi": inspected})
        parquet_download(ctx, ours, settings)
        csv_rows(ctx, ours, inspected)
    with our_api(ctx.store_dir, _server_env(ctx), logs / "urbandata-cached.log") as warm:
        cached(ctx, warm)
    _notes(ctx)
    csv_export_memory(ctx, _server_env(ctx), logs / "urbandata-csv.log")
    groupby_memory(ctx, logs / "urbandata-groupby.log")


def _notes(ctx: Context) -> None:
    res = ctx.results
    res.peers.append(("Datasette (HTTP)", "`datasette serve -i parking.db` and `datasette serve -i parking.db "
                      "--inspect-file inspect-data.json` (the file from `datasette inspect`, so table counts come "
                      "from it), both on the SQLite file with the `sqlite-utils create-index` indexes of phase 2; "
                      "default settings. Per page the faster of the two is the peer, the other is listed."))
    res.note("http", f"All servers run as subprocesses on free loopback ports, one process each, side by side. "
             f"**Ours is uncached**: `urbandata serve` with URBANDATA_RESULT_CACHE_MB=0 and "
             f"URBANDATA_READ_MEMOS=false (no kept results, plans, counts, pruning answers, part footers, output "
             f"columns or version references; every request answered `X-Cache: miss`), default settings otherwise "
             f"(max_returned_rows=10000). Load: {ctx.concurrency} keep-alive connections for {ctx.http_seconds:g} s "
             f"per turn from a second process ({'wrk -t1 with a Lua script' if res.texts.get('loadgen') == 'wrk' else 'bench.loadgen, asyncio'}); "
             f"the filtered page picks each request from {URLS_PER_LOAD} URLs of seeded random sensors, the same "
             "list for both servers. Turns: ours, Datasette -i, Datasette -i --inspect-file, ours, ...; the ratio "
             "is the median of the per-turn ratios against the faster Datasette. Each page was checked to hold 100 "
             "rows before the loads. `_nosuggest=1` spares Datasette its facet suggestions.")
