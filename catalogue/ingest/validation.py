"""Column-wise validation of a delivery against its Table Schema.

The delivery arrives in record batches of text columns (or of columns the
reader could already type exactly); per batch, one DuckDB pass parses every
column and tags each cell that breaks its type or a constraint. Uniqueness
and the primary key are checked with window functions at the end. The outcome
is a typed temp table (read in primary-key order) and a Frictionless
validation report built from frictionless' own error classes, so the report
reads like ``frictionless validate`` output.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from frictionless import Report, ReportTask, errors

from catalogue.ingest.tables import ERRRAW, TYPED
from catalogue.schema.field_parsing import offset_expression, parse_expression, type_note, zoned_pattern
from catalogue.schema.sql_text import ident, literal, literal_list
from catalogue.schema.model import Field, TableSchema

ROW = "__row"  # 0-based position of the row in the delivery
RAW = "__raw"  # the batch being typed (a registered Arrow batch, this module's own)
FIRST_DATA_ROW = 2  # Frictionless numbers the header as row 1

# A constraint bound of a datetime field is read as ISO 8601, an offset converted to UTC.
ISO_DATETIME = Field.of({"name": "bound", "type": "datetime"})


@dataclass
class Validated:
    """The outcome of validating one delivery."""

    valid: bool
    report: dict[str, Any]
    error_count: int
    rows: int
    # SQL reading the typed rows in primary-key order from a temp table in the same
    # connection; None when invalid. Call ``discard_typed`` when done with it.
    relation: str | None = None
    # The parts of ``relation``, for a layout that sorts by something before the key
    # (``catalogue.layout``): its select list, the typed column of each field, and the
    # key order (ending with the delivery's row number, so the order is total).
    select: str = ""
    columns: dict[str, str] = dataclasses.field(default_factory=dict)
    key_order: list[str] = dataclasses.field(default_factory=list)


def discard_typed(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the temp tables a validation left in ``con``."""
    con.execute(f"DROP TABLE IF EXISTS {TYPED}; DROP TABLE IF EXISTS {ERRRAW}")


def constraint_checks(field: Field, raw: str, typed: str, in_key: bool) -> list[tuple[str, str, str]]:
    """(tag, SQL condition that marks a bad cell, frictionless note) per constraint."""
    constraints = field.constraints
    kind = field.stored_type
    checks: list[tuple[str, str, str]] = []
    if constraints.get("required") or in_key:
        checks.append(("required", f"{raw} IS NULL", 'constraint "required" is "True"'))
    for name, op in (("minimum", "<"), ("maximum", ">")):
        if name in constraints and kind != "GEOMETRY":
            bound = f"CAST({literal(str(constraints[name]))} AS {kind})"
            if kind == "TIMESTAMP":  # an offset in the bound counts, as it does in the values (held in UTC)
                bound = parse_expression(literal(str(constraints[name])), ISO_DATETIME)
            checks.append((name, f"{typed} {op} {bound}", f'constraint "{name}" is "{constraints[name]}"'))
    for name, op in (("minLength", "<"), ("maxLength", ">")):
        if name in constraints:
            checks.append((name, f"length({raw}) {op} {int(constraints[name])}", f'constraint "{name}" is "{constraints[name]}"'))
    if "pattern" in constraints:
        checks.append(
            ("pattern", f"NOT regexp_full_match({raw}, {literal(constraints['pattern'])})",
             f'constraint "pattern" is "{constraints["pattern"]}"')
        )
    if "enum" in constraints:
        values = [str(v) for v in constraints["enum"]]
        target = raw if kind == "VARCHAR" else typed
        listed = literal_list(values) if kind == "VARCHAR" else "(" + ", ".join(f"CAST({literal(v)} AS {kind})" for v in values) + ")"
        checks.append(("enum", f"{target} NOT IN {listed}", f'constraint "enum" is "{values}"'))
    return checks


