"""Planning a records request: its parameters checked and its rows and count queries rendered.

:func:`plan_records` is a short sequence of named steps: compile the clauses
(filters, group_by, select, order_by), find where the page starts (offset or
cursor, and which parts it needs), then render the rows query and the count
query from the same parts. The count query is the rows query's filters without
the cursor's position test, so it is built from the filters, never edited out of
SQL text. Running a plan is :mod:`catalogue.query.records`' job.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field, fields
from typing import Any

from catalogue.errors import InvalidParameter, QueryError
from catalogue.query import by_time, memos, pruning
from catalogue.query.cursors import PART_STRIDE, PROCESS_SECRET, cursor_scope, decode_cursor
from catalogue.query.odsql import INSTANT_TEXT, Compiler
from catalogue.schema.sql_text import ident
from catalogue.schema.model import Field, TableSchema
from catalogue.schema.table_schema import STORED_TYPES


# A count as the compiler renders it: COUNT(*), COUNT("field") or COUNT(DISTINCT "field").
COUNT = re.compile(r'COUNT\((\*|(DISTINCT )?"([^"]|"")*")\)')


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
    # A box filter given as numbers, not ODSQL text: (geometry field, west, south, east, north), as
    # ``in_bbox`` renders it (OGC API items' ``bbox``: parsing the same filter as text cost ~0.6 ms a request).
    bbox: tuple[str, float, float, float, float] | None = None

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
    # Sort order of the parts' by-time copies when they may serve the plan (catalogue.query.by_time), else ().
    time_order: tuple[str, ...] = ()


# The rows after a cursor's position (part file, row number in it); it narrows the page, not the matches.
CURSOR_FILTER = "(filename <> $cursor_file OR file_row_number > $cursor_row)"

Selected = tuple[str, str, bool]  # (rendered SQL, output name, is aggregate), as Compiler.select_list gives


@dataclass(slots=True)
class Clauses:
    """A request's ODSQL clauses, checked against the schema and rendered."""

    compiler: Compiler  # holds the parameters and part tests the clauses need
    filters: list[str]  # where, refine and exclude, joined with AND
    grouped: bool  # the rows are groups (group_by)
    groups: list[Selected]
    selected: list[Selected]
    only_aggregates: bool  # the answer is one row of aggregates over every match
    keyed: bool = False  # a plain record list: paged by position, so a cursor can follow it
    order: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Position:
    """Where a page starts: the parts to read, the number of its first row, what its cursor is bound to."""

    scan: list[str]
    start: int
    after_cursor: bool  # the rows query carries CURSOR_FILTER
    scope: bytes


PLAN_CACHE_SIZE = 1024
_REQUEST_FIELDS = tuple(f.name for f in fields(RecordsRequest))
_plans: OrderedDict[tuple[Any, ...], Plan] = OrderedDict()
_plans_lock = threading.Lock()


def plan_records(
    request: RecordsRequest, schema: TableSchema, uris: list[str], version: int, *, row_count: int | None = None,
    cursor_secret: bytes = PROCESS_SECRET,
) -> Plan:
    """Check every parameter and render the rows and count queries.

    ``row_count`` (the version's rows, from the catalogue) spares the count query of
    an unfiltered page. ``cursor_secret`` checks the request's cursor (the installation's,
    :func:`catalogue.query.cursors.installation_secret`; give ``run_records`` the same).
    Plans are kept in a small LRU keyed by everything they are made of (parsing ODSQL
    with sqlglot costs about a millisecond); a returned plan is shared, so callers never
    change it (``dataclasses.replace`` makes a variant).
    """
    # The request's values, lists as tuples (dataclasses.astuple gave the same, deep-copying each list first).
    values = tuple(tuple(v) if isinstance(v, list) else v for v in map(request.__getattribute__, _REQUEST_FIELDS))
    key = (values, schema.hash, tuple(uris), version, row_count, hashlib.sha256(cursor_secret).digest())
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
    request: RecordsRequest, schema: TableSchema, uris: list[str], version: int, row_count: int | None,
    cursor_secret: bytes,
) -> Plan:
    """The plan made afresh: compile the clauses, place the page, then render both queries from the same parts."""
    clauses = compile_clauses(request, schema, uris)
    position = page_position(request, clauses, uris, version, cursor_secret)
    # The files are parameters, so run_records can hand over only the parts that may match.
    clauses.compiler.params["scan"] = position.scan
    clauses.compiler.params["parts"] = list(uris)
    count_from = _count_source(request, clauses, position, row_count, _one_reading_each(schema))
    return Plan(sql=rows_sql(request, clauses, schema, position, count_from), count_sql=count_sql(clauses),
                params=clauses.compiler.params, keyed=clauses.keyed, parts=list(uris),
                columns=_known_columns(clauses, schema), count_from=count_from,
                part_tests=clauses.compiler.part_tests, total=1 if clauses.only_aggregates else row_count,
                offset=request.offset, cursor_scope=position.scope,
                time_order=by_time.time_order(schema, [name for name, _ in clauses.compiler.part_tests],
                                              bool(clauses.order) or clauses.grouped or clauses.only_aggregates))


