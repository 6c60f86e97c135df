"""The SQL worker process: runs one checked SELECT at a time in a sandboxed DuckDB.

Each worker keeps one sandboxed in-memory DuckDB for as long as tasks read
the same dataset views, and builds a fresh one (30 to 300 ms, mostly loading
spatial) when a task reads others or a query failed, so the sandbox can name
exactly the files the current task may touch:

- ``allowed_paths`` = the Parquet parts of the dataset views the statement
  reads, then ``enable_external_access = false`` (no other file, URL,
  extension or Python object), ``temp_directory = ''`` (nothing spills to
  disk: past ``memory_limit`` a query fails), and ``lock_configuration``
  (no SET, RESET or PRAGMA can undo any of it);
- the worker process itself has an address-space cap (RLIMIT_AS) above what
  it maps after loading DuckDB and spatial, so an allocation DuckDB does not
  count against ``memory_limit`` fails instead of swamping the machine;
- a timer thread interrupts the query at its deadline; the parent kills
  workers that do not answer after a grace period (some functions never
  check for interrupts).

Measured with duckdb 1.5.5: with these settings reading any other file,
``glob``, ``COPY ... TO`` elsewhere, ATTACH of a file, INSTALL and LOAD fail
with a permission error and every SET fails; but an allowed path is
*writable* too (``COPY ... TO '<part>' (USE_TMP_FILE false)`` overwrites it),
which is why the guard, not the sandbox, is what refuses COPY.

Kept light on imports: it is what every spawned worker imports.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import duckdb

from catalogue import duck
from catalogue.schema.sql_text import ident, iso_timestamp, literal

RESULT_VIEW = "__result"  # never a user relation: the guard only lets names starting [a-z0-9] through
TIMESTAMP_TYPES = frozenset({"timestamp", "timestamp_s", "timestamp_ms", "timestamp_ns"})


@dataclass(frozen=True)
class WorkerConfig:
    """Resources of one worker process."""

    memory_limit_mb: int
    threads: int
    address_space_mb: int


@dataclass(frozen=True)
class SqlTask:
    """One checked statement, the dataset views it reads (name → Parquet parts) and its limits."""

    sql: str
    views: dict[str, tuple[str, ...]] = field(default_factory=dict)
    max_rows: int = 1000
    time_limit_ms: int = 1000
    hidden_prefix: str = ""  # scrubbed from error messages (the store's location)


def serve(conn: Connection, config: WorkerConfig) -> None:
    """Worker process entry point: warm up, cap the address space, answer tasks until told to stop."""
    duck.connect(memory_limit_mb=config.memory_limit_mb, threads=1).close()  # map spatial before the cap
    _cap_address_space(config.address_space_mb)
    sandboxes = Sandboxes(config)
    conn.send({"ready": True})
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the parent went away
            break
        if task is None:
            break
        conn.send(run_task(task, sandboxes))
    sandboxes.discard()


class Sandboxes:
    """The worker's current sandbox, kept while tasks read the same views."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self._views: dict[str, tuple[str, ...]] | None = None
        self._con: duckdb.DuckDBPyConnection | None = None

    def get(self, views: dict[str, tuple[str, ...]]) -> duckdb.DuckDBPyConnection:
        """A sandbox holding exactly ``views``."""
        if self._con is None or self._views != views:
            self.discard()
            self._con = sandbox(views, self.config)
            self._views = dict(views)
        return self._con

    def discard(self) -> None:
        """Close the current sandbox (after a failed query: start the next one clean)."""
        if self._con is not None:
            self._con.close()
        self._con, self._views = None, None


def run_task(task: SqlTask, sandboxes: Sandboxes) -> dict[str, Any]:
    """Run ``task`` in a sandbox: ``{ok, columns, rows, truncated}`` or ``{ok, kind, message}``."""
    try:
        con = sandboxes.get(task.views)
        timer = threading.Timer(task.time_limit_ms / 1000, con.interrupt)
        timer.start()
        try:
            return _execute(con, task)
        finally:
            timer.cancel()
    except duckdb.InterruptException:
        sandboxes.discard()  # start the next task in a database nobody interrupted
        return {"ok": False, "kind": "timeout", "message": ""}
    except (duckdb.OutOfMemoryException, MemoryError):
        sandboxes.discard()  # and one that holds no memory from this query
        return {"ok": False, "kind": "memory", "message": ""}
    except duckdb.Error as exc:  # the user's mistake (unknown column...): the sandbox stays good
        return {"ok": False, "kind": "error", "message": user_message(_scrub(str(exc), task.hidden_prefix), task.sql)}