@dataclass(frozen=True)
class _Columns:
    """How a delivery's columns meet the schema's fields (every name validation writes into SQL is its own)."""

    labels: list[str]  # as delivered
    fields: list[Field]
    key: list[str]
    missing_values: list[str]
    absent: list[int]  # fields the delivery lacks (read as all-NULL columns)
    columns: list[str]  # names of the scratch columns: delivered by position, then the absent ones
    sources: list[str]  # the scratch column each field is read from
    error_columns: list[str]  # e<i>: the error tag of field i

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]


def validate_delivery(
    con: duckdb.DuckDBPyConnection,
    raw: pa.Table | Iterable[pa.RecordBatch],
    schema: TableSchema,
    *,
    name: str,
    place: str,
    max_errors: int = 1000,
    labels: list[str] | None = None,
    held: dict[str, bool] | None = None,
) -> Validated:
    """Validate a delivery against ``schema``, batch by batch.

    ``raw`` holds text columns, or columns the reader already typed exactly; it
    is a table or a stream of record batches (then ``labels`` names the
    delivered columns). Typed rows accumulate in a DuckDB temp table, which
    spills to disk under the connection's memory limit, so a delivery of any
    size is checked in bounded memory. ``held``: per datetime field, whether
    the version this delivery is appended to stores it as instants
    (``stored_instants``); the delivery must keep to it.

    The steps: match the header to the fields, type every batch into ``TYPED``,
    collect the cell and row errors, then either the typed rows' relation or a
    discarded table, and the Frictionless report.
    """
    started = time.perf_counter()
    if isinstance(raw, pa.Table):
        labels, raw = raw.column_names, raw.to_batches() or [pa.RecordBatch.from_pylist([], schema=raw.schema)]
    assert labels is not None, "labels are required with a stream of batches"
    found, layout = _match_header(schema, labels)
    # Per ISO datetime field, whether its first readable value carries an offset, and its row:
    # the delivery holds the whole field to that (README, data rules).
    zones: dict[int, tuple[bool, int | None]] = {
        i: (held[f.name], None) for i, f in enumerate(layout.fields)
        if held and f.name in held and offset_expression("x", f) is not None}
    try:
        rows, notes = _type_batches(con, _with_empty_fallback(raw, labels), layout, zones, max_errors)
        total = len(found) + _count_cell_errors(con, layout)
        total += _listed_errors(con, layout, notes, max_errors, found)
    except BaseException:
        discard_typed(con)
        raise
    valid = total == 0
    outcome = Validated(valid=valid, report={}, error_count=total, rows=rows)
    if valid:
        outcome = _typed_relation(outcome, layout, zones)
    else:
        discard_typed(con)
    outcome.report = _report(name, place, layout, found, total, rows, max_errors, started)
    return outcome


def _match_header(schema: TableSchema, labels: list[str]) -> tuple[list[errors.Error], _Columns]:
    """The header's label errors, and where each field is read from."""
    fields = list(schema.fields)
    found, delivered = _header_errors(fields, labels)
    absent = [i for i, source in enumerate(delivered) if source is None]
    return found, _Columns(
        labels=labels, fields=fields, key=list(schema.primary_key),
        missing_values=list(schema.missing_values),
        absent=absent,
        columns=[_column(j) for j in range(len(labels))] + [_absent(i) for i in absent],
        sources=[_absent(i) if source is None else source for i, source in enumerate(delivered)],
        error_columns=[ident(f"e{i}") for i in range(len(fields))],
    )