def compile_clauses(request: RecordsRequest, schema: TableSchema, uris: list[str]) -> Clauses:
    """The request's clauses, rendered in the order their parameters are numbered in; refuses a misplaced cursor."""
    compiler = _compiler(schema, uris)
    filters = compile_filters(compiler, request, schema)
    groups = compiler.select_list(request.group_by, "group_by") if request.group_by else []
    selected = compiler.select_list(request.select) if request.select else []
    grouped = bool(request.group_by)
    clauses = Clauses(compiler=compiler, filters=filters, grouped=grouped, groups=groups, selected=selected,
                      only_aggregates=bool(selected) and all(agg for *_, agg in selected) and not grouped)
    clauses.keyed = _keyed(request, clauses)
    if request.cursor and not clauses.keyed:
        raise InvalidParameter("cursor works on plain record lists; remove order_by/group_by, or use offset.",
                               details={"parameter": "cursor"})
    # After select, whose aliases order_by may name.
    clauses.order = compiler.order_list(request.order_by) if request.order_by else []
    return clauses


def _compiler(schema: TableSchema, uris: list[str]) -> Compiler:
    """A compiler told what the parts' footers say of the datetime fields (after 1970, stored as instants)."""
    times = [f.name for f in schema.fields if f.type == "datetime"]
    if not times:
        return Compiler(schema)
    # Read from the footers only when a clause asks (a date_trunc of a datetime field): a plain or
    # filtered page never does.
    return Compiler(schema, datetime_facts=lambda: pruning.datetime_facts(uris, times))


def _keyed(request: RecordsRequest, clauses: Clauses) -> bool:
    """Whether the page is a plain record list in stored order, which a cursor can follow (an export is not)."""
    return request.limit is not None and not clauses.grouped and not clauses.only_aggregates and not request.order_by


def compile_filters(compiler: Compiler, request: RecordsRequest, schema: TableSchema) -> list[str]:
    """The request's where, refine and exclude filters as SQL conditions (to be joined with AND)."""
    by_name = {f.name: f for f in schema.fields}
    out = [f"({compiler.where(request.where)})"] if request.where else []
    if request.bbox is not None:
        out.append(compiler.in_box(*request.bbox))
    out += [_field_filter(compiler, "refine", item, by_name) for item in request.refine]
    out += [_field_filter(compiler, "exclude", item, by_name) for item in request.exclude]
    return out


def _field_filter(compiler: Compiler, kind: str, item: str, by_name: dict[str, Field]) -> str:
    """One ``refine`` (equal to) or ``exclude`` (distinct from) ``field:value`` filter; a refine may prune parts."""
    name, sep, value = item.partition(":")
    if not sep or name not in by_name:
        raise QueryError(f"{kind} takes field:value with a field of the dataset; got '{item}'.",
                         details={"parameter": kind})
    field_type = by_name[name].type
    stored = STORED_TYPES[field_type]
    if stored == "TIMESTAMP" and INSTANT_TEXT.search(value):  # an offset names an instant (README, data rules)
        stored = "TIMESTAMPTZ"
    if stored == "GEOMETRY":
        raise QueryError(f"{kind} cannot filter the geometry field '{name}'.", details={"parameter": kind})
    param = f"f{len(compiler.params) + 1}"
    compiler.params[param] = value
    typed = f"TRY_CAST(${param} AS {stored})"
    if kind == "refine":
        compiler.pinned.add(name)
        if field_type in pruning.PRUNABLE:
            compiler.part_tests.append(
                (name, f"{pruning.stat(name, 'min')} <= {typed} AND {typed} <= {pruning.stat(name, 'max')}"))
    return f"{ident(name)} {'=' if kind == 'refine' else 'IS DISTINCT FROM'} {typed}"


def page_position(
    request: RecordsRequest, clauses: Clauses, uris: list[str], version: int, cursor_secret: bytes,
) -> Position:
    """Where the page starts and which parts it reads; a cursor's position becomes parameters of the rows query."""
    if not clauses.keyed:
        return Position(scan=list(uris), start=request.offset, after_cursor=False, scope=b"")
    scope = cursor_scope(list(uris), request.where, request.refine, request.exclude, request.bbox)
    scan, start = list(uris), request.offset
    if request.cursor:
        key = decode_cursor(request.cursor, version=version, parts=len(uris), scope=scope, secret=cursor_secret)
        part, row = divmod(key, PART_STRIDE)
        # Parts before the cursor's part are not read at all.
        scan = uris[part:]
        clauses.compiler.params["cursor_row"] = row
        clauses.compiler.params["cursor_file"] = uris[part]
        start = row + 1
    if not clauses.filters:
        # Rows come in part order, so a page needs only the parts up to its last row.
        scan = _leading_parts(scan, start + int(request.limit or 0))
    return Position(scan=scan, start=start, after_cursor=bool(request.cursor), scope=scope)


