"""By-time copies: each part's rows again, sorted by the time field first, kept beside the parts.

Parts of an (entity, time) history are sorted by the primary key (entity, then
time), so one entity's readings sit together, and everything at one time is
spread over every row group: a question about a moment (the top ten at noon,
hourly means over a week) reads the whole part. The by-time copy of a part
holds the same rows sorted by the time field, then the other key fields, in
row groups of ``row_group_rows``: DuckDB skips every row group whose time range
misses the filter, so such a question decodes one row group instead of all.

A copy is named by its part's SHA-256 (``datasets/<name>/by-time/<sha>.parquet``),
so it never changes once written, an append reuses the copies of the parts it
keeps, and the collector removes a copy once no version references its part.
The write path makes the copies of a version's new parts before the commit
transaction (``catalogue.ingest.parts.write_parts``); a reader that finds one
missing (a version made before copies existed) writes it the first time a question
needs it, as ``store/live.py`` does its files. Writing the same key twice writes
the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath

import duckdb

from catalogue.schema.model import TableSchema
from catalogue.schema.sql_text import ident, literal
from catalogue.store import layout
from catalogue.store.storage import Storage

FOLDER = "by-time"


def copy_order(schema: TableSchema) -> tuple[str, ...]:
    """The sort order of the by-time copies of ``schema``'s parts: its time field, then the other key fields.

    () when the parts get no copies: no date or datetime field after the key's first field, or geometry
    (a GeoParquet file's metadata is its writer's).
    """
    time = schema.time_field
    if time is None or schema.geometry_fields:
        return ()
    return (time, *(name for name in schema.primary_key if name != time))


def by_time_key(part_key: str) -> str:
    """Storage key of the by-time copy of the part stored under ``part_key``."""
    path = PurePosixPath(part_key)
    if path.parent.name != "parts" or path.suffix != ".parquet":
        raise ValueError(f"not a part key: {part_key!r}")
    return str(path.parent.parent / FOLDER / path.name)


def write_by_time(con: duckdb.DuckDBPyConnection, storage: Storage, part_key: str, order: Sequence[str],
                  row_group_rows: int) -> str:
    """Write the by-time copy of ``part_key`` (rows sorted by ``order``: the time field first); its engine URI."""
    if not order:
        raise ValueError("a by-time copy needs the fields to sort by")
    key = by_time_key(part_key)
    source = literal(storage.engine_uri(part_key))
    sort = ", ".join(f"{ident(name)} NULLS LAST" for name in order)
    scratch = storage.new_scratch_file(".parquet")
    try:
        con.execute(f"COPY (SELECT * FROM read_parquet({source}) ORDER BY {sort}) TO {literal(str(scratch))} "
                    f"(FORMAT parquet, COMPRESSION {layout.PART_COMPRESSION}, ROW_GROUP_SIZE {int(row_group_rows)})")
        storage.publish_file(key, scratch)
    finally:
        scratch.unlink(missing_ok=True)
    return storage.engine_uri(key)
