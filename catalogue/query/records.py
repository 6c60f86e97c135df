"""Records, aggregates and facets over one version, from checked ODSQL parameters.

Paging: ``offset`` + ``limit`` up to a wall (10,000 rows by default, as in
Opendatasoft); beyond it a keyset cursor (``next``) walks any dataset to the
end: it holds the version and the position (part, row in part) of the last
row served, so each page reads only from there on. Cursors are signed
(:mod:`catalogue.query.cursors`): only one we issued is accepted. Plans are
made by :mod:`catalogue.query.planning`; this module runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import duckdb

from catalogue.errors import QueryError, QueryTimeout, StorageUnavailable, UrbandataError
from catalogue.query import by_time, memos, pruning
from catalogue.query.cursors import PART_STRIDE, PROCESS_SECRET, encode_cursor
from catalogue.query.deadlines import WATCHDOG
from catalogue.query.odsql import Compiler
# The request, the plan and planning live in catalogue.query.planning; callers import them from here too.
from catalogue.query.planning import Plan as Plan
from catalogue.query.planning import RecordsRequest as RecordsRequest
from catalogue.query.planning import compile_filters
from catalogue.query.planning import plan_records as plan_records
from catalogue.query.result_cache import PART_ANSWERS, answer_key
from catalogue.schema.sql_text import ident, iso_timestamp, json_value, literal
from catalogue.schema.model import TableSchema
from catalogue.store.changes import parquet_scan


@contextmanager
def deadline(cur: duckdb.DuckDBPyConnection, time_limit_ms: int) -> Iterator[None]:
    """Interrupt the cursor's query when it runs past ``time_limit_ms``."""
    try:
        with WATCHDOG.watch(cur, time_limit_ms / 1000):
            yield
    except duckdb.InterruptException as exc:
        raise QueryTimeout(f"The query took longer than {time_limit_ms} ms and was stopped. "
                           "Narrow it with where, or use the exports for whole datasets.") from exc


def record_json(columns: list[tuple[str, str]]) -> str:
    """The SQL of one row (of subquery ``q``) as a JSON object text: the records' rendering."""
    return f"to_json({_json_struct(columns)})::VARCHAR"


def _json_struct(columns: list[tuple[str, str]]) -> str:
    """A struct literal of the output columns, rendered for JSON (GeoJSON, ISO 8601 times)."""
    out = []
    for name, kind in columns:
        out.append(f"{literal(name)}: {json_value(f'q.{ident(name)}', kind)}")
    return "{" + ", ".join(out) + "}"


def _used(sql: str, params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if f"${k}" in sql}


def run_records(
    cur: duckdb.DuckDBPyConnection, plan: Plan, *, version: int, limit: int, time_limit_ms: int,
    cursor_secret: bytes = PROCESS_SECRET, render: Callable[[list[tuple[str, str]]], str] = record_json,
) -> dict[str, Any]:
    """Execute ``plan``: ``{total_count, results_json, returned, next_cursor}`` (signed with ``cursor_secret``).

    Rows are rendered to JSON text inside DuckDB (``render``: the SQL of one row's text, given the output
    columns and their DuckDB types; default :func:`record_json`) and joined, never parsed in Python.
    """
    try:
        with deadline(cur, time_limit_ms):
            plan = prune(cur, plan)
            params = _used(plan.sql, plan.params)
            columns = plan.columns
            if columns is None:  # computed expressions: ask the engine for their types
                columns = [c for c in output_columns(cur, plan.sql, params) if c[0] not in HIDDEN]
            extra = "".join(f", q.{c}" for c in (("__file", "__row") if plan.keyed else ())
                            + (("__total",) if plan.count_from == "window" else ()))
            wrapped = f"SELECT {render(columns)}{extra} FROM ({plan.sql}) AS q"
            rows = cur.execute(wrapped, params).fetchall()
            total = _total(cur, plan, rows, limit)
    except duckdb.Error as exc:
        if isinstance(exc, duckdb.InterruptException):
            raise
        raise engine_error(exc) from exc
    next_token = None
    if plan.keyed and len(rows) == limit and rows:
        last = rows[-1]
        next_token = encode_cursor(version, plan.parts.index(last[1]) * PART_STRIDE + last[2],
                                   scope=plan.cursor_scope, secret=cursor_secret)
    return {"total_count": total, "results_json": "[" + ",".join(r[0] for r in rows) + "]", "returned": len(rows),
            "next_cursor": next_token}


def prune(cur: duckdb.DuckDBPyConnection, plan: Plan) -> Plan:
    """``plan`` reading only the parts whose statistics admit its filters (see catalogue.pruning).

    A plan that may be served from the by-time copies (``plan.time_order``) reads those of the kept parts.
    """
    if (not plan.part_tests or len(plan.parts) < 2) and not plan.time_order:
        return plan
    keep = set(plan.parts)
    if plan.part_tests and len(plan.parts) >= 2:
        keep = pruning.surviving_parts(cur, plan.parts, plan.part_tests, plan.params)
    params = dict(plan.params)
    for name in ("scan", "parts"):
        files = [uri for uri in params[name] if uri in keep]
        # read_parquet needs a file; one whose ranges exclude the filter yields no rows.
        params[name] = files or params[name][:1]
    if plan.time_order:
        copies = by_time.copies(cur, params["scan"] + params["parts"], plan.time_order)
        if copies:
            for name in ("scan", "parts"):
                params[name] = [copies[uri] for uri in params[name]]
    return replace(plan, params=params)