def _type_batches(
    con: duckdb.DuckDBPyConnection, batches: Iterable[pa.RecordBatch], layout: _Columns,
    zones: dict[int, tuple[bool, int | None]], max_errors: int,
) -> tuple[int, dict[str, str]]:
    """Type every batch into ``TYPED`` (one error tag per cell) and keep the delivered text of the first
    ``max_errors`` rows with errors in ``ERRRAW``: (rows read, the report's note per field and tag).

    ``zones`` gains the kind of each ISO datetime field as its first readable value appears.
    """
    rows = 0
    notes: dict[str, str] = {}
    kept_columns = ", ".join([ident(ROW)] + [f"CAST({ident(_column(j))} AS VARCHAR) AS {ident(_column(j))}"
                                             for j in range(len(layout.labels))])
    any_error = " OR ".join(f"{c} IS NOT NULL" for c in layout.error_columns) or "false"
    for batch in batches:
        # Columns are named by position: delivered labels may repeat, be blank or clash
        # with our own names, and none of them is ever written into SQL.
        arrays = [*batch.columns, *[pa.nulls(batch.num_rows, pa.string()) for _ in layout.absent],
                  pa.array(np.arange(rows, rows + batch.num_rows, dtype=np.int64))]
        batch = pa.RecordBatch.from_arrays(arrays, names=[*layout.columns, ROW])
        con.register(RAW, batch)
        try:
            zones |= _first_zones(con, layout.fields, layout.sources, layout.missing_values, zones)
            typed_sql, notes = _typing_sql(layout.fields, layout.sources, layout.key, layout.missing_values,
                                           batch.schema, zones)
            if rows == 0:
                con.execute(f"CREATE OR REPLACE TABLE {TYPED} AS {typed_sql}")
                con.execute(f"CREATE OR REPLACE TABLE {ERRRAW} AS SELECT {kept_columns} FROM {RAW} WHERE false")
            else:
                con.execute(f"INSERT INTO {TYPED} {typed_sql}")
            con.execute(
                f"INSERT INTO {ERRRAW} SELECT {kept_columns} FROM {RAW} WHERE {ROW} IN "
                f"(SELECT {ROW} FROM {TYPED} WHERE {ROW} >= {rows} AND ({any_error}) ORDER BY {ROW} "
                f"LIMIT greatest(0, {int(max_errors)} - (SELECT count(*) FROM {ERRRAW})))"
            )
        finally:
            con.unregister(RAW)
        rows += batch.num_rows
    return rows, notes


def _count_cell_errors(con: duckdb.DuckDBPyConnection, layout: _Columns) -> int:
    """How many cells of ``TYPED`` carry an error tag."""
    counts = con.execute(
        "SELECT " + ", ".join(f"count({c})" for c in layout.error_columns) + f" FROM {TYPED}"
    ).fetchone()
    return sum(counts or [])


def _listed_errors(
    con: duckdb.DuckDBPyConnection, layout: _Columns, notes: dict[str, str], max_errors: int,
    found: list[errors.Error],
) -> int:
    """Append to ``found`` the first ``max_errors`` cell errors and the repeated keys and unique values;
    return how many repeats there are (the cell errors are counted by ``_count_cell_errors``)."""
    fields, labels, names = layout.fields, layout.labels, layout.names
    cell_errors = con.execute(
        f"SELECT {ROW}, CAST(substr(field, 2) AS INTEGER) AS i, tag FROM "
        f"(UNPIVOT {TYPED} ON {', '.join(layout.error_columns)} INTO NAME field VALUE tag) "
        f"ORDER BY {ROW}, i LIMIT {int(max_errors)}"
    ).fetchall()
    row_errors = _duplicate_rows(con, fields, layout.key, max_errors)
    wanted = sorted({row for row, *_ in cell_errors} | {row for _, dup_rows, _ in row_errors for row in dup_rows})
    cells = _raw_rows(con, labels, names, wanted)
    for row, i, tag in cell_errors:
        field = fields[i]
        error_class = errors.TypeError if tag in ("type", "zone") else errors.ConstraintError
        found.append(error_class(
            note=notes[f"{i}:{tag}"], cells=cells[row], row_number=row + FIRST_DATA_ROW,
            cell=cells[row][labels.index(field.name)] if field.name in labels else "",
            field_name=field.name, field_number=i + 1))
    for what, dup_rows, _ in row_errors:
        for row in dup_rows:
            if what == "primary-key":
                found.append(errors.PrimaryKeyError(
                    note=f'the same as a row above for {", ".join(layout.key)}', cells=cells[row],
                    row_number=row + FIRST_DATA_ROW))
            else:
                found.append(errors.UniqueError(
                    note="the same as in a row above", cells=cells[row], row_number=row + FIRST_DATA_ROW,
                    cell=cells[row][labels.index(what)] if what in labels else "",
                    field_name=what, field_number=names.index(what) + 1))
    return sum(count for _, _, count in row_errors)


