"""By-space copies: each part's rows again, sorted along a Hilbert curve of their geometry, kept beside the parts.

Parts are sorted by the primary key, so the points in a small box are spread over
the whole part and a bbox question decodes every geometry of it. The by-space copy
of a part holds the same rows in Hilbert order of their geometry's box centre, in
row groups of ``ROW_GROUP_ROWS``, with the geometry's box as four columns
(``__xmin``, ``__ymin``, ``__xmax``, ``__ymax``): DuckDB skips every row group whose
box ranges miss the question's box and tests the rest with four comparisons of
doubles before decoding a geometry. The geometry is kept as plain WKB (a BLOB), which
the reader turns into a geometry only for the rows near the box (a geometry column is
decoded for every row of a row group read: a quarter of a small box's query). Each row keeps its place in the part
(``__row``, the part's file row number), so an answer read from the copy is put
back in the part's order and gets the ids, offsets and cursors the part gives.

A copy is named by its part's SHA-256 (``datasets/<name>/by-space/<sha>.parquet``),
so it never changes once written, and the collector removes it with its part.
The read path (``catalogue.query.by_space``) writes a missing copy the first time a
question needs it; writing the same key twice writes the same rows.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import duckdb

from catalogue.schema.sql_text import ident, literal
from catalogue.store import layout
from catalogue.store.storage import Storage

FOLDER = "by-space"
# DuckDB writes row groups of at least 2,048 rows (its vector size); smaller ones (pyarrow's) cost more in
# footer reading than they spare in decoding: over 20,000 points and boxes of 1/256 of the extent, CPU a query
# 3.0 ms at 2,048 rows a group, 3.6 at 1,024, 4.0 at 512, 5.9 at 256.
ROW_GROUP_ROWS = 2048
COLUMNS = ("__row", "__xmin", "__ymin", "__xmax", "__ymax")  # the copy's own columns, after the part's


def by_space_key(part_key: str) -> str:
    """Storage key of the by-space copy of the part stored under ``part_key``."""
    path = PurePosixPath(part_key)
    if path.parent.name != "parts" or path.suffix != ".parquet":
        raise ValueError(f"not a part key: {part_key!r}")
    return str(path.parent.parent / FOLDER / path.name)


def write_by_space(con: duckdb.DuckDBPyConnection, storage: Storage, part_key: str, geometry: str) -> str:
    """Write the by-space copy of ``part_key`` (rows in Hilbert order of field ``geometry``); its engine URI."""
    key = by_space_key(part_key)
    source = f"read_parquet({literal(storage.engine_uri(part_key))}, file_row_number=true)"
    geom = ident(geometry)
    # The curve spans the part's own extent; rows without a geometry or with an empty one (no box) come last.
    bounds = (f"(SELECT {{'min_x': min(ST_XMin({geom})), 'min_y': min(ST_YMin({geom})), "
              f"'max_x': max(ST_XMax({geom})), 'max_y': max(ST_YMax({geom}))}}::BOX_2D FROM {source})")
    scratch = storage.new_scratch_file(".parquet")
    try:
        con.execute(
            f"COPY (SELECT * EXCLUDE (file_row_number) REPLACE (ST_AsWKB({geom})::BLOB AS {geom}), "
            f"file_row_number AS __row, ST_XMin({geom}) AS __xmin, "
            f"ST_YMin({geom}) AS __ymin, ST_XMax({geom}) AS __xmax, ST_YMax({geom}) AS __ymax FROM {source} "
            f"ORDER BY CASE WHEN NOT ST_IsEmpty({geom}) THEN ST_Hilbert({geom}, {bounds}) END NULLS LAST, __row) "
            f"TO {literal(str(scratch))} "
            f"(FORMAT parquet, COMPRESSION {layout.PART_COMPRESSION}, ROW_GROUP_SIZE {ROW_GROUP_ROWS})")
        storage.publish_file(key, scratch)
    finally:
        scratch.unlink(missing_ok=True)
    return storage.engine_uri(key)
