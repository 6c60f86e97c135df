"""Frictionless Table Schemas: checked with frictionless, mapped to DuckDB types."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from catalogue.errors import SchemaError
from catalogue.schema.field_parsing import pattern_regex, reads_offset
from catalogue.schema.sql_text import ident, json_value

if TYPE_CHECKING:
    from catalogue.schema.model import TableSchema

# Table Schema type -> DuckDB type of the stored column.
STORED_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "number": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "datetime": "TIMESTAMP",
    "time": "TIME",
    "year": "INTEGER",
    "geopoint": "GEOMETRY",
    "geojson": "GEOMETRY",
}
GEOMETRY_TYPES = frozenset({"geopoint", "geojson"})
PATTERN_TYPES = frozenset({"date", "datetime", "time"})  # whose format may be a strptime pattern


def check_schema(descriptor: dict[str, Any]) -> dict[str, Any]:
    """Validate a Table Schema descriptor with frictionless and our supported types.

    Returns the descriptor unchanged; raises SchemaError saying what to fix.
    """
    import frictionless  # here, not at import: the read path (queries) never loads it

    try:
        frictionless.Schema.from_descriptor(descriptor)
    except frictionless.FrictionlessException as exc:
        # The summary says only "descriptor is not valid"; the reasons say what to fix.
        invalid = [f"The Table Schema is invalid: {m}" for m in [r.message for r in exc.reasons] or [exc.error.message]]
        raise SchemaError(" ".join(invalid), details={"problems": invalid}) from exc
    fields = descriptor.get("fields") or []
    if not fields:
        raise SchemaError("The Table Schema has no fields; list at least one under 'fields'.")
    # Every problem at once: a publisher fixes the schema in one round, not one error per round.
    problems: list[str] = []
    names = [f["name"] for f in fields]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"Field names must be unique; repeated: {', '.join(duplicates)}.")
    for field in fields:
        kind = field.get("type", "any")
        if kind not in STORED_TYPES:
            problems.append(
                f"Field '{field['name']}' has type '{kind}', which the hub cannot store yet. "
                f"Use one of: {', '.join(sorted(STORED_TYPES))}."
            )
            continue
        pattern = field.get("format", "default")
        if kind in PATTERN_TYPES and pattern not in ("default", "any"):
            try:
                pattern_regex(pattern)
            except ValueError as exc:
                problems.append(f"Field '{field['name']}' has the format '{pattern}': {exc}")
                continue
            if kind != "datetime" and reads_offset(pattern):
                problems.append(f"Field '{field['name']}' has the format '{pattern}': an offset (%z) can only "
                                "be kept by a datetime field.")
    for key in primary_key(descriptor):
        if key not in names:
            problems.append(f"primaryKey names '{key}', which is not a field of the schema.")
    if problems:
        raise SchemaError(" ".join(problems), details={"problems": problems})
    return descriptor


def primary_key(descriptor: dict[str, Any]) -> list[str]:
    """The primary key as a list of field names (Table Schema allows a bare string)."""
    key = descriptor.get("primaryKey") or []
    return [key] if isinstance(key, str) else list(key)


def schema_hash(descriptor: dict[str, Any]) -> str:
    """A stable hash of the schema, for change detection."""
    return hashlib.sha256(json.dumps(descriptor, sort_keys=True).encode()).hexdigest()


def json_columns(schema: TableSchema) -> str:
    """Select list rendering each field for JSON: GeoJSON geometry, ISO 8601 timestamps, finite numbers."""
    return ", ".join(f"{json_value(ident(f.name), f.stored_type)} AS {ident(f.name)}" for f in schema.fields)