def output_columns(cur: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, DuckDB type) of a query's columns: bound and planned with LIMIT 0, never run in full.

    (``cursor.sql(query, params=...)`` would execute it: relations with parameters are eager.)
    """
    key = answer_key("columns", sql, params)
    known = _described.get(key, list) if key is not None and memos.on() else None
    if known is not None:
        return list(known)
    described = cur.execute(f"SELECT * FROM ({sql}) LIMIT 0", params).description or []
    out = [(d[0], str(d[1])) for d in described]
    if key is not None:  # the parameters name the part files, whose columns never change
        _described.put(key, list(out), 64 * len(out))
    return out


_described = PART_ANSWERS  # output columns by (query, parameters): binding costs ~0.5 ms


HIDDEN = ("__file", "__row", "__total")  # bookkeeping columns of the rows query, not in the results


def _total(cur: duckdb.DuckDBPyConnection, plan: Plan, rows: list[Any], limit: int) -> int:
    """The total count of matching rows (or groups), by the cheapest source the plan allows."""
    if plan.count_from == "known" and plan.total is not None:
        return plan.total
    if plan.count_from == "window" and (rows or plan.offset == 0):
        return int(rows[0][-1]) if rows else 0
    cursor_page = "cursor_row" in plan.params
    if plan.count_from == "rows" and not cursor_page and len(rows) < limit and (rows or plan.offset == 0):
        return plan.offset + len(rows)  # a page that is not full ends the matches
    used = _used(plan.count_sql, plan.params)
    key = answer_key("count", plan.count_sql, used)
    known = _counts.get(key, int) if key is not None and memos.on() else None
    if known is not None:
        return known
    (total,) = cur.execute(plan.count_sql, used).fetchone()  # type: ignore[misc]
    if key is not None:
        _counts.put(key, int(total), 16)
    return int(total)


# Counts by (count query, parameters): the parameters name the part files, which are
# content-addressed (catalogue.store.part_key) and never change, so neither does a count.
# The next page of the same filter, or the same filter in another order, skips the scan
# (Datasette keeps the counts of immutable databases likewise). An entry is its key's text.
_counts = PART_ANSWERS


def clear_count_cache() -> None:
    """Forget every cached count (and the other part answers kept beside them), for measurements of the uncached path."""
    _counts.clear()


def engine_error(exc: duckdb.Error) -> UrbandataError:
    """The error to raise for a DuckDB error while answering a query.

    An HTTP error reading parts from object storage is the server's fault (503 storage-unavailable),
    anything else the query's (invalid-query).
    """
    if isinstance(exc, duckdb.HTTPException):
        return StorageUnavailable("The dataset's files could not be read from the object store; try again later.")
    return QueryError(engine_error_message(exc))


def engine_error_message(exc: duckdb.Error) -> str:
    """A safe one-line message for a DuckDB error caused by a user's query (no store paths)."""
    first = str(exc).splitlines()[0]
    # DuckDB names files in some messages; never show store paths.
    if "/" in first and ("parquet" in first or "No files found" in first):
        return "The query could not read the dataset's files."
    return f"The query was refused by the engine: {first}"


def facet_counts(
    cur: duckdb.DuckDBPyConnection, schema: TableSchema, uris: list[str], request: RecordsRequest,
    facets: list[str], facet_limit: int, time_limit_ms: int,
) -> list[dict[str, Any]]:
    """Values and counts of categorical fields, under the request's filters."""
    for name in facets:
        if name not in schema.names or schema.field(name).is_geometry:
            raise QueryError(f"Cannot facet on '{name}'. Facet fields: "
                             f"{', '.join(f.name for f in schema.fields if not f.is_geometry)}.",
                             details={"parameter": "facet"})
    compiler = Compiler(schema)
    filters = compile_filters(compiler, request, schema)
    where = f" WHERE {' AND '.join(filters)}" if filters else ""
    out = []
    try:
        with deadline(cur, time_limit_ms):
            kept = pruning.surviving_parts(cur, uris, compiler.part_tests, compiler.params)
            files = [uri for uri in uris if uri in kept] or uris[:1]
            for name in facets:
                col = ident(name)
                # a datetime as the records write it (instants with Z), so it can be refined on
                text = iso_timestamp(col) if schema.field(name).type == "datetime" else f"{col}::VARCHAR"
                sql = (f"SELECT {text} AS v, count(*) AS n FROM {parquet_scan(files)}{where} "
                       f"GROUP BY 1 ORDER BY n DESC, v LIMIT {int(facet_limit)}")
                rows = cur.execute(sql, _used(sql, compiler.params)).fetchall()
                out.append({"name": name, "facets": [{"value": v, "count": n} for v, n in rows]})
    except duckdb.Error as exc:
        if isinstance(exc, duckdb.InterruptException):
            raise
        raise engine_error(exc) from exc
    return out


def default_facets(schema: TableSchema) -> list[str]:
    """Fields worth faceting by default: text and booleans, except a single-field primary key."""
    key = schema.primary_key
    unique = key if len(key) == 1 else ()
    return [f.name for f in schema.fields if f.type in ("string", "boolean") and f.name not in unique and not f.unique]
