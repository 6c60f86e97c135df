"""The peers, loaded the way their users load them: PostgreSQL as CKAN's DataStore, SQLite as Datasette serves it."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

COLUMNS = ["sensor_id", "lot_id", "district", "timestamp", "occupied", "free", "lon", "lat"]
PG_TYPES = ["text", "text", "text", "timestamp", "int4", "int4", "float8", "float8"]
SQLITE_TYPES = {"sensor_id": str, "lot_id": str, "district": str, "timestamp": str, "occupied": int, "free": int,
                "lon": float, "lat": float}
# CKAN's trigger fills _full_text from json_each_text(row_to_json(NEW)): every column's JSON text, in
# column order, joined by spaces. The same text without JSON per row (timestamps in JSON's ISO form);
# tests hold it to the trigger's expression (CKAN_FULL_TEXT) row by row.
FULL_TEXT = ("to_tsvector(concat_ws(' ', " + ", ".join(
    f"to_json(\"{c}\") #>> '{{}}'" if t == "timestamp" else f'"{c}"' for c, t in zip(COLUMNS, PG_TYPES)) + "))")
CKAN_FULL_TEXT = ("(SELECT to_tsvector(string_agg(value, ' ')) FROM json_each_text(row_to_json(r)::json) "
                  "WHERE key NOT LIKE '\\_%')")
# The indexes a DBA (or `sqlite-utils create-index`) adds for the measured queries: the point lookup
# (sensor, time), the top-10 at one reading time (time), the group-by over a week and the district
# count (district, time).
DBA_INDEXES = (("sensor_id", "timestamp"), ("timestamp",), ("district", "timestamp"))
PG_DSN = os.environ.get("BENCH_PG_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")


def pg_connect():  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(PG_DSN, autocommit=True)


class CkanTable:
    """A CKAN-DataStore-style table in its own schema of database ``test``; dropped by ``drop``.

    CKAN's ``datastore_create`` makes typed columns, ``_id serial`` primary
    key and a ``_full_text`` tsvector with a GIN index, filled by a row
    trigger from every column's text (``json_each_text(row_to_json(NEW))``).
    We COPY the CSV into an unlogged staging table and fill ``_full_text``
    with the same text set-wise (``FULL_TEXT``), in two halves on two
    connections: the per-row trigger gives the same table but takes ~35 µs a
    row here, and ``json_each_text`` per row nearly twice ``concat_ws``.
    """

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.table = f"{schema}.parking"
        self.con = pg_connect()

    def version(self) -> str:
        return self.con.execute("SHOW server_version").fetchone()[0]  # type: ignore[index,no-any-return]

    def settings(self) -> dict[str, str]:
        names = ["shared_buffers", "work_mem", "max_parallel_workers_per_gather", "default_text_search_config",
                 "jit"]
        return {n: self.con.execute(f"SHOW {n}").fetchone()[0] for n in names}  # type: ignore[index]

    def load(self, csv_path: Path) -> None:
        cols = ", ".join(f'"{c}" {t}' for c, t in zip(COLUMNS, PG_TYPES))
        names = ", ".join(f'"{c}"' for c in COLUMNS)
        self.con.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        self.con.execute(f"CREATE SCHEMA {self.schema}")
        self.con.execute(f"CREATE UNLOGGED TABLE {self.schema}.staging ({cols})")
        self.con.execute(f"CREATE TABLE {self.table} (_id serial PRIMARY KEY, _full_text tsvector, {cols})")
        with open(csv_path, "rb") as handle, self.con.cursor().copy(
            f"COPY {self.schema}.staging ({names}) FROM STDIN WITH (FORMAT csv, HEADER true)"
        ) as copy:
            for block in iter(lambda: handle.read(1 << 20), b""):
                copy.write(block)
        # Two halves of the staging table by physical position (a TID range scan, no sort and no extra column).
        (pages,) = self.con.execute(  # type: ignore[misc]
            f"SELECT pg_relation_size('{self.schema}.staging') / current_setting('block_size')::int").fetchone()
        half = f"'({pages // 2 + 1},0)'::tid"
        failures: list[BaseException] = []

        def fill(where: str) -> None:
            try:
                with pg_connect() as con:
                    con.execute(f"INSERT INTO {self.table} ({names}, _full_text) SELECT {names}, {FULL_TEXT} "
                                f"FROM {self.schema}.staging WHERE {where}")
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                failures.append(exc)

        workers = [threading.Thread(target=fill, args=span) for span in ((f"ctid < {half}",), (f"ctid >= {half}",))]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        if failures:
            raise failures[0]
        self.con.execute(f"DROP TABLE {self.schema}.staging")
        # Memory for building the index only (the queries run with the server's settings as found):
        # with the default 64 MB, GIN flushes its build buffer hundreds of times over 10M rows.
        self.con.execute("SET maintenance_work_mem = '1GB'")
        self.con.execute(f"CREATE INDEX parking_full_text ON {self.table} USING gin(_full_text)")
        self.con.execute("RESET maintenance_work_mem")
        self.con.execute(f"VACUUM ANALYZE {self.table}")

    def add_dba_indexes(self) -> None:
        """The B-tree indexes of ``DBA_INDEXES``, then ANALYZE."""
        for columns in DBA_INDEXES:
            name = "parking_" + "_".join(columns)
            cols = ", ".join(f'"{c}"' for c in columns)
            self.con.execute(f"CREATE INDEX {name} ON {self.table} ({cols})")
        self.con.execute(f"ANALYZE {self.table}")

    def index_columns(self) -> list[tuple[str, ...]]:
        """The key columns of every index on the table, as PostgreSQL's catalogue lists them."""
        rows = self.con.execute(
            "SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index i "
            "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = %s::regclass GROUP BY i.indexrelid", [self.table]).fetchall()
        return sorted(tuple(r[0]) for r in rows)

    def size_bytes(self) -> int:
        return self.con.execute(f"SELECT pg_total_relation_size('{self.table}')").fetchone()[0]  # type: ignore[index,no-any-return]

    def drop(self) -> None:
        try:
            self.con.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        finally:
            self.con.close()