def _typed_relation(outcome: Validated, layout: _Columns, zones: dict[int, tuple[bool, int | None]]) -> Validated:
    """``outcome`` with the SQL reading the valid, typed rows in primary-key order, and its parts."""
    fields = layout.fields
    stored = {f.name: ident("f" + str(i)) for i, f in enumerate(fields)}
    instants = {fields[i].name for i, (zoned, _) in zones.items() if zoned}
    select = output_select(fields, stored, instants)
    key_order = [stored[k] for k in layout.key] + [ident(ROW)]
    return dataclasses.replace(outcome, relation=f"SELECT {select} FROM {TYPED} ORDER BY {', '.join(key_order)}",
                               select=select, columns=stored, key_order=key_order)


def _report(
    name: str, place: str, layout: _Columns, found: list[errors.Error], total: int, rows: int, max_errors: int,
    started: float,
) -> dict[str, Any]:
    """The Frictionless report: the first ``max_errors`` errors by row, and every error counted."""
    listed = sorted(found, key=lambda e: getattr(e, "row_number", 0) or 0)[:max_errors]
    warnings = [] if total <= len(listed) else [f"{total - len(listed)} more errors were found but not listed."]
    task = ReportTask(
        name=name, type="table", valid=total == 0, place=place, labels=layout.labels, warnings=warnings,
        stats={"errors": total, "warnings": len(warnings), "rows": rows, "fields": len(layout.fields),
               "seconds": round(time.perf_counter() - started, 3)},
        errors=listed,
    )
    report: dict[str, Any] = Report.from_validation(time=round(time.perf_counter() - started, 3),
                                                    tasks=[task]).to_descriptor()
    report["stats"]["errors"] = total
    return report


def output_select(fields: list[Field], stored: dict[str, str], instants: set[str]) -> str:
    """The select list giving each field its published type from the typed columns ``stored``.

    Datetimes are held in UTC while validating; a field of instants (its
    values carry offsets, or its pattern reads one) is published as
    TIMESTAMP WITH TIME ZONE, which Parquet keeps as a timestamp adjusted to
    UTC; a field of local times stays TIMESTAMP.
    """
    out = []
    for field in fields:
        column = stored[field.name]
        if field.name in instants or zoned_pattern(field):
            column = f"timezone('UTC', {column})"
        out.append(f"{column} AS {ident(field.name)}")
    return ", ".join(out)


def _first_zones(
    con: duckdb.DuckDBPyConnection, fields: list[Field], sources: list[str], missing_values: list[str],
    known: dict[int, tuple[bool, int | None]],
) -> dict[int, tuple[bool, int | None]]:
    """For ISO datetime fields whose kind is not ``known`` yet: whether their first readable value in __raw has an offset."""
    pending = [i for i, f in enumerate(fields) if i not in known and offset_expression("x", f) is not None]
    if not pending:
        return {}
    picks = []
    for i in pending:
        raw = f"CASE WHEN {ident(sources[i])} IN {literal_list(missing_values)} THEN NULL ELSE {ident(sources[i])} END"
        readable = f"({parse_expression(raw, fields[i])}) IS NOT NULL"
        picks.append(f"arg_min(struct_pack(z := {offset_expression(raw, fields[i])}, r := {ident(ROW)}), "
                     f"{ident(ROW)}) FILTER (WHERE {readable})")
    first = con.execute(f"SELECT {', '.join(picks)} FROM {RAW}").fetchone() or ()
    return {i: (bool(pick["z"]), int(pick["r"])) for i, pick in zip(pending, first) if pick is not None}


