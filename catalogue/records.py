"""Records, aggregates and facets over one version, from checked ODSQL parameters.

Paging: ``offset`` + ``limit`` up to a wall (10,000 rows by default, as in
Opendatasoft); beyond it a keyset cursor (``next``) walks any dataset to the
end: it holds the version and the position (part, row in part) of the last
row served, so each page reads only from there on.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import duckdb

from catalogue.changes import parquet_scan
from catalogue.errors import InvalidParameter, QueryError, QueryTimeout
from catalogue.odsql import Compiler
from catalogue.sql_text import ident, literal
from catalogue.table_schema import STORED_TYPES, primary_key

PART_STRIDE = 1 << 40  # position key = part index * stride + row number in the part


@dataclass
class RecordsRequest:
    """The ODSQL parameters of one records request."""

    select: str | None = None
    where: str | None = None
    group_by: str | None = None
    order_by: str | None = None
    limit: int | None = 100  # None: every row (exports)
    offset: int = 0
    refine: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    cursor: str | None = None


@dataclass
class Plan:
    """Rendered SQL for rows and for the total count, with parameters."""

    sql: str
    count_sql: str
    params: dict[str, Any]
    keyed: bool  # rows carry their position (part file, row number) for the cursor
    parts: list[str] = field(default_factory=list)
    columns: list[tuple[str, str]] | None = None  # (name, DuckDB type) when known without binding


@contextmanager
def deadline(cur: duckdb.DuckDBPyConnection, time_limit_ms: int) -> Iterator[None]:
    """Interrupt the cursor's query when it runs past ``time_limit_ms``."""
    fired = threading.Event()

    def _stop() -> None:
        fired.set()
        cur.interrupt()

    timer = threading.Timer(time_limit_ms / 1000, _stop)
    timer.start()
    try:
        yield
    except duckdb.InterruptException as exc:
        raise QueryTimeout(f"The query took longer than {time_limit_ms} ms and was stopped. "
                           "Narrow it with where, or use the exports for whole datasets.") from exc
    finally:
        timer.cancel()


