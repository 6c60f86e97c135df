"""Part pruning: hand the engine only the parts whose min/max can hold rows a filter asks for.

Parts are sorted by the primary key, so a filter on its leading field (one
sensor, one lot) matches rows in one or a few parts. DuckDB prunes row groups
inside a file by their statistics, but it still opens every file it is given;
for a point lookup that fixed cost per part dominates. Here each simple
conjunct of the filter (``field op constant``, ``IN``, ``BETWEEN``) becomes a
condition on the parts' ranges, evaluated by DuckDB itself over a small table
of the parts' statistics with the query's own parameters, so types compare
exactly as in the real query. A part without statistics is always kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from sqlglot import exp

from catalogue.query import memos
from catalogue.query.result_cache import PART_ANSWERS, answer_key
from catalogue.schema.model import Field
from catalogue.schema.sql_text import ident, literal
from catalogue.store.s3 import object_filesystem

# Table Schema types whose Parquet statistics order like the values the engine compares.
PRUNABLE = {"string", "integer", "number", "date", "datetime", "time", "year", "boolean"}
MIRROR: dict[type, type] = {exp.GT: exp.LT, exp.GTE: exp.LTE, exp.LT: exp.GT, exp.LTE: exp.GTE, exp.EQ: exp.EQ}
MAX_IN = 100  # longer IN lists are not worth a condition each


def stat(name: str, end: str) -> str:
    """Column of the statistics table holding ``end`` (min or max) of field ``name``."""
    return ident(f"{name}__{end}")


def conditions(tree: exp.Expression, fields: Mapping[str, Field]) -> list[tuple[str, str]]:
    """(field, SQL over the statistics table) per conjunct of a rendered filter that can prune parts."""
    out = []
    for node in _conjuncts(tree):
        found = _condition(node, fields)
        if found:
            out.append(found)
    return out


def pinned(tree: exp.Expression, fields: Mapping[str, Field]) -> set[str]:
    """The fields a rendered filter holds to one value: a top-level conjunct ``field = constant``."""
    out = set()
    for node in _conjuncts(tree):
        found = _comparison(node, fields)
        if found is not None and found[1] is exp.EQ:
            out.add(found[0])
    return out


def _conjuncts(node: exp.Expression) -> list[exp.Expression]:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    return [node]


def _field(node: exp.Expression, fields: Mapping[str, Field]) -> str | None:
    if isinstance(node, exp.Column) and node.name in fields and fields[node.name].type in PRUNABLE:
        return node.name
    return None


def _constant(node: exp.Expression) -> bool:
    return not any(isinstance(n, (exp.Column, exp.Star)) for n in node.walk())


def _comparison(node: exp.Expression, fields: Mapping[str, Field]) -> tuple[str, type, exp.Expression] | None:
    """(field, comparison read field-first, constant) of ``field <op> constant`` or ``constant <op> field``."""
    if type(node) not in MIRROR:
        return None
    left, right, kind = node.this, node.expression, type(node)
    if _field(right, fields) and not _field(left, fields):
        left, right, kind = right, left, MIRROR[kind]
    name = _field(left, fields)
    if name is None or not _constant(right):
        return None
    return name, kind, right


def _condition(node: exp.Expression, fields: Mapping[str, Field]) -> tuple[str, str] | None:
    if type(node) in MIRROR:
        found = _comparison(node, fields)
        if found is None:
            return None
        compared, kind, value = found
        return compared, _range_test(compared, kind, value.sql(dialect="duckdb"))
    if isinstance(node, exp.In) and not node.args.get("query"):
        name = _field(node.this, fields)
        values = node.expressions
        if name is None or not values or len(values) > MAX_IN or not all(_constant(v) for v in values):
            return None
        return name, " OR ".join(f"({_range_test(name, exp.EQ, v.sql(dialect='duckdb'))})" for v in values)
    if isinstance(node, exp.Between):
        name = _field(node.this, fields)
        low, high = node.args.get("low"), node.args.get("high")
        if name is None or low is None or high is None or not (_constant(low) and _constant(high)):
            return None
        return name, (f"{_range_test(name, exp.GTE, low.sql(dialect='duckdb'))} AND "
                      f"{_range_test(name, exp.LTE, high.sql(dialect='duckdb'))}")
    return None


def _range_test(name: str, kind: type, value: str) -> str:
    """Can a part whose ``name`` lies in [min, max] hold a row with ``name kind value``?"""
    low, high = stat(name, "min"), stat(name, "max")
    tests: dict[type, str] = {
        exp.EQ: f"{low} <= {value} AND {value} <= {high}",
        exp.GT: f"{high} > {value}",
        exp.GTE: f"{high} >= {value}",
        exp.LT: f"{low} < {value}",
        exp.LTE: f"{low} <= {value}",
    }
    return tests[kind]


def part_ranges(uri: str, names: Iterable[str] | None = None) -> dict[str, tuple[Any, Any, pa.DataType]]:
    """(min, max, Arrow type) per top-level column of one part (those in ``names``; default: all), from its
    footer (parts never change).

    A column is missing when any row group lacks statistics for it. An object-store part is read through
    the storage opened for its bucket; none (or an unreachable store) gives no ranges: the part is kept.
    Only the statistics of the columns asked for are read (each costs a Python object per row group).
    """
    return _facts(uri, None if names is None else tuple(sorted(set(names))))[1]


def part_rows(uri: str) -> int | None:
    """Rows of one part, from its footer (None when its footer cannot be read)."""
    return _facts(uri, ())[0]


def _facts(uri: str, names: tuple[str, ...] | None) -> tuple[int | None, dict[str, tuple[Any, Any, pa.DataType]]]:
    """With the memos on, every column's facts kept per part (one footer read per part, whatever is asked);
    with them off, the footer read again for only the columns asked for."""
    try:
        if not memos.on():
            return _footer_facts.__wrapped__(uri, names)
        rows, ranges = _footer_facts(uri, None)
        return rows, ranges if names is None else {k: v for k, v in ranges.items() if k in names}
    except _Unreadable:  # not cached: the next query tries again
        return None, {}


class _Unreadable(Exception):
    """An object-store footer that could not be read now."""


@lru_cache(maxsize=8192)
def _footer_facts(uri: str, names: tuple[str, ...] | None) -> tuple[int | None, dict[str, tuple[Any, Any, pa.DataType]]]:
    """(rows, ranges of the columns in ``names``, default all) of one part: its footer is read once for both."""
    if "://" in uri:
        found = object_filesystem(uri)
        if found is None:
            return None, {}
        try:
            meta = pq.read_metadata(found[1], filesystem=found[0])
        except OSError as exc:
            raise _Unreadable(uri) from exc
    else:
        meta = pq.read_metadata(uri)
    arrow = meta.schema.to_arrow_schema()
    out: dict[str, tuple[Any, Any, pa.DataType]] = {}
    for i in range(meta.num_columns):
        path = meta.schema.column(i).path
        if "." in path or path not in arrow.names or meta.num_row_groups == 0 or (names is not None and path not in names):
            continue
        kind = arrow.field(path).type
        lows, highs = [], []
        for group in range(meta.num_row_groups):
            stats = meta.row_group(group).column(i).statistics
            if stats is None or not stats.has_min_max:
                break
            lows.append(stats.min)
            highs.append(stats.max)
        else:
            if pa.types.is_temporal(kind) and not all(hasattr(v, "year") or hasattr(v, "hour") for v in lows + highs):
                continue  # raw integers in the file's unit, not values of the Arrow type: do not guess
            try:
                out[path] = (min(lows), max(highs), kind)
            except TypeError:
                continue
    return int(meta.num_rows), out


EPOCH = datetime(1970, 1, 1)


def after_epoch(uris: list[str] | tuple[str, ...], names: list[str]) -> frozenset[str]:
    """The fields among ``names`` whose every value, in every part, is at or after 1970-01-01.

    From the parts' footers: a part without statistics for a field (or a non-local
    part) rules it out. Lets the query compiler divide epoch microseconds by
    truncation, which equals floor division for values that are not negative.
    """
    return datetime_facts(uris, names)[0]


def instants(uris: list[str] | tuple[str, ...], names: list[str]) -> frozenset[str]:
    """The datetime fields among ``names`` that a part stores as instants (a timestamp with a zone), from the footers."""
    return datetime_facts(uris, names)[1]


def datetime_facts(uris: list[str] | tuple[str, ...], names: list[str]) -> tuple[frozenset[str], frozenset[str]]:
    """(``after_epoch``, ``instants``) of ``names``, each part's footer read once for both.

    With the read memos off every footer read parses the file's footer again, so a
    request planning over datetime fields reads each part once, not once per field and question.
    """
    ranges = [part_ranges(uri, names) for uri in uris]
    after = set()
    for name in names:
        lows = [r.get(name, (None,))[0] for r in ranges]
        if ranges and all(isinstance(low, datetime) and low.tzinfo is None and low >= EPOCH for low in lows):
            after.add(name)
    zoned = frozenset(name for name in names for r in ranges
                      if (facts := r.get(name)) and pa.types.is_timestamp(facts[2]) and facts[2].tz)
    return frozenset(after), zoned


def surviving_parts(
    cur: duckdb.DuckDBPyConnection, uris: list[str], tests: list[tuple[str, str]], params: dict[str, Any]
) -> set[str]:
    """The parts among ``uris`` that may hold matching rows."""
    if len(uris) < 2 or not tests:
        return set(uris)
    names = tuple(sorted({name for name, _ in tests}))
    table, known = (_stats_values if memos.on() else _stats_values.__wrapped__)(tuple(uris), names)
    usable = [sql for name, sql in tests if name in known]
    if not usable:
        return set(uris)
    where = " AND ".join(f"coalesce(({sql}), true)" for sql in usable)
    sql = f"SELECT __i FROM {table} WHERE {where}"
    used = {k: v for k, v in params.items() if f"${k}" in sql}
    key = answer_key("kept parts", sql, used)
    kept = _kept.get(key, frozenset) if key is not None and memos.on() else None
    if kept is None:
        kept = frozenset(i for (i,) in cur.execute(sql, used).fetchall())
        if key is not None:
            _kept.put(key, kept, 8 * len(kept))
    return {uris[i] for i in kept}


# (test SQL over one version's parts, parameter values) -> indexes of the parts kept; the
# parts of a version never change, so the answer never does either.
_kept = PART_ANSWERS


@lru_cache(maxsize=1024)
def _stats_values(uris: tuple[str, ...], names: tuple[str, ...]) -> tuple[str, frozenset[str]]:
    """A VALUES table (``__i``, ``<field>__min``, ``<field>__max``) of the parts' ranges, and the fields in it.

    Inline literals rather than a registered Arrow table: planning over a few VALUES
    rows costs a fraction of a millisecond.
    """
    ranges = [part_ranges(uri, names) for uri in uris]
    known: dict[str, pa.DataType] = {}
    for name in names:
        kinds = {r[name][2] for r in ranges if name in r}
        if len(kinds) == 1:  # parts of differing types (an append after a schema change) are not compared
            kind = kinds.pop()
            if _duck_type(kind):
                known[name] = kind
    columns = ["__i"] + [stat(n, end) for n in known for end in ("min", "max")]
    rows = []
    for i, r in enumerate(ranges):
        cells = [str(i)]
        for name, kind in known.items():
            # A part without statistics for the field gets NULLs: its tests are NULL, so it is kept.
            low, high, _ = r.get(name, (None, None, kind))
            cells += [_literal(low, kind), _literal(high, kind)]
        rows.append("(" + ", ".join(cells) + ")")
    return f"(VALUES {', '.join(rows)}) AS __part_stats({', '.join(columns)})", frozenset(known)


def _duck_type(kind: pa.DataType) -> str | None:
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "VARCHAR"
    if pa.types.is_integer(kind):
        return "BIGINT"
    if pa.types.is_floating(kind):
        return "DOUBLE"
    if pa.types.is_boolean(kind):
        return "BOOLEAN"
    if pa.types.is_timestamp(kind):
        return "TIMESTAMPTZ" if kind.tz else "TIMESTAMP"
    if pa.types.is_date(kind):
        return "DATE"
    if pa.types.is_time(kind):
        return "TIME"
    return None


def _literal(value: Any, kind: pa.DataType) -> str:
    return f"CAST({'NULL' if value is None else literal(str(value))} AS {_duck_type(kind)})"
