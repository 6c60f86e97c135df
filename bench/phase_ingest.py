"""1. Ingest: a CSV delivery through ``ingest_delivery`` vs plain CSV→Parquet, and vs frictionless."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.context import DATASET, DIALECTS, Context
from bench.data import write_csv, write_definitions
from bench.measure import Figure, Target, mib, run_worker
from catalogue.meta.definitions import load_definitions, sync_definitions
from catalogue.hub import open_hub
from catalogue.settings import Settings

SECTION = "ingest"


def prepare_data(ctx: Context) -> None:
    """Write the history in both dialects and the definitions of one dataset per dialect."""
    for dialect in DIALECTS:
        ctx.step(f"writing {ctx.rows:,} rows as {dialect} CSV")
        ctx.csv[dialect] = write_csv(ctx.work / f"parking-{dialect}.csv", ctx.shape, dialect)
    ctx.defs = write_definitions(ctx.work / "definitions", DATASET, {f"parking-{d}": d for d in DIALECTS})


def _fresh_store(ctx: Context, name: str) -> Path:
    assert ctx.defs is not None
    data_dir = ctx.work / name
    shutil.rmtree(data_dir, ignore_errors=True)
    hub = open_hub(Settings(data_dir=data_dir, definitions_dir=ctx.defs))
    sync_definitions(hub, load_definitions(ctx.defs))
    hub.close()
    return data_dir


def _sample(source: Path, target: Path, rows: int) -> Path:
    with open(source, "rb") as src, open(target, "wb") as dst:
        for number, line in enumerate(src):
            if number > rows:
                break
            dst.write(line)
    return target


def _ours(ctx: Context, dialect: str, csv: Path, k: int) -> tuple[list[float], list[float]]:
    """Seconds and peak RSS (MiB) of ``k`` ingests through our store, each into a new catalogue."""
    ours, rss = [], []
    for i in range(k):
        ctx.step(f"ingest {dialect}: our store, repeat {i + 1}/{k}")
        data_dir = _fresh_store(ctx, f"store-{dialect}-{i}")
        try:
            out = run_worker(["ingest", "--csv", str(csv), "--dialect", dialect, "--data-dir", str(data_dir),
                              "--defs", str(ctx.defs), "--dataset", f"parking-{dialect}"])
        except RuntimeError:
            shutil.rmtree(data_dir, ignore_errors=True)
            raise
        ours.append(out["seconds"])
        rss.append(mib(out["peak_rss"]))
        if dialect == "international" and i == k - 1:
            ctx.store_dir = data_dir
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return ours, rss


def _cause(exc: Exception) -> str:
    """The exception line of a failed worker's traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if "Error" in line or "Exception" in line]
    return (lines[-1] if lines else str(exc).splitlines()[0])[:200]