def _zone_note(first_zoned: bool, first_row: int | None) -> str:
    """The report's note for a datetime whose offset (or lack of one) differs from the field's first value.

    ``first_row`` None: the kind is that of the version the delivery is appended to.
    """
    value = "has no offset" if first_zoned else "has an offset"
    if first_row is None:
        where = f"where the version it is appended to holds {'instants' if first_zoned else 'local times'}"
    else:
        where = f"where the field's first value (row {first_row + FIRST_DATA_ROW}) {'has one' if first_zoned else 'has none'}"
    return (f'type is "datetime/default": the value {value} {where}; a datetime field holds either instants '
            "(every value with an offset or Z) or local times (none)")


def stored_instants(con: duckdb.DuckDBPyConnection, part_uri: str, schema: TableSchema) -> dict[str, bool]:
    """Per ISO datetime field of ``schema``: whether the part at ``part_uri`` stores it as instants."""
    names = [f.name for f in schema.fields if offset_expression("x", f) is not None]
    if not names:
        return {}
    described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({literal(part_uri)})").fetchall()
    kinds = {row[0]: row[1] for row in described}
    return {name: kinds[name] == "TIMESTAMP WITH TIME ZONE" for name in names if name in kinds}


def _column(position: int) -> str:
    """The name validation gives the delivered column at ``position`` (0-based)."""
    return f"__c{position}"


def _absent(index: int) -> str:
    """The name of the all-NULL column standing in for field ``index``, which the delivery lacks."""
    return f"__a{index}"


def _header_errors(fields: list[Field], labels: list[str]) -> tuple[list[errors.Error], list[str | None]]:
    """Label errors of the header, and the column each field is read from (None: not delivered).

    Every field must be present; unknown columns are reported, not dropped
    silently. A blank label or one repeating an earlier label is an error of
    its own (which column would the field be?); the field is read from the
    label's first column, so its cells are still checked for the report.
    """
    names = [f.name for f in fields]
    first: dict[str, int] = {}
    for position, label in enumerate(labels):
        first.setdefault(label, position)
    found: list[errors.Error] = []
    sources: list[str | None] = []
    for number, name in enumerate(names, start=1):
        if name in first:
            sources.append(_column(first[name]))
        else:
            sources.append(None)
            found.append(errors.MissingLabelError(
                note="", labels=labels, row_numbers=[1], label="", field_name=name, field_number=number))
    for number, label in enumerate(labels, start=1):
        common: dict[str, Any] = {"labels": labels, "row_numbers": [1], "label": label, "field_number": number}
        if not label.strip():
            found.append(errors.BlankLabelError(
                note="give the column a name from the schema or remove it", field_name="", **common))
        elif first[label] != number - 1:
            found.append(errors.DuplicateLabelError(
                note=f'at position "{first[label] + 1}"; each label may appear once', field_name=label, **common))
        elif label not in names:
            found.append(errors.ExtraLabelError(note="", field_name="", **common))
    return found, sources


def _with_empty_fallback(batches: Iterable[pa.RecordBatch], labels: list[str]) -> Iterator[pa.RecordBatch]:
    """The batches, or one empty text batch when the delivery has a header and no rows."""
    seen = False
    for batch in batches:
        seen = True
        yield batch
    if not seen:
        yield pa.RecordBatch.from_pylist([], schema=pa.schema([(label, pa.string()) for label in labels]))


