"""The DuckDB query engine over published versions: records and exports.

Versions are immutable Parquet parts, so every query reads exactly the files
of the version it serves. Rows are turned into JSON inside DuckDB
(``to_json``), never cell by cell in Python.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv

from catalogue import duck
from catalogue.changes import parquet_scan
from catalogue.errors import InvalidParameter
from catalogue.hub import Hub
from catalogue.models import Dataset, Version
from catalogue.sql_text import ident
from catalogue.store import part_key
from catalogue.table_schema import GEOMETRY_TYPES, geometry_fields

EXPORT_FORMATS = ("csv", "json", "ndjson", "geojson", "parquet")
BATCH_ROWS = 10_000


@dataclass(frozen=True)
class VersionRef:
    """What a query needs of a version: its files and schema."""

    dataset: str
    number: int
    uris: tuple[str, ...]
    schema: dict[str, Any]
    row_count: int
    content_hash: str

    @classmethod
    def of(cls, hub: Hub, dataset: Dataset, version: Version) -> VersionRef:
        """Resolve the storage URIs of ``version``'s parts."""
        uris = tuple(hub.storage.engine_uri(part_key(dataset.name, p["sha256"])) for p in version.parts)
        return cls(dataset.name, version.number, uris, version.table_schema, version.row_count, version.content_hash)


class QueryEngine:
    """One DuckDB database per process; each query runs on its own cursor."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._con = duck.connect(
            memory_limit_mb=hub.settings.duckdb_memory_limit_mb, threads=hub.settings.duckdb_threads
        )
        self._lock = threading.Lock()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for one query (DuckDB cursors are safe to use from one thread each)."""
        with self._lock:
            return self._con.cursor()

    def close(self) -> None:
        """Close the database."""
        self._con.close()

    def records(self, ref: VersionRef, *, limit: int, offset: int) -> dict[str, Any]:
        """A page of rows as ``{total_count, results}`` (geometry as GeoJSON objects)."""
        if limit < 0 or offset < 0:
            raise InvalidParameter("limit and offset must be zero or positive.")
        cur = self.cursor()
        try:
            rows = cur.execute(
                f"SELECT to_json(t)::VARCHAR FROM (SELECT {json_columns(ref.schema)} FROM {parquet_scan(list(ref.uris))} "
                f"LIMIT ? OFFSET ?) AS t",
                [limit, offset],
            ).fetchall()
        finally:
            cur.close()
        return {"total_count": ref.row_count, "results": [json.loads(r[0]) for r in rows]}

    def export(self, ref: VersionRef, fmt: str) -> Iterator[bytes]:
        """Stream the whole version as ``fmt`` (csv, json, ndjson, geojson)."""
        if fmt not in ("csv", "json", "ndjson", "geojson"):
            raise InvalidParameter(f"Unknown export format '{fmt}'. Use one of: {', '.join(EXPORT_FORMATS)}.")
        if fmt == "geojson" and not geometry_fields(ref.schema):
            raise InvalidParameter(
                f"Dataset '{ref.dataset}' has no geometry field, so it has no GeoJSON export; use csv or json."
            )
        return {"csv": self._csv, "json": self._json, "ndjson": self._ndjson, "geojson": self._geojson}[fmt](ref)

    def _batches(self, sql: str) -> Iterator[pa.RecordBatch]:
        cur = self.cursor()
        try:
            reader = cur.execute(sql).to_arrow_reader(BATCH_ROWS)
            yield from reader
        finally:
            cur.close()

    def _scan(self, ref: VersionRef) -> str:
        return parquet_scan(list(ref.uris))

    def _csv(self, ref: VersionRef) -> Iterator[bytes]:
        columns = ", ".join(_csv_column(f) for f in ref.schema["fields"])
        header = True
        for batch in self._batches(f"SELECT {columns} FROM {self._scan(ref)}"):
            out = io.BytesIO()
            pacsv.write_csv(pa.Table.from_batches([batch]), out, write_options=pacsv.WriteOptions(include_header=header))
            header = False
            yield out.getvalue()
        if header:  # no rows at all: still send the header line
            yield (",".join(f["name"] for f in ref.schema["fields"]) + "\n").encode()

    def _json_lines(self, ref: VersionRef, select: str) -> Iterator[str]:
        for batch in self._batches(f"SELECT {select} FROM (SELECT {json_columns(ref.schema)} FROM {self._scan(ref)}) AS t"):
            yield from batch.column(0).to_pylist()

    def _ndjson(self, ref: VersionRef) -> Iterator[bytes]:
        for line in _chunked(self._json_lines(ref, "to_json(t)::VARCHAR")):
            yield "\n".join(line).encode() + b"\n"

    def _json(self, ref: VersionRef) -> Iterator[bytes]:
        yield b"["
        first = True
        for chunk in _chunked(self._json_lines(ref, "to_json(t)::VARCHAR")):
            yield (("" if first else ",") + ",".join(chunk)).encode()
            first = False
        yield b"]"

    def _geojson(self, ref: VersionRef) -> Iterator[bytes]:
        geom = geometry_fields(ref.schema)[0]
        props = [f["name"] for f in ref.schema["fields"] if f["name"] != geom]
        packed = ", ".join(f"{ident(p)} := t.{ident(p)}" for p in props)
        feature = (
            "json_object('type', 'Feature', 'geometry', t." + ident(geom) + ", "
            f"'properties', {'to_json(struct_pack(' + packed + '))' if props else 'json_object()'})::VARCHAR"
        )
        yield b'{"type":"FeatureCollection","features":['
        first = True
        for chunk in _chunked(self._json_lines(ref, feature)):
            yield (("" if first else ",") + ",".join(chunk)).encode()
            first = False
        yield b"]}"


def _chunked(lines: Iterator[str], size: int = 1000) -> Iterator[list[str]]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def json_columns(schema: dict[str, Any]) -> str:
    """Select list rendering each field for JSON: GeoJSON geometry, ISO 8601 timestamps."""
    out = []
    for field in schema["fields"]:
        col = ident(field["name"])
        kind = field.get("type", "string")
        if kind in GEOMETRY_TYPES:
            out.append(f"ST_AsGeoJSON({col})::JSON AS {col}")
        elif kind == "datetime":
            out.append(f"strftime({col}, '%Y-%m-%dT%H:%M:%S') AS {col}")
        else:
            out.append(col)
    return ", ".join(out)


def _csv_column(field: dict[str, Any]) -> str:
    col = ident(field["name"])
    if field.get("type") in GEOMETRY_TYPES:
        return f"ST_AsText({col}) AS {col}"
    if field.get("type") == "datetime":
        return f"strftime({col}, '%Y-%m-%dT%H:%M:%S') AS {col}"
    return col
