"""What changed between two versions: counts for every commit, row-level diffs on request.

Rows are matched by primary key when both versions have the same one,
otherwise compared whole; only fields present with the same type in both
versions take part in the comparison, and the schema change is reported.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import duckdb

from catalogue.schema.sql_text import ident
from catalogue.schema.model import TableSchema
from catalogue.schema.table_schema import json_columns


def parquet_scan(uris: list[str]) -> str:
    """A read_parquet() call over the given files (paths come from the store, not users)."""
    quoted = ", ".join("'" + uri.replace("'", "''") + "'" for uri in uris)
    return f"read_parquet([{quoted}])"


def schema_change(old: TableSchema, new: TableSchema) -> dict[str, list[str]]:
    """Fields added, removed, or changed in type from ``old`` to ``new``."""
    before = {f.name: f.type for f in old.fields}
    after = {f.name: f.type for f in new.fields}
    return {
        "added_fields": [n for n in after if n not in before],
        "removed_fields": [n for n in before if n not in after],
        "changed_fields": [n for n in after if n in before and before[n] != after[n]],
    }


def _comparison(old: TableSchema, new: TableSchema) -> tuple[list[str], list[str]]:
    """(common fields, key fields or [] for whole-row matching)."""
    change = schema_change(old, new)
    common = [n for n in old.names if n not in change["removed_fields"] and n not in change["changed_fields"]]
    key = list(new.primary_key)
    if new.primary_key != old.primary_key or not set(key) <= set(common):
        key = []
    return common, key


def _hashed(uris: list[str], common: list[str]) -> str:
    packed = ", ".join(f"{ident(c)} := {ident(c)}" for c in common)
    # An instant and a local time with the same digits hash alike: which columns hold instants
    # goes into the hash too (typeof is folded to a constant per scan).
    zoned = ", ".join(f"typeof({ident(c)}) = 'TIMESTAMP WITH TIME ZONE'" for c in common)
    return f"(SELECT *, hash(struct_pack({packed}, __instants := [{zoned}])) AS __h FROM {parquet_scan(uris)})"


def summarize_changes(
    con: duckdb.DuckDBPyConnection, old: list[str], new: list[str], old_schema: TableSchema,
    new_schema: TableSchema,
) -> dict[str, Any]:
    """Counts of rows added, removed and changed from ``old`` parts to ``new`` parts."""
    common, key = _comparison(old_schema, new_schema)
    compared_by = "primary key" if key else "row"
    if not old:
        (rows,) = con.execute(f"SELECT count(*) FROM {parquet_scan(new)}").fetchone()  # type: ignore[misc]
        return {"added": rows, "removed": 0, "changed": 0, "compared_by": "primary key" if new_schema.primary_key else "row"}
    o, n = _hashed(old, common), _hashed(new, common)
    if key:
        using = ", ".join(ident(k) for k in key)
        sql = (f"WITH o AS {o}, n AS {n} SELECT (SELECT count(*) FROM n ANTI JOIN o USING ({using})), "
               f"(SELECT count(*) FROM o ANTI JOIN n USING ({using})), "
               f"(SELECT count(*) FROM n JOIN o USING ({using}) WHERE n.__h <> o.__h)")
    else:
        sql = (f"WITH o AS {o}, n AS {n} SELECT (SELECT count(*) FROM (SELECT __h FROM n EXCEPT ALL SELECT __h FROM o)), "
               f"(SELECT count(*) FROM (SELECT __h FROM o EXCEPT ALL SELECT __h FROM n)), 0")
    added, removed, changed = con.execute(sql).fetchone()  # type: ignore[misc]
    return {"added": added, "removed": removed, "changed": changed, "compared_by": compared_by}


def _json_rows(con: duckdb.DuckDBPyConnection, source: str, schema: TableSchema, order: str) -> list[dict[str, Any]]:
    sql = f"SELECT to_json(t)::VARCHAR FROM (SELECT {json_columns(schema)} FROM {source} ORDER BY {order}) AS t"
    return [json.loads(r[0]) for r in con.execute(sql).fetchall()]


def diff_versions(
    con: duckdb.DuckDBPyConnection, old: list[str], new: list[str], old_schema: TableSchema,
    new_schema: TableSchema, limit: int,
) -> dict[str, Any]:
    """Rows added, removed and changed (before/after), at most ``limit`` of each, plus counts."""
    common, key = _comparison(old_schema, new_schema)
    o, n = _hashed(old, common), _hashed(new, common)
    con.execute(f"CREATE OR REPLACE TEMP TABLE __o AS SELECT * FROM {o}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE __n AS SELECT * FROM {n}")
    try:
        summary = summarize_changes(con, old, new, old_schema, new_schema)
        if key:
            using = ", ".join(ident(k) for k in key)
            order = using
            added = _json_rows(con, f"(FROM __n ANTI JOIN __o USING ({using}) LIMIT {limit})", new_schema, order)
            removed = _json_rows(con, f"(FROM __o ANTI JOIN __n USING ({using}) LIMIT {limit})", old_schema, order)
            con.execute(f"CREATE OR REPLACE TEMP TABLE __k AS SELECT {using} FROM __n JOIN __o USING ({using}) "
                        f"WHERE __n.__h <> __o.__h ORDER BY {using} LIMIT {limit}")
            before = _json_rows(con, f"(FROM __o SEMI JOIN __k USING ({using}))", old_schema, order)
            after = _json_rows(con, f"(FROM __n SEMI JOIN __k USING ({using}))", new_schema, order)
            changed = [{"before": b, "after": a} for b, a in zip(before, after)]
        else:
            order = "__h"
            added = _json_rows(con, f"(FROM __n WHERE __h IN (SELECT __h FROM __n EXCEPT ALL SELECT __h FROM __o) "
                                    f"ORDER BY __h LIMIT {limit})", new_schema, order)
            removed = _json_rows(con, f"(FROM __o WHERE __h IN (SELECT __h FROM __o EXCEPT ALL SELECT __h FROM __n) "
                                      f"ORDER BY __h LIMIT {limit})", old_schema, order)
            changed = []
    finally:
        con.execute("DROP TABLE IF EXISTS __o; DROP TABLE IF EXISTS __n; DROP TABLE IF EXISTS __k")
    truncated = any(summary[k] > limit for k in ("added", "removed", "changed"))
    return {
        "key": key, "compared_by": summary["compared_by"], "schema": schema_change(old_schema, new_schema),
        "summary": {k: summary[k] for k in ("added", "removed", "changed")},
        "added": added, "removed": removed, "changed": changed, "truncated": truncated, "limit": limit,
    }


def diff_as_csv(diff: dict[str, Any]) -> Iterator[str]:
    """One CSV line per listed change: ``_change`` (added, removed, before, after) and the fields."""
    names: list[str] = []
    for row in diff["added"] + diff["removed"] + [c[s] for c in diff["changed"] for s in ("before", "after")]:
        names += [k for k in row if k not in names]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["_change", *names])
    rows = [("added", r) for r in diff["added"]] + [("removed", r) for r in diff["removed"]]
    for c in diff["changed"]:
        rows += [("before", c["before"]), ("after", c["after"])]
    for kind, row in rows:
        writer.writerow([kind, *(_cell(row.get(n)) for n in names)])
    yield out.getvalue()


def _cell(value: Any) -> str:
    """A value as the CSV export writes it: booleans ``true``/``false``, geometry as WKT, dates as ISO text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict) and "type" in value and ("coordinates" in value or "geometries" in value):
        return geojson_wkt(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _coords(points: list[Any]) -> str:
    return ", ".join(" ".join(_number(c) for c in point) for point in points)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _rings(rings: list[Any]) -> str:
    return ", ".join(f"({_coords(ring)})" for ring in rings)


def geojson_wkt(geometry: dict[str, Any]) -> str:
    """A GeoJSON geometry as WKT, spelt as DuckDB's ``ST_AsText`` spells it (the CSV export's geometry)."""
    kind, coords = geometry["type"], geometry.get("coordinates")
    if kind == "GeometryCollection":
        inner = ", ".join(geojson_wkt(g) for g in geometry["geometries"])
        return f"GEOMETRYCOLLECTION ({inner})" if inner else "GEOMETRYCOLLECTION EMPTY"
    if not coords:
        return f"{kind.upper()} EMPTY"
    body = {
        "Point": lambda: _coords([coords]),
        "LineString": lambda: _coords(coords),
        "Polygon": lambda: _rings(coords),
        "MultiPoint": lambda: _coords(coords),
        "MultiLineString": lambda: _rings(coords),
        "MultiPolygon": lambda: ", ".join(f"({_rings(p)})" for p in coords),
    }[kind]()
    return f"{kind.upper()} ({body})"
