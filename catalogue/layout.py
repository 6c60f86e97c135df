"""How a version's rows are laid out in parts: time windows, sorted by the primary key inside.

A history keyed by (thing, time) is asked two kinds of question: one thing's
readings (a sensor, a day) and everything at or around a time (the top ten at
noon, hourly means over a week). Sorting the whole version by the key serves the
first and makes every part hold every time, so the second reads everything.
So when the primary key has a date or datetime field after its first field,
rows are cut into consecutive time windows of about ``part_max_rows`` rows each,
one window per part, sorted by the key inside the part: a time filter skips
whole parts (``catalogue.pruning``), and a key filter still skips row groups
inside the parts it reads. Other datasets are sorted by the key alone.
"""

from __future__ import annotations

import math
from typing import Any

import duckdb

from catalogue.table_schema import primary_key

BUCKET = "__window"  # column of the sorted rows that numbers the time window (not stored)


def time_field(schema: dict[str, Any]) -> str | None:
    """The date/datetime field of a compound primary key that parts are windowed by, if any."""
    key = primary_key(schema)
    types = {f["name"]: f.get("type", "string") for f in schema["fields"]}
    for name in key[1:]:
        if types.get(name) in ("datetime", "date"):
            return name
    return None


def window_expression(
    con: duckdb.DuckDBPyConnection, source: str, column: str, rows: int, part_max_rows: int
) -> str | None:
    """SQL numbering the time window of each row of ``source`` (``column`` holds the time), or None.

    Windows are equal spans of time between the first and last reading, as many
    as parts of ``part_max_rows`` the rows need; a version that fits one part, or
    whose readings share one time, is not windowed.
    """
    if rows <= part_max_rows:
        return None
    micros = f"epoch_us(CAST({column} AS TIMESTAMP))"
    low, high = con.execute(f"SELECT min({micros}), max({micros}) FROM {source}").fetchone()  # type: ignore[misc]
    if low is None or low == high:
        return None
    windows = math.ceil(rows / part_max_rows)
    width = (int(high) - int(low)) // windows + 1
    return f"coalesce(({micros} - {int(low)}) // {width}, -1)"