def load_sqlite(path: Path, parts: list[str], batch_rows: int = 100_000) -> None:
    """A table as ``sqlite-utils insert`` makes it for Datasette: TEXT/INTEGER/FLOAT, ISO text times, rowid, no index.

    ``add_sqlite_index`` adds what ``sqlite-utils create-index`` would for such data.
    """
    import sqlite_utils

    db = sqlite_utils.Database(path, recreate=True)
    db.execute("PRAGMA journal_mode = OFF")
    db.execute("PRAGMA synchronous = OFF")
    db.create_table("parking", SQLITE_TYPES)
    sql = f"INSERT INTO [parking] ({', '.join('[' + c + ']' for c in COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    con = db.conn
    for part in parts:
        for batch in pq.ParquetFile(part).iter_batches(batch_rows, columns=COLUMNS):
            columns = []
            for name in COLUMNS:
                col = batch.column(batch.schema.get_field_index(name))
                if name == "timestamp":  # whole seconds: %S of a µs timestamp would add a fraction
                    col = pc.strftime(col.cast(pa.timestamp("s")), format="%Y-%m-%dT%H:%M:%S")
                columns.append(col.to_pylist())
            con.executemany(sql, zip(*columns))
    con.commit()
    db.execute("ANALYZE")
    db.close()


def add_sqlite_indexes(path: Path) -> None:
    """``DBA_INDEXES``, as ``sqlite-utils create-index parking.db parking sensor_id timestamp`` (and so on) adds them."""
    import sqlite_utils

    db = sqlite_utils.Database(path)
    for columns in DBA_INDEXES:
        db["parking"].create_index(list(columns), if_not_exists=True)  # type: ignore[union-attr]
    db.execute("ANALYZE")
    db.close()


def sqlite_index_columns(path: Path) -> list[tuple[str, ...]]:
    """The key columns of every index on the table, as SQLite lists them."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [row[1] for row in con.execute("PRAGMA index_list(parking)")]
        return sorted(tuple(r[2] for r in con.execute(f"PRAGMA index_info([{n}])")) for n in names)
    finally:
        con.close()


@contextmanager
def sqlite_connection(path: Path) -> Iterator[sqlite3.Connection]:
    con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
    try:
        yield con
    finally:
        con.close()
