"""The streamed export formats: csv, json, ndjson and geojson.

DuckDB hands over record batches; each becomes bytes (JSON rendered inside
DuckDB, CSV by pyarrow's writer), so memory stays flat whatever the size.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from catalogue.errors import InvalidParameter
from catalogue.meta.downloads import serves
from catalogue.query.engine import VersionRef
from catalogue.query.formats.base import ExportRows, RowFormat
from catalogue.query.records import RecordsRequest
from catalogue.query.spreadsheet import csv_chunks
from catalogue.schema.sql_text import literal


def _joined(batch: pa.RecordBatch, separator: str) -> bytes:
    """The batch's one text column joined with ``separator``, in Arrow (no per-row Python)."""
    column = batch.column(0)
    rows = pa.ListArray.from_arrays(pa.array([0, len(column)], pa.int32()), column)
    return pc.binary_join(rows, separator)[0].as_buffer().to_pybytes()  # type: ignore[no-any-return]


def _wrapped(lines: Iterator[bytes], head: bytes, tail: bytes) -> Iterator[bytes]:
    """``head``, the chunks separated by commas, ``tail``."""
    yield head
    first = True
    for chunk in lines:
        if chunk:
            yield chunk if first else b"," + chunk
            first = False
    yield tail


def _json_struct(columns: list[tuple[str, str]], rendered: list[str]) -> str:
    return "{" + ", ".join(f"{literal(name)}: {sql}" for (name, _), sql in zip(columns, rendered)) + "}"


def _json_lines(rows: ExportRows) -> Iterator[pa.RecordBatch]:
    """Batches of one column: each row as a JSON object, written as the records API writes it."""
    reader = rows.reader(f"to_json({_json_struct(rows.columns, rows.rendered('json'))})::VARCHAR")
    return (b for b in rows.batches(reader) if b.num_rows)


class CsvFormat(RowFormat):
    """Comma-separated values (or another delimiter, a BOM, German numbers: ``CsvOptions``)."""

    name = "csv"
    media_type = "text/csv; charset=utf-8"
    extension = "csv"
    order = 10

    def write(self, rows: ExportRows) -> Iterator[bytes]:
        reader = rows.reader(rows.named("csv"))
        options = rows.options
        return csv_chunks(rows.batches(reader), reader.schema, delimiter=options.delimiter,
                          with_bom=options.with_bom, number_style=options.number_style)


class JsonFormat(RowFormat):
    """One JSON array of row objects."""

    name = "json"
    media_type = "application/json"
    extension = "json"
    order = 20

    def write(self, rows: ExportRows) -> Iterator[bytes]:
        return _wrapped((_joined(b, ",") for b in _json_lines(rows)), b"[", b"]")


class NdjsonFormat(RowFormat):
    """One JSON object per line."""

    name = "ndjson"
    media_type = "application/x-ndjson"
    extension = "ndjson"
    order = 30

    def write(self, rows: ExportRows) -> Iterator[bytes]:
        return (_joined(b, "\n") + b"\n" for b in _json_lines(rows))


class GeojsonFormat(RowFormat):
    """A GeoJSON FeatureCollection: the first geometry column is each feature's geometry, the rest its properties."""

    name = "geojson"
    media_type = "application/geo+json"
    extension = "geojson"
    order = 40

    def check(self, ref: VersionRef, query: RecordsRequest) -> None:
        if not serves(self.name, ref.schema):  # the rule every list of downloads follows
            raise InvalidParameter(
                f"Dataset '{ref.dataset}' has no geometry field, so it has no GeoJSON export; use csv or json."
            )

    def write(self, rows: ExportRows) -> Iterator[bytes]:
        columns = rows.columns
        geometry = [i for i, (_, kind) in enumerate(columns) if kind.startswith("GEOMETRY")]
        if not geometry:
            raise InvalidParameter("GeoJSON needs a geometry column, and this export selects none: add the geometry "
                                   "field to select, or use csv or json.", details={"parameter": "select"})
        rendered = rows.rendered("json")
        props = [(c, r) for i, (c, r) in enumerate(zip(columns, rendered)) if i != geometry[0]]
        properties = (f"to_json({_json_struct([c for c, _ in props], [r for _, r in props])})" if props
                      else "json_object()")
        feature = (f"json_object('type', 'Feature', 'geometry', {rendered[geometry[0]]}, "
                   f"'properties', {properties})::VARCHAR")
        reader = rows.reader(feature)
        return _wrapped((_joined(b, ",") for b in rows.batches(reader) if b.num_rows),
                        b'{"type":"FeatureCollection","features":[', b"]}")