def encode_cursor(version: int, key: int) -> str:
    """An opaque token for the position after ``key`` in ``version``."""
    raw = json.dumps({"v": version, "k": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[int, int]:
    """(version, key) from a cursor token; InvalidParameter if it is not one of ours."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(data["v"]), int(data["k"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise InvalidParameter("The cursor is not valid; start again without 'cursor' and follow links.next.",
                               details={"parameter": "cursor"}) from exc


def _filters(compiler: Compiler, request: RecordsRequest, schema: dict[str, Any]) -> list[str]:
    fields = {f["name"]: f for f in schema["fields"]}
    out = []
    if request.where:
        out.append(f"({compiler.where(request.where)})")
    for kind, items in (("refine", request.refine), ("exclude", request.exclude)):
        for item in items:
            name, sep, value = item.partition(":")
            if not sep or name not in fields:
                raise QueryError(f"{kind} takes field:value with a field of the dataset; got '{item}'.",
                                 details={"parameter": kind})
            stored = STORED_TYPES[fields[name].get("type", "string")]
            if stored == "GEOMETRY":
                raise QueryError(f"{kind} cannot filter the geometry field '{name}'.", details={"parameter": kind})
            param = f"f{len(compiler.params) + 1}"
            compiler.params[param] = value
            op = "=" if kind == "refine" else "IS DISTINCT FROM"
            out.append(f"{ident(name)} {op} TRY_CAST(${param} AS {stored})")
    return out


def plan_records(request: RecordsRequest, schema: dict[str, Any], uris: list[str], version: int) -> Plan:
    """Check every parameter and render the rows and count queries."""
    compiler = Compiler(schema)
    filters = _filters(compiler, request, schema)
    grouped = bool(request.group_by)
    groups = compiler.select_list(request.group_by, "group_by") if request.group_by else []
    selected = compiler.select_list(request.select) if request.select else []
    only_aggregates = bool(selected) and all(agg for *_, agg in selected) and not grouped
    keyed = request.limit is not None and not grouped and not only_aggregates and not request.order_by
    if request.cursor and not keyed:
        raise InvalidParameter("cursor works on plain record lists; remove order_by/group_by, or use offset.",
                               details={"parameter": "cursor"})
    scan_uris = uris
    if keyed and request.cursor:
        cursor_version, key = decode_cursor(request.cursor)
        if cursor_version != version:
            raise InvalidParameter(f"This cursor belongs to version {cursor_version}; pass version={cursor_version}.",
                                   details={"parameter": "cursor"})
        # Parts before the cursor's part are not read at all.
        scan_uris = uris[key // PART_STRIDE:]
        compiler.params["cursor_row"] = key % PART_STRIDE
        compiler.params["cursor_file"] = uris[key // PART_STRIDE] if key // PART_STRIDE < len(uris) else ""
        filters.append(CURSOR_FILTER)
    where = f" WHERE {' AND '.join(filters)}" if filters else ""
    if keyed:
        # No ORDER BY: DuckDB keeps insertion order (parts in order, rows in file order), so
        # LIMIT stops the scan early; the position of each row comes along for the cursor.
        compiler.params["scan"] = scan_uris
        scan = "read_parquet($scan, filename=true, file_row_number=true)"
    else:
        scan = parquet_scan(uris)
    if selected:
        columns = [f"{sql} AS {ident(name)}" for sql, name, _ in selected]
    elif grouped:
        columns = [f"{sql} AS {ident(name)}" for sql, name, _ in groups]
    else:
        columns = [ident(f["name"]) for f in schema["fields"]]
        known = [(f["name"], STORED_TYPES[f.get("type", "string")]) for f in schema["fields"]]
    group_sql = f" GROUP BY {', '.join(sql for sql, _, _ in groups)}" if grouped else ""
    order = compiler.order_list(request.order_by) if request.order_by else []
    if keyed:
        columns += ["filename AS __file", "file_row_number AS __row"]
    order_sql = f" ORDER BY {', '.join(order)}" if order else ""
    body = f"SELECT {', '.join(columns)} FROM {scan}{where}{group_sql}"
    if request.limit is None:
        sql = f"{body}{order_sql}"
    else:
        sql = f"{body}{order_sql} LIMIT {int(request.limit)}" + ("" if request.cursor else f" OFFSET {int(request.offset)}")
    if grouped:
        count_sql = f"SELECT count(*) FROM (SELECT 1 FROM {parquet_scan(uris)}{_without_cursor(where)}{group_sql})"
    elif only_aggregates:
        count_sql = "SELECT 1"
    else:
        count_sql = f"SELECT count(*) FROM {parquet_scan(uris)}{_without_cursor(where)}"
    return Plan(sql=sql, count_sql=count_sql, params=compiler.params, keyed=keyed, parts=list(uris),
                columns=None if (selected or grouped) else known)


CURSOR_FILTER = "(filename <> $cursor_file OR file_row_number > $cursor_row)"


def _without_cursor(where: str) -> str:
    """The filters without the cursor's position test (for the total count)."""
    return where.replace(f" AND {CURSOR_FILTER}", "").replace(f" WHERE {CURSOR_FILTER}", "")


def _json_struct(columns: list[tuple[str, str]]) -> str:
    """A struct literal of the output columns, rendered for JSON (GeoJSON, ISO 8601 times)."""
    out = []
    for name, kind in columns:
        col = f"q.{ident(name)}"
        if kind.startswith("GEOMETRY"):
            col = f"ST_AsGeoJSON({col})::JSON"
        elif kind.startswith("TIMESTAMP"):
            col = f"strftime({col}, '%Y-%m-%dT%H:%M:%S')"
        out.append(f"{literal(name)}: {col}")
    return "{" + ", ".join(out) + "}"


def _used(sql: str, params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if f"${k}" in sql}


def run_records(
    cur: duckdb.DuckDBPyConnection, plan: Plan, *, version: int, limit: int, time_limit_ms: int
) -> dict[str, Any]:
    """Execute ``plan``: ``{total_count, results_json, next_cursor}``.

    Rows are rendered to JSON text inside DuckDB and joined, never parsed in Python.
    """
    params = _used(plan.sql, plan.params)
    try:
        with deadline(cur, time_limit_ms):
            columns = plan.columns
            if columns is None:  # computed expressions: ask the engine for their types
                rel = cur.sql(plan.sql, params=params)
                columns = [(n, str(t)) for n, t in zip(rel.columns, rel.types) if n not in ("__file", "__row")]
            position = ", q.__file, q.__row" if plan.keyed else ""
            wrapped = f"SELECT to_json({_json_struct(columns)})::VARCHAR{position} FROM ({plan.sql}) AS q"
            rows = cur.execute(wrapped, params).fetchall()
            (total,) = cur.execute(plan.count_sql, _used(plan.count_sql, plan.params)).fetchone()  # type: ignore[misc]
    except duckdb.Error as exc:
        if isinstance(exc, duckdb.InterruptException):
            raise
        raise QueryError(engine_error_message(exc)) from exc
    next_token = None
    if plan.keyed and len(rows) == limit and rows:
        last = rows[-1]
        next_token = encode_cursor(version, plan.parts.index(last[1]) * PART_STRIDE + last[2])
    return {"total_count": total, "results_json": "[" + ",".join(r[0] for r in rows) + "]", "next_cursor": next_token}


def engine_error_message(exc: duckdb.Error) -> str:
    """A safe one-line message for a DuckDB error caused by a user's query (no store paths)."""
    first = str(exc).splitlines()[0]
    # DuckDB names files in some messages; never show store paths.
    if "/" in first and ("parquet" in first or "No files found" in first):
        return "The query could not read the dataset's files."
    return f"The query was refused by the engine: {first}"


def facet_counts(
    cur: duckdb.DuckDBPyConnection, schema: dict[str, Any], uris: list[str], request: RecordsRequest,
    facets: list[str], facet_limit: int, time_limit_ms: int,
) -> list[dict[str, Any]]:
    """Values and counts of categorical fields, under the request's filters."""
    fields = {f["name"]: f for f in schema["fields"]}
    for name in facets:
        if name not in fields or fields[name].get("type") in ("geopoint", "geojson"):
            raise QueryError(f"Cannot facet on '{name}'. Facet fields: "
                             f"{', '.join(n for n, f in fields.items() if f.get('type') not in ('geopoint', 'geojson'))}.",
                             details={"parameter": "facet"})
    compiler = Compiler(schema)
    filters = _filters(compiler, request, schema)
    where = f" WHERE {' AND '.join(filters)}" if filters else ""
    out = []
    try:
        with deadline(cur, time_limit_ms):
            for name in facets:
                col = ident(name)
                sql = (f"SELECT {col}::VARCHAR AS v, count(*) AS n FROM {parquet_scan(uris)}{where} "
                       f"GROUP BY 1 ORDER BY n DESC, v LIMIT {int(facet_limit)}")
                rows = cur.execute(sql, _used(sql, compiler.params)).fetchall()
                out.append({"name": name, "facets": [{"value": v, "count": n} for v, n in rows]})
    except duckdb.Error as exc:
        if isinstance(exc, duckdb.InterruptException):
            raise
        raise QueryError(engine_error_message(exc)) from exc
    return out


def default_facets(schema: dict[str, Any]) -> list[str]:
    """Fields worth faceting by default: text and booleans, except a single-field primary key."""
    key = primary_key(schema)
    unique = key if len(key) == 1 else []
    return [f["name"] for f in schema["fields"] if f.get("type", "string") in ("string", "boolean")
            and f["name"] not in unique and not f.get("constraints", {}).get("unique")]
