"""2. Queries through our engine (library and in-process HTTP) vs PostgreSQL (CKAN DataStore), SQLite, polars."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

import httpx

from bench.context import DATASET, Context
from bench.measure import Figure, Target, timed, timed_alternately
from bench.peers import CkanTable, add_sqlite_index, load_sqlite, sqlite_connection
from bench.queries import QUERY_NAMES, QuerySet
from catalogue.hub import Hub, open_hub
from catalogue.meta.metadata import get_dataset, get_version
from catalogue.query.engine import QueryEngine, VersionRef
from catalogue.query.records import clear_count_cache, plan_records, run_records
from catalogue.settings import Settings

SECTION = "queries"
MS = 1000.0


def bench_settings(ctx: Context, **overrides: Any) -> Settings:
    """The hub settings the bench serves with: defaults, except a page may hold the whole group-by."""
    assert ctx.store_dir is not None and ctx.defs is not None
    return Settings(data_dir=ctx.store_dir, definitions_dir=ctx.defs, max_returned_rows=10_000, **overrides)


def version_ref(hub: Hub) -> VersionRef:
    with hub.sessions() as session:
        ds = get_dataset(session, DATASET)
        return VersionRef.of(hub, ds, get_version(session, ds))


def _ms(values: list[float]) -> list[float]:
    return [v * MS for v in values]


def _ours_calls(hub: Hub, engine: QueryEngine, ref: VersionRef, qs: QuerySet) -> dict[str, Callable[[], Any]]:
    """One call per query: ``plan_records`` + a fresh cursor + ``run_records``."""
    def call(request: Any) -> Callable[[], Any]:
        def once() -> dict[str, Any]:
            plan = plan_records(request, ref.schema, list(ref.uris), ref.number, row_count=ref.row_count)
            cur = engine.cursor()
            try:
                return run_records(cur, plan, version=ref.number, limit=request.limit or 0,
                                   time_limit_ms=hub.settings.query_time_limit_ms)
            finally:
                cur.close()
        return once
    return {name: call(request) for name, request in qs.records_requests().items()}


def _ours_and_polars(ctx: Context, hub: Hub, ref: VersionRef, qs: QuerySet) -> tuple[dict[str, Any], dict[str, Any]]:
    """Our engine and polars on the same files, each query measured in turns (``timed_alternately``)."""
    engine = QueryEngine(hub)
    ours, pol = {}, {}
    try:
        calls, polars_calls = _ours_calls(hub, engine, ref, qs), qs.polars(list(ref.uris))
        for name, once in calls.items():
            ours[name] = json.loads(once()["results_json"])
            pol[name] = polars_calls[name]()
            turns = {"ours": once, "polars": polars_calls[name]}
            if name in COUNTED:
                turns["cold"] = _cold_count(once)
            times = timed_alternately(turns, _query_repeat(ctx))
            ctx.results.add(Figure(f"q.{name}.ours", f"{QUERY_NAMES[name]}: ours (plan_records + run_records)", "ms",
                                   _ms(times["ours"])))
            ctx.results.add(Figure(f"q.{name}.polars", f"{QUERY_NAMES[name]}: polars scan_parquet, same files", "ms",
                                   _ms(times["polars"])))
            if name in COUNTED:
                ctx.results.add(Figure(f"q.{name}.cold", f"{QUERY_NAMES[name]}: ours with its total count scanned "
                                       "anew (count cache cleared before each call)", "ms", _ms(times["cold"])))
    finally:
        engine.close()
    return ours, pol


COUNTED = ("topn",)  # the queries whose full page needs a count query (the others: window, short page, aggregate)


def _cold_count(once: Callable[[], Any]) -> Callable[[], Any]:
    def cold() -> Any:
        clear_count_cache()
        return once()
    return cold


def _query_repeat(ctx: Context) -> int:
    """Repeats of a millisecond query: at least 15, so a median of two engines taken in turns is steady."""
    return max(ctx.repeat, 15)


def _ours_http(ctx: Context, hub: Hub, qs: QuerySet) -> None:
    from api.app import create_app

    app = create_app(hub.settings, hub)

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench.test") as client:
            for name, query in qs.records_query_strings().items():
                url = f"/api/v1/datasets/{DATASET}/records?{query}"
                values = []
                for i in range(ctx.repeat + 1):
                    started = time.perf_counter()
                    response = await client.get(url)
                    elapsed = time.perf_counter() - started
                    response.raise_for_status()
                    if i:
                        values.append(elapsed * MS)
                ctx.results.add(Figure(f"q.{name}.http", f"{QUERY_NAMES[name]}: ours through the records endpoint "
                                       "(in-process ASGI)", "ms", values))

    try:
        asyncio.run(go())
    finally:
        app.state.query_engine.close()


def _postgres(ctx: Context, table: CkanTable, suffix: str, label: str) -> dict[str, Any]:
    answers = {}
    with table.con.cursor() as cur:
        for name, (sql, params) in ctx_queries(ctx).postgres(table.table).items():
            def once() -> list[Any]:
                cur.execute(sql, params)
                return cur.fetchall()
            answers[name] = once()
            ctx.results.add(Figure(f"q.{name}.{suffix}", f"{QUERY_NAMES[name]}: {label}", "ms",
                                   _ms(timed(once, ctx.repeat, warmup=1))))
    return answers


def _point_in_turns(ctx: Context, table: CkanTable, qs: QuerySet) -> None:
    """The point lookup of the target, ours and PostgreSQL's (with the index), measured in turns."""
    sql, params = qs.postgres(table.table)["point"]
    hub = open_hub(bench_settings(ctx, result_cache_mb=0))
    engine = QueryEngine(hub)
    try:
        ours = _ours_calls(hub, engine, version_ref(hub), qs)["point"]
        with table.con.cursor() as cur:
            def theirs() -> list[Any]:
                cur.execute(sql, params)
                return cur.fetchall()
            times = timed_alternately({"ours": ours, "pg": theirs}, _query_repeat(ctx))
    finally:
        engine.close()
        hub.close()
    ctx.results.add(Figure("q.point.ours_turns", f"{QUERY_NAMES['point']}: ours, in turns with PostgreSQL", "ms",
                           _ms(times["ours"])))
    ctx.results.add(Figure("q.point.pgidx_turns", f"{QUERY_NAMES['point']}: PostgreSQL + (sensor_id, timestamp) "
                           "index, in turns with ours", "ms", _ms(times["pg"])))


