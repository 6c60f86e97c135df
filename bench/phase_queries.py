"""2. Queries through our engine (uncached, varied parameters) vs PostgreSQL, SQLite and polars, in turns.

Every turn draws a new question of each kind from a seeded distribution
(``QuerySet.draw``) and every side answers that same question, one after the
other; ours runs with the result cache and every read-path memo off.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

import httpx

from bench.context import DATASET, Context
from bench.measure import Figure, per_turn, ratio_target, settle, timed, timed_alternately
from bench.peers import (DBA_INDEXES, CkanTable, add_sqlite_indexes, load_sqlite, sqlite_connection,
                         sqlite_index_columns)
from bench.queries import QUERY_NAMES, SEED, QuerySet
from catalogue.hub import Hub, open_hub
from catalogue.meta.metadata import get_dataset, get_version
from catalogue.query import memos
from catalogue.query.engine import QueryEngine, VersionRef
from catalogue.query.records import plan_records, run_records
from catalogue.settings import Settings

SECTION = "queries"
MS = 1000.0
INDEXES_TEXT = ", ".join("(" + ", ".join(cols) + ")" for cols in DBA_INDEXES)
# Targets against the peer (its better configuration): (direction, threshold) per query.
PG_TARGETS = {"point": ("ours/peer", 3.0), "topn": ("ours/peer", 3.0), "groupby": ("peer/ours", 5.0),
              "count": ("peer/ours", 5.0)}
SQLITE_TARGETS = {"groupby": ("peer/ours", 10.0), "count": ("peer/ours", 10.0)}


def bench_settings(ctx: Context, **overrides: Any) -> Settings:
    """The hub settings the bench serves with: defaults, except a page may hold the whole group-by."""
    assert ctx.store_dir is not None and ctx.defs is not None
    return Settings(data_dir=ctx.store_dir, definitions_dir=ctx.defs, max_returned_rows=10_000, **overrides)


def uncached_settings(ctx: Context) -> Settings:
    """The headline configuration: result cache off and every read-path memo off (``read_memos``)."""
    return bench_settings(ctx, result_cache_mb=0, read_memos=False)


def version_ref(hub: Hub) -> VersionRef:
    with hub.sessions() as session:
        ds = get_dataset(session, DATASET)
        return VersionRef.of(hub, ds, get_version(session, ds))


def _ms(values: list[float]) -> list[float]:
    return [v * MS for v in values]


class Questions:
    """The question every side answers in the current turn; ``next`` draws the next one (seeded)."""

    def __init__(self, base: QuerySet, seed: int = SEED) -> None:
        self.base = base
        self.now = base
        self.rng = random.Random(seed)
        self.drawn = 0

    def next(self, _turn: int = 0) -> None:
        self.now = self.base.draw(self.rng)
        self.drawn += 1


def _ours(hub: Hub, engine: QueryEngine, ref: VersionRef, q: Questions, name: str,
          seen: dict[str, Any]) -> Callable[[], Any]:
    """``plan_records`` + a fresh cursor + ``run_records`` for the current question ``name``."""
    def once() -> dict[str, Any]:
        seen["memos_on"] = seen.get("memos_on", False) or memos.on()
        request = q.now.records_requests()[name]
        # As the records route calls it (with the version's typed TableSchema).
        plan = plan_records(request, ref.schema, list(ref.uris), ref.number,
                            row_count=ref.row_count)
        cur = engine.cursor()
        try:
            return run_records(cur, plan, version=ref.number, limit=request.limit or 0,
                               time_limit_ms=hub.settings.query_time_limit_ms)
        finally:
            cur.close()
    return once


def _query_repeat(ctx: Context) -> int:
    """Turns of a millisecond query: at least 15, so the median of per-turn ratios is steady."""
    return max(ctx.repeat, 15)


def _turns(ctx: Context, q: Questions, sides: dict[str, Callable[[], Any]], repeat: int,
           ratio: Callable[[dict[str, list[float]]], list[float]], threshold: float | None
           ) -> tuple[dict[str, list[float]], bool]:
    return settle(lambda: timed_alternately(sides, repeat, before_turn=q.next), ratio, threshold)


def _ours_and_polars(ctx: Context, hub: Hub, engine: QueryEngine, ref: VersionRef, q: Questions,
                     seen: dict[str, Any]) -> None:
    res = ctx.results
    for name in QUERY_NAMES:
        ours = _ours(hub, engine, ref, q, name, seen)
        pol = lambda name=name: q.now.polars(list(ref.uris))[name]()  # noqa: E731 - built per call: lazy scan
        times, again = _turns(ctx, q, {"ours": ours, "polars": pol}, _query_repeat(ctx),
                              lambda t: per_turn(t["ours"], t["polars"]), 1.5)
        res.add(Figure(f"q.{name}.ours", f"{QUERY_NAMES[name]}: ours, uncached (plan_records + run_records), "
                       "in turns with polars", "ms", _ms(times["ours"])))
        res.add(Figure(f"q.{name}.polars", f"{QUERY_NAMES[name]}: polars scan_parquet (lazy), same parts", "ms",
                       _ms(times["polars"])))
        res.targets.append(ratio_target(SECTION, f"{QUERY_NAMES[name]}: ours / polars time",
                                        per_turn(times["ours"], times["polars"]), "<=", 1.5, repeated=again))


def _cached(ctx: Context, hub: Hub, engine: QueryEngine, ref: VersionRef) -> None:
    """Our memos on and one question repeated: what a repeat costs (labelled rows, no target)."""
    memos.configure(True)
    try:
        fixed = Questions(QuerySet(ctx.shape))
        for name in QUERY_NAMES:
            once = _ours(hub, engine, ref, fixed, name, {})
            ctx.results.add(Figure(f"q.{name}.cached", f"{QUERY_NAMES[name]}: ours CACHED (memos on, the same "
                                   "question repeated)", "ms", _ms(timed(once, _query_repeat(ctx), warmup=1))))
    finally:
        memos.configure(hub.settings.read_memos)


def _ours_http(ctx: Context, hub: Hub, q: Questions) -> None:
    """The records endpoint in process (ASGI), a new question per request, caches off."""
    from api.app import create_app

    app = create_app(hub.settings, hub)

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench.test") as client:
            for name in QUERY_NAMES:
                values = []
                for i in range(ctx.repeat + 1):
                    q.next()
                    url = f"/api/v1/datasets/{DATASET}/records?{q.now.records_query_strings()[name]}"
                    started = time.perf_counter()
                    response = await client.get(url)
                    elapsed = time.perf_counter() - started
                    response.raise_for_status()
                    if response.headers.get("X-Cache", "miss") != "miss":
                        raise RuntimeError(f"the uncached endpoint answered X-Cache: {response.headers['X-Cache']}")
                    if i:
                        values.append(elapsed * MS)
                ctx.results.add(Figure(f"q.{name}.http", f"{QUERY_NAMES[name]}: ours through the records endpoint "
                                       "(in-process ASGI, uncached)", "ms", values))

    try:
        asyncio.run(go())
    finally:
        app.state.query_engine.close()


def _peer_turns(ctx: Context, q: Questions, ours_for: Callable[[str], Callable[[], Any]],
                theirs_for: Callable[[str], Callable[[], Any]], key: str, label: str, repeat: int,
                targets: dict[str, tuple[str, float]]) -> dict[str, tuple[list[float], bool]]:
    """Ours and one peer configuration in turns, per query; returns query -> (per-turn peer/ours ratios, repeated)."""
    out = {}
    for name in QUERY_NAMES:
        direction, threshold = targets.get(name, ("peer/ours", None))  # type: ignore[assignment]
        flip = direction == "ours/peer"

        def ratio(t: dict[str, list[float]], flip: bool = flip) -> list[float]:
            return per_turn(t["ours"], t["peer"]) if flip else per_turn(t["peer"], t["ours"])

        times, again = _turns(ctx, q, {"ours": ours_for(name), "peer": theirs_for(name)}, repeat, ratio, threshold)
        ctx.results.add(Figure(f"q.{name}.{key}", f"{QUERY_NAMES[name]}: {label}", "ms", _ms(times["peer"])))
        ctx.results.add(Figure(f"q.{name}.{key}_ours", f"{QUERY_NAMES[name]}: ours, in turns with {label}", "ms",
                               _ms(times["ours"])))
        out[name] = (per_turn(times["peer"], times["ours"]), again)
    return out


def _best(ctx: Context, peer: str, configs: dict[str, tuple[str, dict[str, tuple[list[float], bool]]]],
          targets: dict[str, tuple[str, float]]) -> None:
    """Per query, the peer configuration that answered fastest is the peer; its ratio gets the target."""
    res = ctx.results
    for name in QUERY_NAMES:
        key = min(configs, key=lambda k: res.median(f"q.{name}.{k}"))
        label, ratios = configs[key]
        turns, again = ratios[name]
        note = f"peer: {label}"
        if name in targets:
            direction, threshold = targets[name]
            if direction == "ours/peer":
                res.targets.append(ratio_target(SECTION, f"{QUERY_NAMES[name]}: ours / {peer} time",
                                                [1 / r for r in turns], "<=", threshold, note, again))
            else:
                res.targets.append(ratio_target(SECTION, f"{QUERY_NAMES[name]}: {peer} time / ours", turns, ">=",
                                                threshold, note, again))
        else:
            res.note(SECTION, f"{QUERY_NAMES[name]}: {peer} time / ours **{sorted(turns)[len(turns) // 2]:.3g}×** "
                     f"(no target; {note}).")


def _postgres(ctx: Context, q: Questions, fixed: Questions, ours_for: Callable[[str], Callable[[], Any]]) -> dict[str, Any]:
    res = ctx.results
    table = CkanTable(f"bench_{os.getpid()}")
    try:
        ctx.versions["postgres"] = table.version()
        ctx.step("loading PostgreSQL the CKAN DataStore way (COPY, _full_text tsvector, GIN)")
        started = time.perf_counter()
        table.load(ctx.csv["international"])
        res.add(Figure("load.postgres", "load PostgreSQL CKAN-style (COPY, _full_text, GIN, VACUUM ANALYZE)", "s",
                       [time.perf_counter() - started], note="once"))
        res.note(SECTION, f"PostgreSQL {ctx.versions['postgres']} settings as found (not tuned): "
                 + ", ".join(f"{k}={v}" for k, v in table.settings().items()))
        with table.con.cursor() as cur:
            def theirs_for(name: str, asked: Questions = q) -> Callable[[], Any]:
                def once() -> list[Any]:
                    sql, params = asked.now.postgres(table.table)[name]
                    cur.execute(sql, params)
                    return cur.fetchall()
                return once

            answers = {name: theirs_for(name, fixed)() for name in QUERY_NAMES}
            ctx.step("queries: ours and PostgreSQL as CKAN loads it, in turns")
            ckan = _peer_turns(ctx, q, ours_for, theirs_for, "pg", "PostgreSQL, CKAN DataStore table (_id pk, "
                               "_full_text GIN)", ctx.repeat, PG_TARGETS)
            ctx.step(f"PostgreSQL: adding the DBA's indexes {INDEXES_TEXT}")
            started = time.perf_counter()
            table.add_dba_indexes()
            res.add(Figure("load.postgres_index", f"PostgreSQL: create the indexes {INDEXES_TEXT} + ANALYZE", "s",
                           [time.perf_counter() - started], note="once"))
            res.add(Figure("load.postgres_size", "PostgreSQL table + indexes", "MB", [table.size_bytes() / 1e6],
                           note="once"))
            res.facts["postgres_indexes"] = table.index_columns()
            ctx.step("queries: ours and PostgreSQL with the DBA's indexes, in turns")
            dba = _peer_turns(ctx, q, ours_for, theirs_for, "pgidx", f"PostgreSQL, CKAN table + {INDEXES_TEXT}",
                              _query_repeat(ctx), PG_TARGETS)
    finally:
        table.drop()
    _best(ctx, "PostgreSQL", {"pg": ("as CKAN's DataStore loads it", ckan),
                              "pgidx": (f"with the DBA's indexes {INDEXES_TEXT}", dba)}, PG_TARGETS)
    return answers


def load_sqlite_peer(ctx: Context) -> None:
    """The SQLite file Datasette serves (also used by phase 3 and 4)."""
    db = ctx.work / "datasette" / "parking.db"
    db.parent.mkdir(exist_ok=True)
    ctx.step("loading SQLite (sqlite-utils style) for Datasette")
    started = time.perf_counter()
    load_sqlite(db, ctx.parts)
    ctx.results.add(Figure("load.sqlite", "load SQLite table (sqlite-utils types, as Datasette serves an imported "
                           "CSV: rowid, no index)", "s", [time.perf_counter() - started], note="once"))


def _sqlite(ctx: Context, q: Questions, fixed: Questions, ours_for: Callable[[str], Callable[[], Any]]) -> dict[str, Any]:
    res = ctx.results
    db = ctx.work / "datasette" / "parking.db"
    load_sqlite_peer(ctx)
    configs = {}
    for key, label in (("sqlite", "SQLite as an import leaves it (rowid, no index)"),
                       ("sqliteidx", f"SQLite + `sqlite-utils create-index` {INDEXES_TEXT}")):
        if key == "sqliteidx":
            ctx.step(f"SQLite: adding the indexes {INDEXES_TEXT}")
            started = time.perf_counter()
            add_sqlite_indexes(db)
            res.add(Figure("load.sqlite_index", f"SQLite: create the indexes {INDEXES_TEXT} + ANALYZE", "s",
                           [time.perf_counter() - started], note="once"))
            res.facts["sqlite_indexes"] = sqlite_index_columns(db)
        with sqlite_connection(db) as con:
            def theirs_for(name: str, asked: Questions = q) -> Callable[[], Any]:
                def once() -> list[Any]:
                    sql, params = asked.now.sqlite()[name]
                    return con.execute(sql, params).fetchall()
                return once

            if key == "sqlite":
                answers = {name: theirs_for(name, fixed)() for name in QUERY_NAMES}
            ctx.step(f"queries: ours and {label}, in turns")
            configs[key] = (label, _peer_turns(ctx, q, ours_for, theirs_for, key, label,
                                               ctx.repeat if key == "sqlite" else _query_repeat(ctx), SQLITE_TARGETS))
    _best(ctx, "SQLite", configs, SQLITE_TARGETS)
    return answers


def run(ctx: Context) -> None:
    res = ctx.results
    hub = open_hub(uncached_settings(ctx))
    engine = QueryEngine(hub)  # sets the process' read-path memos from the settings: off
    seen: dict[str, Any] = {}
    try:
        ref = version_ref(hub)
        ctx.parts = list(ref.uris)
        fixed = Questions(QuerySet(ctx.shape))
        ours_fixed = {n: json.loads(_ours(hub, engine, ref, fixed, n, {})()["results_json"]) for n in QUERY_NAMES}
        pol_fixed = {n: fixed.now.polars(ctx.parts)[n]() for n in QUERY_NAMES}
        os.sync()  # the last phase's files written back now, not during our first measurements
        q = Questions(QuerySet(ctx.shape))
        ctx.step("queries: ours (uncached) and polars, in turns, a new question every turn")
        _ours_and_polars(ctx, hub, engine, ref, q, seen)
        ctx.step("queries: ours with its memos on (cached rows)")
        _cached(ctx, hub, engine, ref)
        ctx.step("queries: ours (records endpoint, in process, uncached)")
        _ours_http(ctx, hub, q)

        def ours_for(name: str) -> Callable[[], Any]:
            return _ours(hub, engine, ref, q, name, seen)

        pg_answers = _postgres(ctx, q, fixed, ours_for)
        lite_answers = _sqlite(ctx, q, fixed, ours_for)
    finally:
        engine.close()
        hub.close()
        memos.configure(True)
    res.facts["headline_memos_on"] = bool(seen.get("memos_on"))
    res.facts["questions_drawn"] = q.drawn
    _check_answers(ctx, ours_fixed, pol_fixed, pg_answers, lite_answers)
    _notes(ctx, q.drawn)


def _check_answers(ctx: Context, ours: dict[str, Any], pol: dict[str, Any], pg: dict[str, Any],
                   lite: dict[str, Any]) -> None:
    """Every engine must have answered the same fixed questions alike: compare sizes and the count."""
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
    ctx.results.note(SECTION, f"Answers to the fixed questions (rows returned; the count's value): "
                     f"{json.dumps(reference)}" + ("; every engine agrees." if not differing
                                                   else "; DIFFERENT: " + "; ".join(differing)))


def _notes(ctx: Context, drawn: int) -> None:
    res = ctx.results
    res.peers.append(("PostgreSQL (in process, psycopg 3)", "loaded as CKAN's DataStore loads it (typed columns, "
                      "`_id` serial primary key, `_full_text` tsvector with a GIN index), measured so; then with the "
                      f"indexes a DBA adds for the measured queries {INDEXES_TEXT} + ANALYZE, measured again. Per "
                      "query the faster of the two is the peer; both are listed."))
    res.peers.append(("SQLite (in process, sqlite3)", "the table `sqlite-utils insert` makes (the file Datasette "
                      "serves), measured as the import leaves it, then after `sqlite-utils create-index` of "
                      f"{INDEXES_TEXT}; per query the faster is the peer; both are listed."))
    res.peers.append(("polars", "`pl.scan_parquet` over the very parts of our version (lazy), the same query as a "
                      "LazyFrame, collected; built anew for every question."))
    res.note(SECTION, "**Headline figures are our uncached path.** Every turn draws a new question of each kind "
             f"from a seeded distribution (`bench.queries.SEED`; {drawn:,} questions drawn): a random sensor and "
             "day for the point lookup, a random week for the group-by, a random reading time for the top-10 and "
             "a random district for the count, and every side answers that same question, one after the other "
             "(ours, peer, ours, ...). Ours = `plan_records` + a fresh cursor + `run_records` with "
             "`result_cache_mb=0` and `read_memos=false`: no kept plan (ODSQL parsed and checked each time; only "
             "the SQL form of `date_trunc` per field and unit is derived once per process, as it depends on no "
             "value of a question), no "
             "kept count, no kept part-pruning answer, part footers read again for every query (each use reads them: "
             "the epoch and time-zone checks of the plan and the pruning table, so up to three reads of each footer "
             "per query; conservative against us), no kept output columns, no kept version reference. DuckDB's own Parquet metadata cache stays on (an engine setting, "
             "as PostgreSQL keeps its buffers). The CACHED rows repeat one question with the memos on; they carry "
             "no target. The settings are the defaults except max_returned_rows=10000 so one page can hold the "
             "whole group-by.")
    res.note(SECTION, "Each ratio is the median of the per-turn ratios (each turn: one call of each side on the same "
             "question); the spread is their interquartile range. A ratio whose spread crossed its target was "
             "measured a second time and pooled; if it still crosses, it is reported as *unstable*. Millisecond "
             "queries take at least 15 turns; the unindexed peers (about a second a call at 10 M rows) take "
             "--repeat turns.")
    listing = ["The fixed questions (the answers check), parameters inlined for reading; all engines bind them:", ""]
    qs = QuerySet(ctx.shape)
    for name, query in qs.records_query_strings().items():
        pg_sql, pg_params = qs.postgres("<schema>.parking")[name]
        lite_sql, lite_params = qs.sqlite()[name]
        listing += [f"- {QUERY_NAMES[name]}",
                    f"  - ours: `/records?{unquote_plus(query)}`",
                    f"  - PostgreSQL: `{pg_sql}` with {pg_params}",
                    f"  - SQLite: `{lite_sql}` with {lite_params}"]
    res.note(SECTION, "\n".join(listing))
