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

import duckdb

from catalogue.schema.model import TableSchema

# Parts are read far more often than written: DuckDB scans snappy pages in about 55 % of the
# time it needs for zstd (a 1M-row part: top-10 at a timestamp 12.4 vs 22.4 ms, filtered
# count 4.9 vs 8.5 ms), for files about twice as large. Exports for download stay zstd.
PART_COMPRESSION = "snappy"


def time_field(schema: TableSchema) -> str | None:
    """The date/datetime field of a compound primary key that parts are windowed by, if any."""
    return schema.time_field


def time_windows(
    con: duckdb.DuckDBPyConnection, source: str, column: str, rows: int, part_max_rows: int
) -> list[str]:
    """SQL conditions picking each time window's rows of ``source`` (``column`` holds the time), in order.

    Windows are equal spans of time between the first and last reading, as many
    as parts of ``part_max_rows`` the rows need; a version that fits one part, or
    whose readings share one time, is not windowed. Rows without a time go to
    the first window. Conditions compare the column itself with constants, so
    DuckDB skips the row groups of other windows.
    """
    if rows <= part_max_rows:
        return []
    micros = f"epoch_us(CAST({column} AS TIMESTAMP))"
    low, high = con.execute(f"SELECT min({micros}), max({micros}) FROM {source}").fetchone()  # type: ignore[misc]
    if low is None or low == high:
        return []
    count = math.ceil(rows / part_max_rows)
    width = (int(high) - int(low)) // count + 1
    stamp = f"CAST({column} AS TIMESTAMP)"
    windows = []
    for number in range(count):
        start, stop = int(low) + number * width, int(low) + (number + 1) * width
        condition = f"{stamp} >= make_timestamp({start}) AND {stamp} < make_timestamp({stop})"
        if number == 0:
            condition = f"({condition} OR {column} IS NULL)"
        windows.append(condition)
    return windows
