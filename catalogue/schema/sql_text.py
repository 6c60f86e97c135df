"""Quoting for the SQL the kernel writes itself from trusted definitions.

User input never goes through here: query parameters are bound, and the
query API parses user expressions into an AST. These helpers quote names and
literals taken from dataset definitions (field names, formats, enums).
"""

from __future__ import annotations

from collections.abc import Sequence


def ident(name: str) -> str:
    """A double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A single-quoted SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def literal_list(values: Sequence[str]) -> str:
    """A parenthesised list of string literals."""
    return "(" + ", ".join(literal(v) for v in values) + ")"


def iso_timestamp(sql: str, *, with_zone: bool | None = None) -> str:
    """ISO 8601 text of a timestamp expression: 'T' between date and time, a fraction of a second where there is one.

    Instants (TIMESTAMP WITH TIME ZONE) are written in UTC with 'Z'; local
    times without. ``with_zone=None`` leaves it to the expression's type, for
    callers that know a field but not how this version stores it (a datetime
    field holds instants or local times, README's data rules): DuckDB folds
    the type test into the one branch at planning, so it costs nothing.
    (``strftime(..., '%S')`` would drop the fraction.)
    """
    zoned = f"replace(CAST(timezone('UTC', {sql}) AS VARCHAR), ' ', 'T') || 'Z'"
    local = f"replace(CAST({sql} AS VARCHAR), ' ', 'T')"
    if with_zone is None:
        return f"CASE WHEN typeof({sql}) = 'TIMESTAMP WITH TIME ZONE' THEN {zoned} ELSE {local} END"
    return zoned if with_zone else local


FLOATS = ("DOUBLE", "FLOAT")  # DuckDB types that hold NaN and infinity


def json_number(sql: str) -> str:
    """A floating-point expression for JSON: NaN and ±infinity, which JSON cannot hold, become null.

    (DuckDB's to_json writes them bare, which JSON.parse refuses; JavaScript's JSON.stringify writes null.)
    """
    return f"CASE WHEN isfinite({sql}) THEN {sql} END"


def json_value(sql: str, kind: str) -> str:
    """An expression of DuckDB type ``kind`` as JSON holds it: GeoJSON geometry, ISO 8601 times, finite numbers."""
    if kind.startswith("GEOMETRY"):
        return f"ST_AsGeoJSON({sql})::JSON"
    if kind.startswith("TIMESTAMP"):
        # (a plain TIMESTAMP may be the schema's word for a field this version holds as instants)
        return iso_timestamp(sql, with_zone=True if "WITH TIME ZONE" in kind else None)
    if kind in FLOATS:
        return json_number(sql)
    return sql