def sandbox(views: dict[str, tuple[str, ...]], config: WorkerConfig) -> duckdb.DuckDBPyConnection:
    """A locked-down database holding one view per dataset name, able to read only those views' files."""
    con = duck.connect(memory_limit_mb=config.memory_limit_mb, threads=config.threads)
    try:
        files = sorted({uri for parts in views.values() for uri in parts})
        con.execute("SET temp_directory = ''")
        con.execute("SET python_enable_replacements = false")
        con.execute(f"SET allowed_paths = [{', '.join(literal(f) for f in files)}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET allow_community_extensions = false")
        con.execute("SET lock_configuration = true")
        for name, parts in views.items():
            scan = f"read_parquet([{', '.join(literal(p) for p in parts)}])"
            con.execute(f"CREATE TEMP VIEW {ident(name)} AS SELECT * FROM {scan}")
    except BaseException:
        con.close()
        raise
    return con


def _execute(con: duckdb.DuckDBPyConnection, task: SqlTask) -> dict[str, Any]:
    relation = con.sql(task.sql)
    if relation is None:  # the guard lets only SELECT through; this is the belt to its braces
        return {"ok": False, "kind": "error", "message": "The statement returned no rows."}
    types = relation.types
    cells = ", ".join(_json_cell(position, kind.id) for position, kind in enumerate(types, start=1))
    # Columns by position (#n): a SELECT may give two columns the same name.
    fetched = relation.query(
        RESULT_VIEW, f"SELECT json_array({cells})::VARCHAR FROM {RESULT_VIEW} LIMIT {task.max_rows + 1}"
    ).fetchall()
    rows = [json.loads(r[0], parse_constant=_no_number) for r in fetched[: task.max_rows]]
    return {
        "ok": True,
        "columns": [{"name": n, "type": str(t)} for n, t in zip(relation.columns, types)],
        "rows": rows,
        "truncated": len(fetched) > task.max_rows,
    }


def _json_cell(position: int, type_id: str) -> str:
    """One output column as JSON: geometry as GeoJSON, timestamps in ISO 8601, the rest as DuckDB's to_json."""
    ref = f"#{position}"
    if type_id == "geometry":
        # A geometry with no GeoJSON form (infinite coordinates: ST_AsGeoJSON gives '') is null, like NaN.
        return f"nullif(ST_AsGeoJSON({ref})::VARCHAR, '')::JSON"
    if type_id in TIMESTAMP_TYPES or type_id == "timestamp with time zone":
        return iso_timestamp(ref, with_zone=type_id == "timestamp with time zone")
    return ref


def _no_number(constant: str) -> None:
    """NaN and ±Infinity have no JSON form: they become null, as in JavaScript's JSON.stringify."""
    return None


CONTEXT = re.compile(r"\n\nLINE (\d+): (.*?)(\.\.\.)?\n *\^", re.DOTALL)
SETTING_HINT = re.compile(r"\s*(Use|Set|Try) \"?(SET|RESET|PRAGMA)\b[^\n]*", re.IGNORECASE)
POSITION_REF = re.compile(r"#(\d+)")
WRAPPED_GEOJSON = re.compile(r"(?:nullif\()?ST_AsGeoJSON\(#(\d+)\)(?:::VARCHAR, '?'?\))?(?:::JSON)?", re.IGNORECASE)


def user_message(message: str, sql: str) -> str:
    """DuckDB's message about the user's statement only.

    Rows are fetched through a wrapper query (:func:`_execute`), so an error raised while they
    are computed quotes the wrapper's text (``SELECT json_array(#1)::VARCHAR FROM __result``)
    as its LINE context: that context is dropped unless it is the user's own text, output
    columns by position (``#3``) become "column 3", and hints to change a setting (which the
    sandbox refuses) are left out.
    """
    def context(match: re.Match[str]) -> str:
        return match.group(0) if match.group(2).strip() and match.group(2).strip() in sql else ""

    message = CONTEXT.sub(context, message)
    message = SETTING_HINT.sub("", message)
    if RESULT_VIEW in message or "json_array(" in message:  # any wrapper text left: say what failed, not how
        message = message.split("\n", 1)[0].replace(RESULT_VIEW, "the result")
    message = WRAPPED_GEOJSON.sub(lambda m: m.group(0) if m.group(0) in sql else f"the GeoJSON of #{m.group(1)}",
                                  message)
    # #n is how the wrapper names output column n; the user's own '#1' (in a string) stays.
    return POSITION_REF.sub(lambda m: m.group(0) if m.group(0) in sql else f"column {m.group(1)}", message).strip()


def _scrub(message: str, prefix: str) -> str:
    return message.replace(prefix, "<store>") if prefix else message


def _cap_address_space(extra_mb: int) -> None:
    """Cap this process's address space at what it maps now plus ``extra_mb`` (Linux; elsewhere no cap)."""
    try:
        import resource

        pages = int(Path("/proc/self/statm").read_text().split()[0])
    except (ImportError, OSError, ValueError):
        return
    limit = pages * resource.getpagesize() + extra_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