def _leading_parts(uris: list[str], rows: int) -> list[str]:
    """The first of ``uris`` that together hold at least ``rows`` rows (all of them if a count is unknown)."""
    if len(uris) < 2:
        return uris  # one part (or none): nothing to leave out, no footer to read
    held = 0
    for number, uri in enumerate(uris):
        found = pruning.part_rows(uri)
        if found is None:
            return uris
        held += found
        if held >= rows:
            return uris[:number + 1]
    return uris


def _one_reading_each(schema: TableSchema) -> str | None:
    """The time field of an (entity, time) primary key: held to one value, it matches one row per entity."""
    time = schema.time_field
    return time if time is not None and len(schema.primary_key) == 2 else None


def _count_source(request: RecordsRequest, clauses: Clauses, position: Position, row_count: int | None,
                  reading_time: str | None) -> str:
    """Where the total count of a page comes from (see ``Plan.count_from``).

    ``reading_time``: the time field of an (entity, time) key (``_one_reading_each``).
    """
    if request.limit is None:  # exports: no count
        return "query"
    if clauses.only_aggregates:
        return "known"
    if clauses.grouped:
        # The groups are built in full anyway; counting them is one more window over them.
        return "window"
    if reading_time in clauses.compiler.pinned and not clauses.keyed:
        # (A keyed page keeps its stored order and stops its scan at the page's end: no window there.)
        # One reading time (the top ten at noon) matches at most one row per entity, few enough to count
        # in the same scan: one query instead of two, and a window before the ORDER BY ... LIMIT keeps
        # DuckDB from scanning the files a second time for the late-materialised top rows (measured
        # on the by-time copy of 1M rows: 1.0 ms against 1.5 ms rows + 0.46 ms count).
        return "window"
    # A page after a cursor counts as filtered here (as it always has): its total is counted.
    if not clauses.filters and not position.after_cursor and row_count is not None:
        return "known"
    # Not a window here: it would hold every matching row with all its columns (for a broad
    # filter far more than a second, narrow count scan costs).
    return "rows"


def rows_sql(request: RecordsRequest, clauses: Clauses, schema: TableSchema, position: Position,
             count_from: str) -> str:
    """The rows query of the page: output columns (with bookkeeping), scan, filters, groups, order and limit."""
    columns = _output_columns(clauses, schema)
    if clauses.keyed:
        # No ORDER BY: DuckDB keeps insertion order (parts in order, rows in file order), so
        # LIMIT stops the scan early; the position of each row comes along for the cursor.
        scan = "read_parquet($scan, filename=true, file_row_number=true)"
        columns += ["filename AS __file", "file_row_number AS __row"]
    else:
        scan = "read_parquet($scan)"
    if count_from == "window":
        # Counted after grouping/filtering and before LIMIT, in the same scan.
        columns.append("count(*) OVER () AS __total")
    filters = clauses.filters + [CURSOR_FILTER] if position.after_cursor else clauses.filters
    order = f" ORDER BY {', '.join(clauses.order)}" if clauses.order else ""
    sql = f"SELECT {', '.join(columns)} FROM {scan}{_where(filters)}{_group_by(clauses)}{order}"
    if request.limit is None:
        return sql
    return f"{sql} LIMIT {int(request.limit)}" + ("" if request.cursor else f" OFFSET {int(request.offset)}")


def count_sql(clauses: Clauses) -> str:
    """The query counting every match (or group): the request's filters, without the page's offset or cursor."""
    if clauses.only_aggregates:
        return "SELECT 1"
    if clauses.grouped:
        return f"SELECT count(*) FROM (SELECT 1 FROM read_parquet($parts){_where(clauses.filters)}{_group_by(clauses)})"
    return f"SELECT count(*) FROM read_parquet($parts){_where(clauses.filters)}"


def _output_columns(clauses: Clauses, schema: TableSchema) -> list[str]:
    """The select list's expressions, else the group_by's, else every field."""
    if clauses.selected or clauses.grouped:
        return [f"{sql} AS {ident(name)}" for sql, name, _ in clauses.selected or clauses.groups]
    return [ident(f.name) for f in schema.fields]


def _known_columns(clauses: Clauses, schema: TableSchema) -> list[tuple[str, str]] | None:
    """(name, DuckDB type) of the output when known without binding the query; None when any is computed.

    Known: every field (no select), a selected field (its stored type) and a count (BIGINT in DuckDB,
    whatever it counts). Anything else is described by DuckDB (``records.output_columns``).
    """
    if not (clauses.selected or clauses.grouped):
        return [(f.name, f.stored_type) for f in schema.fields]
    stored = {ident(f.name): f.stored_type for f in schema.fields}
    known = []
    for sql, name, _ in clauses.selected or clauses.groups:
        kind = stored.get(sql) or ("BIGINT" if COUNT.fullmatch(sql) else None)
        if kind is None:
            return None
        known.append((name, kind))
    return known


def _where(filters: list[str]) -> str:
    return f" WHERE {' AND '.join(filters)}" if filters else ""


def _group_by(clauses: Clauses) -> str:
    if not clauses.grouped:
        return ""
    return f" GROUP BY {', '.join(clauses.compiler.group_key(sql) for sql, _, _ in clauses.groups)}"