def _sqlite(ctx: Context, suffix: str, label: str) -> dict[str, Any]:
    answers = {}
    db = ctx.work / "datasette" / "parking.db"
    with sqlite_connection(db) as con:
        for name, (sql, params) in ctx_queries(ctx).sqlite().items():
            def once() -> list[Any]:
                return con.execute(sql, params).fetchall()
            answers[name] = once()
            ctx.results.add(Figure(f"q.{name}.{suffix}", f"{QUERY_NAMES[name]}: {label}", "ms",
                                   _ms(timed(once, ctx.repeat, warmup=1))))
    return answers


def ctx_queries(ctx: Context) -> QuerySet:
    return QuerySet(ctx.shape)


def load_sqlite_peer(ctx: Context) -> None:
    """The SQLite file Datasette serves (also used by phase 3 and 4)."""
    db = ctx.work / "datasette" / "parking.db"
    db.parent.mkdir(exist_ok=True)
    ctx.step("loading SQLite (sqlite-utils style) for Datasette")
    started = time.perf_counter()
    load_sqlite(db, ctx.parts)
    ctx.results.add(Figure("load.sqlite", "load SQLite table (sqlite-utils types, as Datasette serves an imported "
                           "CSV: rowid, no index)", "s", [time.perf_counter() - started], note="once"))


