"""Which items pages read the parts' by-space copies (``catalogue.store.by_space``), and their plans moved onto them.

A page filtered by a small box (its part of the data's extent at most ``SMALL_SHARE``) is read
from the copies: their row groups and box columns skip the rows far from the box, and
the few that match are put back in the parts' order (part, then ``__row``) before the
offset and limit, so the page holds the same features in the same order, with the same
cursors, as read from the parts. A large box is not: it matches most rows, which the
parts give in order and stop reading at the page's end, while the copies would have
to sort them all first (a box over the whole extent took 15 times longer from a copy).

The rows query of a records plan is moved by replacing its scan with one of the copies
that gives the columns the plan reads (``filename`` as the part's URI, ``file_row_number``
as ``__row``), so every filter, the cursor's position test and the cursor itself stay as
planned. What is kept in the process: the copies found or written, with their extent,
so a copy is looked up in the store once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

import duckdb

from catalogue.query.planning import Plan
from catalogue.schema.sql_text import ident, literal
from catalogue.store.by_space import COLUMNS, by_space_key, write_by_space
from catalogue.store.storage import Storage

Box = tuple[float, float, float, float]  # west, south, east, north
# Of the extent's width times height: boxes up to this are read from the copies. Measured over 20,000 points
# (CPU a page of up to 1,000): 1/256 of the extent 3.5 ms from the copy against 7.3 from the part, 1/16 9.6
# against 11.9, 1/4 14.1 against 12.1, the whole extent 31 against 14.
SMALL_SHARE = 1 / 16
KNOWN_MAX = 65_536
# The scans of a keyed records plan (catalogue.query.planning.rows_sql, count_sql) that a copy replaces.
ROWS_SCAN = "read_parquet($scan, filename=true, file_row_number=true)"
COUNT_SCAN = "read_parquet($parts)"
# Parameter names of the copies' scans; none is the start of another (records._used finds them by prefix).
PARAMETERS = ("sp_files", "sp_parts", "sp_every", "sp_west", "sp_south", "sp_east", "sp_north")

_lock = threading.Lock()
_known: dict[str, Box | None] = {}  # copy URI -> the extent of its rows' geometries (None: no geometry)


def copies(cur: duckdb.DuckDBPyConnection, storage: Storage, keys: Sequence[str],
           geometry: str) -> list[tuple[str, Box | None]]:
    """(URI, extent) of the by-space copy of each part stored under ``keys``, each written if missing."""
    out = []
    for key in keys:
        copy_key = by_space_key(key)
        uri = storage.engine_uri(copy_key)
        with _lock:
            found = uri in _known
            extent = _known.get(uri)
        if not found:
            if not storage.exists(copy_key):
                write_by_space(cur, storage, key, geometry)
            extent = _extent(cur, uri)
            with _lock:
                if len(_known) >= KNOWN_MAX:
                    _known.clear()
                _known[uri] = extent
        out.append((uri, extent))
    return out


def _extent(cur: duckdb.DuckDBPyConnection, uri: str) -> Box | None:
    row = cur.execute(f"SELECT min(__xmin), min(__ymin), max(__xmax), max(__ymax) FROM read_parquet({literal(uri)})"
                      ).fetchone()
    return None if row is None or row[0] is None else (float(row[0]), float(row[1]), float(row[2]), float(row[3]))


def small(box: Box, extents: Sequence[Box | None]) -> bool:
    """Whether ``box`` covers at most ``SMALL_SHARE`` of the extent of ``extents`` (False when none is known)."""
    known = [e for e in extents if e is not None]
    if not known:
        return False
    west, east = min(box[0], box[2]), max(box[0], box[2])
    share = (_share(west, east, min(e[0] for e in known), max(e[2] for e in known))
             * _share(box[1], box[3], min(e[1] for e in known), max(e[3] for e in known)))
    return share <= SMALL_SHARE


def _share(low: float, high: float, start: float, end: float) -> float:
    """The part of [start, end] that [low, high] covers (a degenerate extent: 1 if met, else 0)."""
    covered = min(high, end) - max(low, start)
    if end <= start:
        return 1.0 if covered >= 0 else 0.0
    return max(covered, 0.0) / (end - start)


def space_plan(plan: Plan, copy_of: dict[str, str], box: Box, geometry: str) -> Plan | None:
    """``plan`` (a keyed page whose filters hold ``box`` on field ``geometry``) reading the copies ``copy_of``
    (part URI -> copy URI).

    None when the plan is not one this can move: not a keyed page, or a part without a copy.
    """
    scan, parts = plan.params.get("scan"), plan.params.get("parts")
    if (not plan.keyed or ROWS_SCAN not in plan.sql or " LIMIT " not in plan.sql or COUNT_SCAN not in plan.count_sql
            or scan is None or parts is None or not all(uri in copy_of for uri in parts)
            or any(name in plan.params for name in PARAMETERS)):
        return None
    west, east = min(box[0], box[2]), max(box[0], box[2])
    near = "__xmin <= $sp_east AND __xmax >= $sp_west AND __ymin <= $sp_north AND __ymax >= $sp_south"
    place = "list_position($sp_files, filename)"
    geom = ident(geometry)
    rows = (f"(SELECT * EXCLUDE (filename, {', '.join(COLUMNS)}) REPLACE (ST_GeomFromWKB({geom}) AS {geom}), "
            f"list_extract($sp_parts, {place}) AS filename, __row AS file_row_number, {place} AS __part "
            f"FROM read_parquet($sp_files, filename=true) WHERE {near})")
    head, _, tail = plan.sql.rpartition(" LIMIT ")
    # Back in the parts' order before the offset and limit: the page the parts give.
    sql = f"{head.replace(ROWS_SCAN, rows, 1)} ORDER BY __part, file_row_number LIMIT {tail}"
    count_sql = plan.count_sql.replace(COUNT_SCAN, f"(SELECT * REPLACE (ST_GeomFromWKB({geom}) AS {geom}) "
                                                   f"FROM read_parquet($sp_every) WHERE {near})", 1)
    params = {**plan.params, "sp_files": [copy_of[uri] for uri in scan], "sp_parts": list(scan),
              "sp_every": [copy_of[uri] for uri in parts], "sp_west": west, "sp_south": box[1], "sp_east": east,
              "sp_north": box[3]}
    # No part tests: they would prune $scan and $parts, which the moved queries no longer read.
    return replace(plan, sql=sql, count_sql=count_sql, params=params, part_tests=[], time_order=())


def forget() -> None:
    """Forget the copies known to exist (tests that remove them; the collector's own process)."""
    with _lock:
        _known.clear()
