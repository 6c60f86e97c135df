"""One measurement in a fresh process: ``python -m bench.worker KIND ...``; prints one JSON line.

Kinds: ``ingest`` (our store), ``pyarrow`` and ``duckdb`` (plain CSV to
Parquet), ``frictionless`` (row-by-row validation of a sample). Timing
starts after imports, at the point where the bytes are still on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench.data import csv_options, quiet_connect, table_schema
from catalogue.store.layout import PART_COMPRESSION


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def ingest(args: argparse.Namespace) -> dict[str, Any]:
    from catalogue.hub import open_hub
    from catalogue.settings import Settings
    from catalogue.ingest.pipeline import Delivery, ingest_delivery

    hub = open_hub(Settings(data_dir=Path(args.data_dir), definitions_dir=Path(args.defs)))
    baseline = _peak_rss()
    provenance = {"source_url": f"file://{args.csv}"}
    if args.bytes:
        started = time.perf_counter()
        delivery = Delivery(Path(args.csv).read_bytes(), "csv", csv_options(args.dialect), "replace", provenance)
    else:
        # As a harvest leaves it: the feed in a scratch file of the store, which the store removes when done.
        scratch = hub.storage.new_scratch_file(".csv")
        scratch.unlink()
        try:
            os.link(args.csv, scratch)
        except OSError:
            shutil.copyfile(args.csv, scratch)
        started = time.perf_counter()
        delivery = Delivery(b"", "csv", csv_options(args.dialect), "replace", provenance, path=scratch)
    result = ingest_delivery(hub, args.dataset, delivery)
    seconds = time.perf_counter() - started
    hub.close()
    if result.status != "published":
        raise SystemExit(f"ingest was {result.status}: {json.dumps(result.report)[:2000]}")
    return {"seconds": seconds, "peak_rss": _peak_rss(), "baseline_rss": baseline, "rows": result.rows,
            "version": result.version}


def plain_pyarrow(args: argparse.Namespace) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    german = args.dialect == "german"
    options = csv_options(args.dialect)
    started = time.perf_counter()
    table = pacsv.read_csv(
        args.csv,
        read_options=pacsv.ReadOptions(encoding=options["encoding"]),
        parse_options=pacsv.ParseOptions(delimiter=options["delimiter"]),
        convert_options=pacsv.ConvertOptions(
            decimal_point="," if german else ".",
            column_types={"timestamp": pa.timestamp("s")},
            timestamp_parsers=["%d.%m.%Y %H:%M"] if german else None,
        ),
    )
    # Comparable files: our parts' compression and row-group size.
    pq.write_table(table, args.out, compression=PART_COMPRESSION, row_group_size=args.row_group_rows)
    return {"seconds": time.perf_counter() - started, "peak_rss": _peak_rss(), "rows": table.num_rows}


def plain_duckdb(args: argparse.Namespace, order_by: str = "") -> dict[str, Any]:
    """DuckDB's CSV → Parquet COPY; ``order_by``: sorted by those columns on the way."""
    german = args.dialect == "german"
    con = quiet_connect({"threads": 2})
    started = time.perf_counter()
    # DuckDB reads latin-1 natively; for this file (umlauts only) it is byte-identical to cp1252.
    reader = (f"read_csv('{args.csv}', delim=';', decimal_separator=',', encoding='latin-1', "
              "timestampformat='%d.%m.%Y %H:%M', header=true)" if german else
              f"read_csv('{args.csv}', header=true)")
    order = f" ORDER BY {order_by}" if order_by else ""
    con.execute(f"COPY (SELECT * FROM {reader}{order}) TO '{args.out}' "
                f"(FORMAT parquet, COMPRESSION {PART_COMPRESSION}, ROW_GROUP_SIZE {int(args.row_group_rows)})")
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{args.out}')").fetchone()[0]  # type: ignore[index]
    seconds = time.perf_counter() - started
    con.close()
    return {"seconds": seconds, "peak_rss": _peak_rss(), "rows": rows}


def frictionless_sample(args: argparse.Namespace) -> dict[str, Any]:
    import frictionless

    schema = frictionless.Schema.from_descriptor(table_schema(args.dialect))
    options = csv_options(args.dialect)
    dialect = frictionless.Dialect(controls=[frictionless.formats.CsvControl(delimiter=options["delimiter"])])
    sample = Path(args.csv)
    resource_ = frictionless.Resource(path=sample.name, basepath=str(sample.parent), schema=schema, dialect=dialect, encoding=options["encoding"],
                                      format="csv")
    started = time.perf_counter()
    report = resource_.validate(frictionless.Checklist(), limit_errors=1000)
    seconds = time.perf_counter() - started
    task = report.tasks[0]
    return {"seconds": seconds, "peak_rss": _peak_rss(), "rows": task.stats.get("rows"), "valid": report.valid,
            "errors": [e.message for e in task.errors[:3]]}


def plain_duckdb_sorted(args: argparse.Namespace) -> dict[str, Any]:
    """DuckDB's CSV → Parquet COPY sorted by the primary key, as our parts are (within time windows)."""
    return plain_duckdb(args, order_by="sensor_id, timestamp")


KINDS = {"ingest": ingest, "pyarrow": plain_pyarrow, "duckdb": plain_duckdb, "duckdb-sorted": plain_duckdb_sorted,
         "frictionless": frictionless_sample}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--csv", required=True)
    parser.add_argument("--dialect", default="international")
    parser.add_argument("--out", default="")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--defs", default="")
    parser.add_argument("--dataset", default="")
    parser.add_argument("--row-group-rows", type=int, default=65_536, help="plain conversions: rows per row group")
    parser.add_argument("--bytes", action="store_true", help="ingest: deliver the file's bytes in memory, not a path")
    args = parser.parse_args(argv)
    print(json.dumps(KINDS[args.kind](args)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