def _typing_sql(
    fields: list[Field], sources: list[str], key: list[str], missing_values: list[str],
    raw_schema: pa.Schema, zones: dict[int, tuple[bool, int | None]],
) -> tuple[str, dict[str, str]]:
    """SELECT over __raw giving each field typed (f<i>) and its error tag (e<i>); field i is read from sources[i].

    A datetime field with a kind in ``zones`` tags the values of the other kind ('zone').
    """
    typed_columns = {fields[i].name for i, source in enumerate(sources)
                     if not pa.types.is_string(raw_schema.field(source).type)}
    inner, outer = [ident(ROW)], [ident(ROW)]
    notes: dict[str, str] = {}
    for i, field in enumerate(fields):
        column = ident(sources[i])
        raw_i, typed_i = f"__r{i}", f"__t{i}"
        if field.name in typed_columns:  # parsed exactly by the reader; missing values are already NULL
            inner.append(f"CAST({column} AS VARCHAR) AS {raw_i}")
            inner.append(f"{column} AS __v{i}")
        else:
            inner.append(f"CASE WHEN {column} IN {literal_list(missing_values)} THEN NULL ELSE {column} END AS {raw_i}")
        checks = [("type", f"{raw_i} IS NOT NULL AND {typed_i} IS NULL", type_note(field))]
        if i in zones:
            zoned, first = zones[i]
            offset = offset_expression(raw_i, field)
            checks.append(("zone", f"{'NOT ' if zoned else ''}({offset})", _zone_note(zoned, first)))
        checks += constraint_checks(field, raw_i, typed_i, field.name in key)
        cases = " ".join(f"WHEN {cond} THEN {literal(tag)}" for tag, cond, _ in checks)
        notes.update({f"{i}:{tag}": note for tag, _, note in checks})
        outer.append(f"{typed_i} AS {ident('f' + str(i))}")
        outer.append(f"CASE {cases} END AS {ident('e' + str(i))}")
    typed_inner = ", ".join(
        ["*"] + [f"{f'__v{i}' if field.name in typed_columns else parse_expression(f'__r{i}', field)} AS __t{i}"
                 for i, field in enumerate(fields)]
    )
    sql = f"SELECT {', '.join(outer)} FROM (SELECT {typed_inner} FROM (SELECT {', '.join(inner)} FROM {RAW}))"
    return sql, notes


def _duplicate_rows(
    con: duckdb.DuckDBPyConnection, fields: list[Field], key: list[str], limit: int
) -> list[tuple[str, list[int], int]]:
    """Rows repeating the primary key or a unique field: (what, first rows, count)."""
    names = [f.name for f in fields]
    groups: list[tuple[str, list[str]]] = []
    if key:
        groups.append(("primary-key", key))
    groups += [(f.name, [f.name]) for f in fields if f.unique]
    found = []
    for what, columns in groups:
        cols = ", ".join(ident("f" + str(names.index(c))) for c in columns)
        not_null = " AND ".join(f"{ident('f' + str(names.index(c)))} IS NOT NULL" for c in columns)
        dupes = (
            f"SELECT {ROW} FROM (SELECT {ROW}, row_number() OVER (PARTITION BY {cols} ORDER BY {ROW}) AS n "
            f"FROM {TYPED} WHERE {not_null}) WHERE n > 1"
        )
        count = con.execute(f"SELECT count(*) FROM ({dupes})").fetchone()[0]  # type: ignore[index]
        if count:
            rows = [r for (r,) in con.execute(f"{dupes} ORDER BY {ROW} LIMIT {int(limit)}").fetchall()]
            found.append((what, rows, count))
    return found


def _raw_rows(con: duckdb.DuckDBPyConnection, labels: list[str], names: list[str], rows: list[int]) -> dict[int, list[str]]:
    """The delivered cells of the given rows, for the report.

    Rows with cell errors were kept as delivered; a row reported only as a
    duplicate key is shown from its typed values.
    """
    if not rows:
        return {}
    kept = con.execute(
        f"SELECT * FROM {ERRRAW} WHERE {ROW} IN (SELECT unnest(?::BIGINT[]))", [rows]
    ).fetchall()
    cells = {row[0]: ["" if v is None else v for v in row[1:]] for row in kept}
    rest = [r for r in rows if r not in cells]
    if rest:
        typed = ", ".join(
            f"coalesce(CAST({ident('f' + str(names.index(label)))} AS VARCHAR), '')" if label in names else "''"
            for label in labels
        )
        for row in con.execute(
            f"SELECT {ROW}, {typed} FROM {TYPED} WHERE {ROW} IN (SELECT unnest(?::BIGINT[]))", [rest]
        ).fetchall():
            cells[row[0]] = list(row[1:])
    return cells
