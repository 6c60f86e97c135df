"""Read a delivered Parquet file as text columns, batch by batch (bounded memory for any size).

Cells become the text validation parses with the field's declared format: numbers and
booleans as pyarrow writes them, dates as ISO 8601, timestamps as ISO 8601 with ``Z``
when the column has a time zone (converted to UTC), binary as hex.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalogue.errors import MalformedFeed

BATCH_ROWS = 64 * 1024


def read_parquet(source: bytes | Path) -> tuple[list[str], Iterator[pa.RecordBatch]]:
    """The column names and a stream of all-text batches of the Parquet file ``source``."""
    try:
        file = pq.ParquetFile(source if isinstance(source, Path) else pa.BufferReader(source))
    except (pa.ArrowException, OSError) as exc:
        raise MalformedFeed(f"The delivery is not a readable Parquet file ({exc}).") from None
    names = list(file.schema_arrow.names)
    if len(set(names)) != len(names):
        raise MalformedFeed("The Parquet file names a column more than once; each column needs its own name.")
    return names, _batches(file)


def _batches(file: pq.ParquetFile) -> Iterator[pa.RecordBatch]:
    try:
        for batch in file.iter_batches(batch_size=BATCH_ROWS):
            yield pa.RecordBatch.from_arrays([_text(col) for col in batch.columns], names=batch.schema.names)
    except pa.ArrowException as exc:
        raise MalformedFeed(f"The Parquet file could not be read to its end ({exc}).") from None


def _text(column: pa.Array) -> pa.Array:
    kind = column.type
    if pa.types.is_string(kind):
        return column
    if pa.types.is_large_string(kind):
        return column.cast(pa.string())
    if pa.types.is_timestamp(kind):
        if kind.tz is not None:
            return pc.strftime(pc.cast(column, pa.timestamp("us", "UTC")), format="%Y-%m-%dT%H:%M:%SZ")
        return pc.strftime(column, format="%Y-%m-%dT%H:%M:%S")
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return pa.array([None if v is None else v.hex() for v in column.to_pylist()], pa.string())
    if pa.types.is_boolean(kind):
        return pc.if_else(column, "true", "false")
    return column.cast(pa.string())
