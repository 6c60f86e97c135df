"""Records, aggregates and facets over one version, from checked ODSQL parameters.

Paging: ``offset`` + ``limit`` up to a wall (10,000 rows by default, as in
Opendatasoft); beyond it a keyset cursor (``next``) walks any dataset to the
end: it holds the version and the position (part, row in part) of the last
row served, so each page reads only from there on. Cursors are signed
(:mod:`catalogue.query.cursors`): only one we issued is accepted.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, field, fields, replace
from typing import Any

import duckdb

from catalogue.query import memos, pruning
from catalogue.query.cursors import PART_STRIDE, PROCESS_SECRET, cursor_scope, decode_cursor, encode_cursor
from catalogue.store.changes import parquet_scan
from catalogue.query.deadlines import WATCHDOG
from catalogue.errors import InvalidParameter, QueryError, QueryTimeout
from catalogue.query.odsql import INSTANT_TEXT, Compiler
from catalogue.query.result_cache import PART_ANSWERS, answer_key
from catalogue.schema.sql_text import ident, iso_timestamp, json_value, literal
from catalogue.schema.table_schema import STORED_TYPES, primary_key, schema_hash


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

    def cache_key(self, kind: str, **extra: Hashable) -> tuple[Hashable, ...]:
        """The result-cache key of this request answered as ``kind`` (records, facets), with ``extra`` inputs.

        Derived from every field, so a field added here is never left out of the key (a key missing
        one would serve another request's page). Refine and exclude filters are joined with AND, so
        their order does not change the rows: they are sorted.
        """
        values = tuple(
            (f.name, tuple(sorted(v)) if f.name in ("refine", "exclude") else tuple(v) if isinstance(v, list) else v)
            for f in fields(self) for v in (getattr(self, f.name),))
        return (kind, values, tuple(sorted(extra.items())))


@dataclass
class Plan:
    """Rendered SQL for rows and for the total count, with parameters (shared: never change one)."""

    sql: str
    count_sql: str
    params: dict[str, Any]
    keyed: bool  # rows carry their position (part file, row number) for the cursor
    parts: list[str] = field(default_factory=list)
    part_tests: list[tuple[str, str]] = field(default_factory=list)  # see catalogue.pruning
    columns: list[tuple[str, str]] | None = None  # (name, DuckDB type) when known without binding
    # How the total count is found without a second scan where possible: "window" (an
    # ``__total`` column of the rows query), "known" (``total``), "rows" (the page holds
    # every matching row unless it is full), or "query" (``count_sql``).
    count_from: str = "query"
    total: int | None = None
    offset: int = 0
    cursor_scope: bytes = b""  # what the next cursor is bound to (catalogue.query.cursors)


@contextmanager
def deadline(cur: duckdb.DuckDBPyConnection, time_limit_ms: int) -> Iterator[None]:
    """Interrupt the cursor's query when it runs past ``time_limit_ms``."""
    try:
        with WATCHDOG.watch(cur, time_limit_ms / 1000):
            yield
    except duckdb.InterruptException as exc:
        raise QueryTimeout(f"The query took longer than {time_limit_ms} ms and was stopped. "
                           "Narrow it with where, or use the exports for whole datasets.") from exc


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
            if stored == "TIMESTAMP" and INSTANT_TEXT.search(value):  # an offset names an instant (README, data rules)
                stored = "TIMESTAMPTZ"
            if stored == "GEOMETRY":
                raise QueryError(f"{kind} cannot filter the geometry field '{name}'.", details={"parameter": kind})
            param = f"f{len(compiler.params) + 1}"
            compiler.params[param] = value
            op = "=" if kind == "refine" else "IS DISTINCT FROM"
            out.append(f"{ident(name)} {op} TRY_CAST(${param} AS {stored})")
            if kind == "refine" and fields[name].get("type", "string") in pruning.PRUNABLE:
                value = f"TRY_CAST(${param} AS {stored})"
                compiler.part_tests.append(
                    (name, f"{pruning.stat(name, 'min')} <= {value} AND {value} <= {pruning.stat(name, 'max')}"))
    return out


PLAN_CACHE_SIZE = 1024
_plans: OrderedDict[tuple[Any, ...], Plan] = OrderedDict()
_plans_lock = threading.Lock()


def plan_records(
    request: RecordsRequest, schema: dict[str, Any], uris: list[str], version: int, *, row_count: int | None = None,
    cursor_secret: bytes = PROCESS_SECRET,
) -> Plan:
    """Check every parameter and render the rows and count queries.

    ``row_count`` (the version's rows, from the catalogue) spares the count query of
    an unfiltered page. ``cursor_secret`` checks the request's cursor (the installation's,
    :func:`catalogue.query.cursors.installation_secret`; give ``run_records`` the same). Plans are kept in a small LRU keyed by everything they are made
    of (parsing ODSQL with sqlglot costs about a millisecond); a returned plan is shared,
    so callers never change it (``dataclasses.replace`` makes a variant).
    """
    key = (tuple(tuple(v) if isinstance(v, list) else v for v in astuple(request)), schema_hash(schema),
           tuple(uris), version, row_count, hashlib.sha256(cursor_secret).digest())
    if not memos.on():
        return _plan(request, schema, uris, version, row_count, cursor_secret)
    with _plans_lock:
        plan = _plans.get(key)
        if plan is not None:
            _plans.move_to_end(key)
            return plan
    plan = _plan(request, schema, uris, version, row_count, cursor_secret)
    with _plans_lock:
        _plans[key] = plan
        while len(_plans) > PLAN_CACHE_SIZE:
            _plans.popitem(last=False)
    return plan


def _plan(
    request: RecordsRequest, schema: dict[str, Any], uris: list[str], version: int, row_count: int | None,
    cursor_secret: bytes,
) -> Plan:
    times = [f["name"] for f in schema["fields"] if f.get("type") == "datetime"]
    compiler = Compiler(schema, after_epoch=pruning.after_epoch(uris, times) if times else frozenset(),
                        instants=pruning.instants(uris, times) if times else frozenset())
    filters = _filters(compiler, request, schema)
    grouped = bool(request.group_by)
    groups = compiler.select_list(request.group_by, "group_by") if request.group_by else []
    selected = compiler.select_list(request.select) if request.select else []
    only_aggregates = bool(selected) and all(agg for *_, agg in selected) and not grouped
    keyed = request.limit is not None and not grouped and not only_aggregates and not request.order_by
    if request.cursor and not keyed:
        raise InvalidParameter("cursor works on plain record lists; remove order_by/group_by, or use offset.",
                               details={"parameter": "cursor"})
    scan_uris = list(uris)
    unfiltered = not filters
    start = request.offset
    scope = cursor_scope(list(uris), request.where, request.refine, request.exclude) if keyed else b""
    if keyed and request.cursor:
        key = decode_cursor(request.cursor, version=version, parts=len(uris), scope=scope, secret=cursor_secret)
        # Parts before the cursor's part are not read at all.
        scan_uris = uris[key // PART_STRIDE:]
        compiler.params["cursor_row"] = key % PART_STRIDE
        compiler.params["cursor_file"] = uris[key // PART_STRIDE]
        filters.append(CURSOR_FILTER)
        start = compiler.params["cursor_row"] + 1
    if keyed and unfiltered:
        # Rows come in part order, so a page needs only the parts up to its last row.
        scan_uris = _leading_parts(scan_uris, start + int(request.limit or 0))
    where = f" WHERE {' AND '.join(filters)}" if filters else ""
    # The files are parameters, so run_records can hand over only the parts that may match.
    compiler.params["scan"] = scan_uris
    compiler.params["parts"] = list(uris)
    if keyed:
        # No ORDER BY: DuckDB keeps insertion order (parts in order, rows in file order), so
        # LIMIT stops the scan early; the position of each row comes along for the cursor.
        scan = "read_parquet($scan, filename=true, file_row_number=true)"
    else:
        scan = "read_parquet($scan)"
    if selected:
        columns = [f"{sql} AS {ident(name)}" for sql, name, _ in selected]
    elif grouped:
        columns = [f"{sql} AS {ident(name)}" for sql, name, _ in groups]
    else:
        columns = [ident(f["name"]) for f in schema["fields"]]
        known = [(f["name"], STORED_TYPES[f.get("type", "string")]) for f in schema["fields"]]
    group_sql = f" GROUP BY {', '.join(compiler.group_key(sql) for sql, _, _ in groups)}" if grouped else ""
    order = compiler.order_list(request.order_by) if request.order_by else []
    if keyed:
        columns += ["filename AS __file", "file_row_number AS __row"]
    order_sql = f" ORDER BY {', '.join(order)}" if order else ""
    count_from = _count_source(request, grouped, only_aggregates, bool(filters), row_count)
    if count_from == "window":
        # Counted after grouping/filtering and before LIMIT, in the same scan.
        columns.append("count(*) OVER () AS __total")
    body = f"SELECT {', '.join(columns)} FROM {scan}{where}{group_sql}"
    if request.limit is None:
        sql = f"{body}{order_sql}"
    else:
        sql = f"{body}{order_sql} LIMIT {int(request.limit)}" + ("" if request.cursor else f" OFFSET {int(request.offset)}")
    if grouped:
        count_sql = f"SELECT count(*) FROM (SELECT 1 FROM read_parquet($parts){_without_cursor(where)}{group_sql})"
    elif only_aggregates:
        count_sql = "SELECT 1"
    else:
        count_sql = f"SELECT count(*) FROM read_parquet($parts){_without_cursor(where)}"
    return Plan(sql=sql, count_sql=count_sql, params=compiler.params, keyed=keyed, parts=list(uris),
                columns=None if (selected or grouped) else known, count_from=count_from, part_tests=compiler.part_tests,
                total=1 if only_aggregates else row_count, offset=request.offset, cursor_scope=scope)


def _leading_parts(uris: list[str], rows: int) -> list[str]:
    """The first of ``uris`` that together hold at least ``rows`` rows (all of them if a count is unknown)."""
    held = 0
    for number, uri in enumerate(uris):
        found = pruning.part_rows(uri)
        if found is None:
            return uris
        held += found
        if held >= rows:
            return uris[:number + 1]
    return uris


def _count_source(request: RecordsRequest, grouped: bool, only_aggregates: bool, filtered: bool,
                  row_count: int | None) -> str:
    """Where the total count of a page comes from (see ``Plan.count_from``)."""
    if request.limit is None:  # exports: no count
        return "query"
    if only_aggregates:
        return "known"
    if grouped:
        # The groups are built in full anyway; counting them is one more window over them.
        return "window"
    if not filtered and row_count is not None:
        return "known"
    # Not a window here: it would hold every matching row with all its columns (for a broad
    # filter far more than a second, narrow count scan costs).
    return "rows"


CURSOR_FILTER = "(filename <> $cursor_file OR file_row_number > $cursor_row)"


def _without_cursor(where: str) -> str:
    """The filters without the cursor's position test (for the total count)."""
    return where.replace(f" AND {CURSOR_FILTER}", "").replace(f" WHERE {CURSOR_FILTER}", "")


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
    cursor_secret: bytes = PROCESS_SECRET,
) -> dict[str, Any]:
    """Execute ``plan``: ``{total_count, results_json, next_cursor}`` (signed with ``cursor_secret``).

    Rows are rendered to JSON text inside DuckDB and joined, never parsed in Python.
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
            wrapped = f"SELECT to_json({_json_struct(columns)})::VARCHAR{extra} FROM ({plan.sql}) AS q"
            rows = cur.execute(wrapped, params).fetchall()
            total = _total(cur, plan, rows, limit)
    except duckdb.Error as exc:
        if isinstance(exc, duckdb.InterruptException):
            raise
        raise QueryError(engine_error_message(exc)) from exc
    next_token = None
    if plan.keyed and len(rows) == limit and rows:
        last = rows[-1]
        next_token = encode_cursor(version, plan.parts.index(last[1]) * PART_STRIDE + last[2],
                                   scope=plan.cursor_scope, secret=cursor_secret)
    return {"total_count": total, "results_json": "[" + ",".join(r[0] for r in rows) + "]", "next_cursor": next_token}


def prune(cur: duckdb.DuckDBPyConnection, plan: Plan) -> Plan:
    """``plan`` reading only the parts whose statistics admit its filters (see catalogue.pruning)."""
    if not plan.part_tests or len(plan.parts) < 2:
        return plan
    keep = pruning.surviving_parts(cur, plan.parts, plan.part_tests, plan.params)
    params = dict(plan.params)
    for name in ("scan", "parts"):
        files = [uri for uri in params[name] if uri in keep]
        # read_parquet needs a file; one whose ranges exclude the filter yields no rows.
        params[name] = files or params[name][:1]
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
            kept = pruning.surviving_parts(cur, uris, compiler.part_tests, compiler.params)
            files = [uri for uri in uris if uri in kept] or uris[:1]
            for name in facets:
                col = ident(name)
                # a datetime as the records write it (instants with Z), so it can be refined on
                text = iso_timestamp(col) if fields[name].get("type") == "datetime" else f"{col}::VARCHAR"
                sql = (f"SELECT {text} AS v, count(*) AS n FROM {parquet_scan(files)}{where} "
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