def run(ctx: Context) -> None:
    res = ctx.results
    k = ctx.heavy
    peak = 0.0
    for dialect in DIALECTS:
        csv = ctx.csv[dialect]
        size = csv.stat().st_size
        crashed = ""
        try:
            ours, rss = _ours(ctx, dialect, csv, k)
        except RuntimeError as exc:
            crashed = _cause(exc)
            ctx.console.print(f"[red]our ingest of the {dialect} CSV failed[/red]: {crashed}")
            res.note(SECTION, f"**Our ingest of the {dialect} CSV failed** (the bench went on): `{crashed}`")
        if not crashed:
            peak = max(peak, max(rss))
            res.add(Figure(f"ingest.{dialect}.ours", f"ingest_delivery, {dialect} CSV ({size / 1e6:.0f} MB) → "
                           "published version", "s", ours))
            res.add(Figure(f"ingest.{dialect}.ours_rss", f"peak RSS of the ingest process, {dialect}", "MiB", rss,
                           note="fresh process; includes the interpreter and imports (~150 MiB)"))
        plain = {}
        for kind in ("pyarrow", "duckdb"):
            values = []
            for i in range(k):
                ctx.step(f"ingest {dialect}: plain {kind} CSV→Parquet, repeat {i + 1}/{k}")
                target = ctx.work / f"plain-{kind}.parquet"
                out = run_worker([kind, "--csv", str(csv), "--dialect", dialect, "--out", str(target)])
                values.append(out["seconds"])
                target.unlink(missing_ok=True)
            plain[kind] = res.add(Figure(f"ingest.{dialect}.{kind}", f"plain {kind} CSV→Parquet, {dialect}", "s", values))
        values = []
        for i in range(1):  # no target: once keeps the default run short
            ctx.step(f"ingest {dialect}: plain duckdb CSV→Parquet sorted by the key, once")
            target = ctx.work / "plain-duckdb-sorted.parquet"
            values.append(run_worker(["duckdb-sorted", "--csv", str(csv), "--dialect", dialect, "--out",
                                      str(target)])["seconds"])
            target.unlink(missing_ok=True)
        sorted_plain = res.add(Figure(f"ingest.{dialect}.duckdb_sorted", f"plain duckdb CSV→Parquet sorted by "
                                      f"(sensor_id, timestamp), {dialect}", "s", values,
                                      note="once; no target: the work our layout needs, without validation"))
        if not crashed:
            res.note(SECTION, f"{dialect}: plain sorted conversion time / our time: "
                     f"**{sorted_plain.median / res.median(f'ingest.{dialect}.ours'):.2f}×** (informational).")
        best = min(plain.values(), key=lambda f: f.median)
        ours_median = float("inf") if crashed else res.median(f"ingest.{dialect}.ours")
        failed = f" — our ingest FAILED: {crashed}" if crashed else ""
        res.targets.append(Target(SECTION, f"ingest {dialect}: plain CSV→Parquet time ({best.key.split('.')[-1]}, "
                                  "the faster) / our time" + failed, best.median / ours_median, ">=", 0.7))
        # frictionless: row by row, on a sample, extrapolated per row
        sample_rows = min(ctx.frictionless_rows, ctx.rows)
        sample = _sample(csv, ctx.work / f"sample-{dialect}.csv", sample_rows)
        values = []
        for i in range(k):
            ctx.step(f"ingest {dialect}: frictionless validate on {sample_rows:,} rows, repeat {i + 1}/{k}")
            out = run_worker(["frictionless", "--csv", str(sample), "--dialect", dialect])
            if not out["valid"]:
                raise RuntimeError(f"frictionless found the sample invalid: {out['errors']}")
            values.append(out["seconds"] / sample_rows * ctx.rows)
        sample.unlink()
        res.add(Figure(f"ingest.{dialect}.frictionless", f"frictionless validate, {dialect}, extrapolated to "
                       f"{ctx.rows:,} rows", "s", values,
                       note=f"measured on the first {sample_rows:,} rows, × {ctx.rows / sample_rows:.0f}"))
        res.targets.append(Target(SECTION, f"ingest {dialect}: frictionless validation time (extrapolated) / our "
                                  "whole ingest time" + failed, res.median(f"ingest.{dialect}.frictionless") / ours_median,
                                  ">=", 30))
    res.targets.append(Target(SECTION, "ingest: peak RSS of our ingest process (worst dialect, worst repeat that finished)", peak,
                              "<=", 1024, unit="MiB"))
    res.note(SECTION, "Each measurement runs in a fresh process (`python -m bench.worker`), so ru_maxrss is the "
             "peak of that one ingest. Our time starts with the delivery on disk as a harvest leaves it (a "
             "`Delivery` whose `path` is a scratch file of the store, hard-linked to the CSV) and ends with the "
             "version committed (one pass over the bytes for what DuckDB's CSV reader would read differently "
             "from the text path → DuckDB's parallel reader, every cell typed and checked in SQL (`catalogue.csv_scan`) "
             "→ cut into time windows and each sorted by primary key (`catalogue.layout`: the key is (sensor_id, "
             "timestamp), so each part is one time window sorted by sensor) → content-addressed Parquet parts "
             "(one DuckDB `COPY` per window, snappy, like both plain conversions; the written key columns are read "
             "back to check the primary key) → descriptor → DB commit), with the default settings "
             "(`ingest_memory_limit_mb`, `part_max_rows`, `row_group_rows`). Each repeat ingests into a new, empty "
             "catalogue, so every repeat publishes version 1.")
    res.note(SECTION, "Plain pyarrow: `pyarrow.csv.read_csv` with typed conversion (decimal comma and "
             "`%d.%m.%Y %H:%M` parsers for the German file, cp1252 transcoding) → `pq.write_table(snappy)`. Plain "
             "DuckDB: `COPY (SELECT * FROM read_csv(...)) TO ... (FORMAT parquet, COMPRESSION snappy)`, reading "
             "the German file as latin-1 (byte-identical to cp1252 for its umlauts). Neither validates anything; "
             "the faster of the two is the practical limit.")
    res.note(SECTION, "frictionless: `Resource(...).validate()` with the same Table Schema (types, required, "
             "enum, minimum/maximum, primary key), row by row in Python, on the first rows of the same file; "
             "seconds per row × all rows. The extrapolation assumes linear cost (its primary-key check keeps a "
             "set in memory, so it is if anything optimistic for frictionless).")