def run(ctx: Context) -> None:
    res = ctx.results
    qs = ctx_queries(ctx)
    # Result cache off: the in-process endpoint figures must run their queries on every repeat.
    hub = open_hub(bench_settings(ctx, result_cache_mb=0))
    try:
        ref = version_ref(hub)
        ctx.parts = list(ref.uris)
        os.sync()  # the last phase's files written back now, not during our first measurements
        ctx.step("queries: ours (library) and polars, in turns")
        ours, pol = _ours_and_polars(ctx, hub, ref, qs)
        ctx.step("queries: ours (records endpoint, in process)")
        _ours_http(ctx, hub, qs)
    finally:
        hub.close()

    table = CkanTable(f"bench_{os.getpid()}")
    try:
        ctx.versions["postgres"] = table.version()
        ctx.step("loading PostgreSQL the CKAN DataStore way (COPY, _full_text tsvector, GIN)")
        started = time.perf_counter()
        table.load(ctx.csv["international"])
        res.add(Figure("load.postgres", "load PostgreSQL CKAN-style (COPY, _full_text, GIN, VACUUM ANALYZE)", "s",
                       [time.perf_counter() - started], note="once"))
        res.add(Figure("load.postgres_size", "PostgreSQL table + indexes", "MB", [table.size_bytes() / 1e6],
                       note="once"))
        res.note(SECTION, f"PostgreSQL {ctx.versions['postgres']} settings as found (not tuned): "
                 + ", ".join(f"{k}={v}" for k, v in table.settings().items()))
        ctx.step("queries: PostgreSQL (CKAN default indexes)")
        pg = _postgres(ctx, table, "pg", "PostgreSQL, CKAN DataStore table (_id pk, _full_text GIN)")
        ctx.step("PostgreSQL: adding the (sensor_id, timestamp) index")
        table.add_sensor_time_index()
        ctx.step("queries: PostgreSQL with (sensor_id, timestamp) index")
        _postgres(ctx, table, "pgidx", "PostgreSQL, CKAN table + (sensor_id, timestamp) index")
        ctx.step("point lookup: ours and PostgreSQL with the index, in turns")
        _point_in_turns(ctx, table, qs)
    finally:
        table.drop()

    load_sqlite_peer(ctx)
    ctx.step("queries: SQLite (as Datasette serves an import: no index)")
    lite = _sqlite(ctx, "sqlite", "SQLite as Datasette serves an imported CSV (rowid, no index)")
    ctx.step("SQLite: adding the (sensor_id, timestamp) index")
    started = time.perf_counter()
    add_sqlite_index(ctx.work / "datasette" / "parking.db")
    res.add(Figure("load.sqlite_index", "SQLite: create the (sensor_id, timestamp) index + ANALYZE", "s",
                   [time.perf_counter() - started], note="once"))
    ctx.step("queries: SQLite with (sensor_id, timestamp) index")
    _sqlite(ctx, "sqliteidx", "SQLite + (sensor_id, timestamp) index")
    _check_answers(ctx, ours, pol, pg, lite)

    for name in ("groupby", "topn", "count"):
        o = res.median(f"q.{name}.ours")
        res.targets.append(Target(SECTION, f"{QUERY_NAMES[name]}: PostgreSQL (CKAN) time / ours",
                                  res.median(f"q.{name}.pg") / o, ">=", 5))
        res.targets.append(Target(SECTION, f"{QUERY_NAMES[name]}: SQLite time / ours",
                                  res.median(f"q.{name}.sqlite") / o, ">=", 10))
        res.targets.append(Target(SECTION, f"{QUERY_NAMES[name]}: ours / polars time",
                                  o / res.median(f"q.{name}.polars"), "<=", 1.5))
    res.targets.append(Target(SECTION, f"{QUERY_NAMES['point']}: ours / PostgreSQL with (sensor, time) index",
                              res.median("q.point.ours_turns") / res.median("q.point.pgidx_turns"), "<=", 3))
    res.note(SECTION, "Against SQLite with the (sensor_id, timestamp) index (no target; the targets name the table "
             "as Datasette serves it): " + "; ".join(
                 f"{QUERY_NAMES[n]}: SQLite time / ours **{res.median(f'q.{n}.sqliteidx') / res.median(f'q.{n}.ours'):.3g}×**"
                 for n in QUERY_NAMES) + ".")
    res.note(SECTION, "Warm runs: one unmeasured run first, then the repeats. Ours = `plan_records` (parse and "
             "check the ODSQL; checked plans are kept in an LRU keyed by the request, so repeats skip the parse) + a "
             "fresh cursor + `run_records` (part pruning by the parts' min/max, rows rendered to JSON inside DuckDB, "
             "and the total count: from the page when it is not full, a window over the groups of a group-by, or "
             "a count query, whose answer is kept per (filter, part files) as Datasette keeps the counts of an "
             "immutable database, so a repeat or the next page of the same filter skips that scan; the top-10 is "
             "also listed with the count scanned on every call) over the committed version's Parquet parts. No "
             "result is cached here: every repeat runs its rows query in DuckDB. The settings are the "
             "defaults except max_returned_rows=10000 so one page can hold the whole group-by. PostgreSQL and "
             "SQLite: the SQL listed below through psycopg 3 / sqlite3, fetching all rows; polars: the same query as a "
             "LazyFrame over the same Parquet files, collected. Ours and polars are measured in turns (ours, polars, "
             "ours, ...; at least 15 each) after `os.sync()`, and the point lookup of the target once more in turns "
             "with PostgreSQL + index, so a drift in the machine's load hits both sides of a ratio alike.")
    listing = ["The queries as run (parameters inlined here for reading; all engines bind them):", ""]
    for name, query in qs.records_query_strings().items():
        pg_sql, pg_params = qs.postgres("<schema>.parking")[name]
        lite_sql, lite_params = qs.sqlite()[name]
        listing += [f"- {QUERY_NAMES[name]}",
                    f"  - ours: `/records?{unquote_plus(query)}`",
                    f"  - PostgreSQL: `{pg_sql}` with {pg_params}",
                    f"  - SQLite: `{lite_sql}` with {lite_params}"]
    res.note(SECTION, "\n".join(listing))
    res.note(SECTION, "SQLite is the file Datasette serves in phase 3: a `sqlite-utils`-style table (TEXT, INTEGER, "
             "FLOAT; timestamps as ISO-8601 text; rowid), queried first as an import leaves it (no index: what "
             "Datasette serves unless someone adds one; the SQLite targets use this, as the PostgreSQL targets use "
             "CKAN's default indexes), then again after `create-index` on (sensor_id, timestamp), which phase 3 "
             "keeps; hours are `substr(timestamp, 1, 13)` (cheaper than strftime).")


def _check_answers(ctx: Context, ours: dict[str, Any], pol: dict[str, Any], pg: dict[str, Any],
                   lite: dict[str, Any]) -> None:
    """Every engine must have answered the same thing: compare sizes and the count."""
    found = {
        "ours": {"point": len(ours["point"]), "groupby": len(ours["groupby"]), "topn": len(ours["topn"]),
                 "count": ours["count"][0]["n"]},
        "polars": {"point": pol["point"].height, "groupby": pol["groupby"].height, "topn": pol["topn"].height,
                   "count": pol["count"].item()},
        "postgres": {"point": len(pg["point"]), "groupby": len(pg["groupby"]), "topn": len(pg["topn"]),
                     "count": pg["count"][0][0]},
        "sqlite": {"point": len(lite["point"]), "groupby": len(lite["groupby"]), "topn": len(lite["topn"]),
                   "count": lite["count"][0][0]},
    }
    reference = found["ours"]
    differing = [f"{engine}: {answers}" for engine, answers in found.items() if answers != reference]
    ctx.results.note(SECTION, f"Answers (rows returned; the count's value): {json.dumps(reference)}"
                     + ("; every engine agrees." if not differing else "; DIFFERENT: " + "; ".join(differing)))
