"""Row-level change summaries between two sets of Parquet parts."""

from __future__ import annotations

from typing import Any

import duckdb

from catalogue.sql_text import ident


def parquet_scan(uris: list[str]) -> str:
    """A read_parquet() call over the given files (paths come from the store, not users)."""
    quoted = ", ".join("'" + uri.replace("'", "''") + "'" for uri in uris)
    return f"read_parquet([{quoted}])"


def summarize_changes(
    con: duckdb.DuckDBPyConnection, old: list[str], new: list[str], key: list[str]
) -> dict[str, Any]:
    """Rows added, removed and changed from ``old`` parts to ``new`` parts.

    With a primary key, a row is matched by its key and 'changed' when any
    other value differs; without one, rows are compared whole.
    """
    if not old:
        (rows,) = con.execute(f"SELECT count(*) FROM {parquet_scan(new)}").fetchone()  # type: ignore[misc]
        return {"added": rows, "removed": 0, "changed": 0, "compared_by": "primary key" if key else "row"}
    old_scan, new_scan = parquet_scan(old), parquet_scan(new)
    if key:
        using = ", ".join(ident(k) for k in key)
        added, removed, changed = con.execute(
            f"""
            WITH o AS (SELECT {using}, hash(t) AS h FROM {old_scan} AS t),
                 n AS (SELECT {using}, hash(t) AS h FROM {new_scan} AS t)
            SELECT
              (SELECT count(*) FROM n ANTI JOIN o USING ({using})),
              (SELECT count(*) FROM o ANTI JOIN n USING ({using})),
              (SELECT count(*) FROM n JOIN o USING ({using}) WHERE n.h <> o.h)
            """
        ).fetchone()  # type: ignore[misc]
        return {"added": added, "removed": removed, "changed": changed, "compared_by": "primary key"}
    added, removed = con.execute(
        f"SELECT (SELECT count(*) FROM (FROM {new_scan} EXCEPT ALL FROM {old_scan})),"
        f" (SELECT count(*) FROM (FROM {old_scan} EXCEPT ALL FROM {new_scan}))"
    ).fetchone()  # type: ignore[misc]
    return {"added": added, "removed": removed, "changed": 0, "compared_by": "row"}
