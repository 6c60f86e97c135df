"""Exports: every row of a version, filtered and shaped like records, in one download.

The query is the records planner's (``select``, ``where``, ``group_by``,
``order_by``, ``refine``, ``exclude``) without a row limit. Text formats
stream: DuckDB hands over record batches of ``BATCH_ROWS``, each becomes
bytes (JSON rendered inside DuckDB, CSV by pyarrow's writer), so memory stays
flat whatever the size. Parquet and XLSX are files: a whole version's Parquet
is its part (or its parts combined once and kept); anything filtered, and
every workbook, is written to a scratch file that is deleted once sent.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from catalogue.store.changes import parquet_scan
from catalogue.errors import InsufficientStorage, InvalidParameter, QueryError
from catalogue.hub import Hub
from catalogue.query.engine import QueryEngine, VersionRef
from catalogue.query.records import Plan, RecordsRequest, engine_error_message, output_columns, plan_records, prune
from catalogue.query.spreadsheet import NUMBER_STYLES, XLSX_MAX_ROWS, csv_chunks, write_xlsx
from catalogue.schema.sql_text import ident, iso_timestamp, json_value, literal
from catalogue.schema.table_schema import geometry_fields

EXPORT_FORMATS = ("csv", "json", "ndjson", "geojson", "parquet", "xlsx")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "geojson": "application/geo+json",
    "parquet": "application/vnd.apache.parquet",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
BATCH_ROWS = 10_000
FILE_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class CsvOptions:
    """How a CSV export is written."""

    delimiter: str = ","
    with_bom: bool = False
    number_style: str = "international"


@dataclass(frozen=True)
class ExportFile:
    """An export served as a file; ``temporary`` ones are scratch files to delete once sent."""

    path: Path
    temporary: bool


def check_format(fmt: str) -> None:
    """InvalidParameter unless ``fmt`` is an export format."""
    if fmt not in EXPORT_FORMATS:
        raise InvalidParameter(f"Unknown export format '{fmt}'. Use one of: {', '.join(EXPORT_FORMATS)}.")


def csv_options(fmt: str, delimiter: str | None, with_bom: bool | None, number_style: str | None) -> CsvOptions:
    """Checked CSV options; they are refused on other formats rather than silently ignored."""
    given = [n for n, v in (("delimiter", delimiter), ("with_bom", with_bom), ("number_style", number_style))
             if v is not None]
    if fmt != "csv":
        if given:
            raise InvalidParameter(f"{given[0]} applies to csv exports only.", details={"parameter": given[0]})
        return CsvOptions()
    style = number_style or "international"
    if style not in NUMBER_STYLES:
        raise InvalidParameter(f"number_style must be one of: {', '.join(NUMBER_STYLES)}; got '{style}'.",
                               details={"parameter": "number_style"})
    if delimiter is None:
        delimiter = ";" if style == "german" else ","
    if len(delimiter) != 1 or not delimiter.isascii() or delimiter.isalnum() or delimiter in "\"'\r\n":
        raise InvalidParameter("delimiter must be one character that is not a letter, digit, quote or line break "
                               f"(e.g. ',', ';', '|' or a tab); got '{delimiter}'.", details={"parameter": "delimiter"})
    if style == "german" and delimiter == ",":
        raise InvalidParameter("number_style=german writes decimal commas (12345,67), so the delimiter cannot be ','; "
                               "use ';' (the default for german) or another character.",
                               details={"parameter": "delimiter"})
    return CsvOptions(delimiter=delimiter, with_bom=bool(with_bom), number_style=style)


def is_whole(query: RecordsRequest) -> bool:
    """Whether ``query`` asks for the whole version as stored (no select, filter, grouping or order)."""
    return not any((query.select, query.where, query.group_by, query.order_by, query.refine, query.exclude))


def export_tag(ref: VersionRef, fmt: str, query: RecordsRequest, options: CsvOptions) -> str:
    """A stable name for one export of one version (the HTTP ETag): the same inputs, the same bytes."""
    if is_whole(query) and options == CsvOptions():
        return f"{ref.content_hash}-{fmt}"
    asked = {k: asdict(query)[k] for k in ("select", "where", "group_by", "order_by", "refine", "exclude")}
    digest = hashlib.sha256(json.dumps([asked, asdict(options)], sort_keys=True).encode()).hexdigest()
    return f"{ref.content_hash}-{fmt}-{digest[:16]}"


def export_version(
    hub: Hub, engine: QueryEngine, ref: VersionRef, fmt: str, query: RecordsRequest,
    options: CsvOptions | None = None,
) -> ExportFile | Iterator[bytes]:
    """Export ``ref`` as ``fmt``: a file to send, or bytes to stream.

    Every parameter is checked, and the query bound, before this returns, so
    a bad request fails here and not halfway through a download.
    """
    check_format(fmt)
    if fmt == "geojson" and not geometry_fields(ref.schema):
        raise InvalidParameter(
            f"Dataset '{ref.dataset}' has no geometry field, so it has no GeoJSON export; use csv or json."
        )
    if fmt == "parquet" and is_whole(query):
        return ExportFile(Path(parquet_file(hub, engine, ref)), temporary=False)
    unlimited = RecordsRequest(select=query.select, where=query.where, group_by=query.group_by,
                               order_by=query.order_by, refine=query.refine, exclude=query.exclude, limit=None)
    plan = plan_records(unlimited, ref.schema, list(ref.uris), ref.number)
    cur = engine.cursor()
    try:
        plan = prune(cur, plan)
        columns = _describe(cur, plan)
        if fmt == "parquet":
            return _filtered_parquet(hub, cur, plan)
        if fmt == "xlsx":
            return _xlsx(hub, cur, plan, columns, ref.dataset)
        if fmt == "geojson":
            return _geojson(cur, plan, columns)
        if fmt == "csv":
            return _csv(cur, plan, columns, options or CsvOptions())
        return _json(cur, plan, columns, fmt)
    except BaseException:
        cur.close()
        raise


# -- planning ------------------------------------------------------------

def _params(sql: str, plan: Plan) -> dict[str, Any]:
    return {k: v for k, v in plan.params.items() if f"${k}" in sql}


def _describe(cur: duckdb.DuckDBPyConnection, plan: Plan) -> list[tuple[str, str]]:
    """(name, DuckDB type) of the plan's output columns; binding errors become invalid-query."""
    try:
        return output_columns(cur, plan.sql, _params(plan.sql, plan))
    except duckdb.Error as exc:
        raise QueryError(engine_error_message(exc)) from exc


def _rendered(columns: list[tuple[str, str]], target: str) -> list[str]:
    """Select items over ``q`` turning each column into what ``target`` (json, csv, xlsx) holds."""
    out = []
    for name, kind in columns:
        col = f"q.{ident(name)}"
        if target == "json":
            col = json_value(col, kind)  # as the records API writes it
        elif kind.startswith("GEOMETRY"):
            col = f"ST_AsText({col})"
        elif kind.startswith("TIMESTAMP") and target != "xlsx":
            # As the records API writes them (spreadsheets get real date-times).
            col = iso_timestamp(col, with_zone="WITH TIME ZONE" in kind)
        elif kind.endswith("]") or kind.startswith(("STRUCT", "MAP", "UNION", "INTERVAL", "UUID")):
            col = f"{col}::VARCHAR"  # no spreadsheet cell holds a list or a struct
        elif target == "xlsx" and kind.startswith(("HUGEINT", "UHUGEINT", "DECIMAL")):
            col = f"{col}::DOUBLE"
        out.append(col)
    return out


def _reader(cur: duckdb.DuckDBPyConnection, plan: Plan, select: str) -> pa.RecordBatchReader:
    sql = f"SELECT {select} FROM ({plan.sql}) AS q"
    try:
        return cur.execute(sql, _params(sql, plan)).to_arrow_reader(BATCH_ROWS)
    except duckdb.Error as exc:
        raise QueryError(engine_error_message(exc)) from exc


def _drain(cur: duckdb.DuckDBPyConnection, reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    try:
        yield from reader
    finally:
        cur.close()


# -- text formats --------------------------------------------------------

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


def _json(cur: duckdb.DuckDBPyConnection, plan: Plan, columns: list[tuple[str, str]], fmt: str) -> Iterator[bytes]:
    reader = _reader(cur, plan, f"to_json({_json_struct(columns, _rendered(columns, 'json'))})::VARCHAR")
    if fmt == "ndjson":
        return (_joined(b, "\n") + b"\n" for b in _drain(cur, reader) if b.num_rows)
    return _wrapped((_joined(b, ",") for b in _drain(cur, reader) if b.num_rows), b"[", b"]")


def _geojson(cur: duckdb.DuckDBPyConnection, plan: Plan, columns: list[tuple[str, str]]) -> Iterator[bytes]:
    geometry = [i for i, (_, kind) in enumerate(columns) if kind.startswith("GEOMETRY")]
    if not geometry:
        raise InvalidParameter("GeoJSON needs a geometry column, and this export selects none: add the geometry "
                               "field to select, or use csv or json.", details={"parameter": "select"})
    rendered = _rendered(columns, "json")
    props = [(c, r) for i, (c, r) in enumerate(zip(columns, rendered)) if i != geometry[0]]
    properties = f"to_json({_json_struct([c for c, _ in props], [r for _, r in props])})" if props else "json_object()"
    feature = f"json_object('type', 'Feature', 'geometry', {rendered[geometry[0]]}, 'properties', {properties})::VARCHAR"
    reader = _reader(cur, plan, feature)
    return _wrapped((_joined(b, ",") for b in _drain(cur, reader) if b.num_rows),
                    b'{"type":"FeatureCollection","features":[', b"]}")


def _csv(cur: duckdb.DuckDBPyConnection, plan: Plan, columns: list[tuple[str, str]], options: CsvOptions) -> Iterator[bytes]:
    select = ", ".join(f"{sql} AS {ident(name)}" for (name, _), sql in zip(columns, _rendered(columns, "csv")))
    reader = _reader(cur, plan, select)
    return csv_chunks(_drain(cur, reader), reader.schema, delimiter=options.delimiter, with_bom=options.with_bom,
                      number_style=options.number_style)


# -- files ---------------------------------------------------------------

def _xlsx(hub: Hub, cur: duckdb.DuckDBPyConnection, plan: Plan, columns: list[tuple[str, str]], sheet: str) -> ExportFile:
    try:
        (rows,) = cur.execute(plan.count_sql, _params(plan.count_sql, plan)).fetchone()  # type: ignore[misc]
    except duckdb.Error as exc:
        raise QueryError(engine_error_message(exc)) from exc
    if rows + 1 > XLSX_MAX_ROWS:
        raise InvalidParameter(
            f"This export has {rows:,} rows; an Excel sheet holds at most {XLSX_MAX_ROWS - 1:,} below its header. "
            "Narrow it with where, or use csv or parquet.", details={"parameter": "format", "rows": rows})
    select = ", ".join(f"{sql} AS {ident(name)}" for (name, _), sql in zip(columns, _rendered(columns, "xlsx")))
    reader = _reader(cur, plan, select)
    with _scratch_file(hub, ".xlsx", "xlsx") as scratch:
        write_xlsx(_drain(cur, reader), reader.schema, scratch, sheet)
    return ExportFile(scratch, temporary=True)


def _filtered_parquet(hub: Hub, cur: duckdb.DuckDBPyConnection, plan: Plan) -> ExportFile:
    """The plan's rows written by DuckDB into a scratch Parquet file (GeoParquet for geometry)."""
    try:
        with _scratch_file(hub, ".parquet", "parquet") as scratch:
            sql = (f"COPY ({plan.sql}) TO {literal(str(scratch))} "
                   f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {hub.settings.row_group_rows}, "
                   # The scratch file is already ours to remove on failure; DuckDB's own tmp_ file would not be.
                   "USE_TMP_FILE false)")
            try:
                cur.execute(sql, _params(sql, plan))
            except duckdb.Error as exc:
                if _disk_full(exc):
                    raise  # _scratch_file says so
                raise QueryError(engine_error_message(exc)) from exc
    finally:
        cur.close()
    return ExportFile(scratch, temporary=True)


# What the OS says when a file cannot grow: a full disk, a file-size limit (RLIMIT_FSIZE), a full quota.
_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_FULL_MESSAGES = tuple(os.strerror(code) for code in _FULL_ERRNOS)


def _disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says a file could not be written for lack of space.

    DuckDB and pyarrow give only text; xlsxwriter wraps the OSError in its own error, so the chain is followed.
    """
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno in _FULL_ERRNOS:
            return True
        if isinstance(seen, (OSError, duckdb.Error)) and any(m in str(seen) for m in _FULL_MESSAGES):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextmanager
def _scratch_file(hub: Hub, suffix: str, fmt: str) -> Iterator[Path]:
    """A scratch file to write an export into, removed if writing fails; a full disk is InsufficientStorage."""
    full = InsufficientStorage(
        f"The server's disk is full, so the {fmt} export could not be written. Try again later, or download "
        "csv, json or ndjson, which stream without writing a file.", details={"format": fmt})
    try:
        scratch = hub.storage.new_scratch_file(suffix)
    except OSError as exc:
        if _disk_full(exc):
            raise full from exc
        raise
    try:
        yield scratch
    except BaseException as exc:
        scratch.unlink(missing_ok=True)
        if _disk_full(exc):
            raise full from exc
        raise


def read_file(path: Path, *, delete: bool) -> Iterator[bytes]:
    """The file's bytes in chunks; a scratch file is deleted after the last one (or on close)."""
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(FILE_CHUNK_BYTES):
                yield chunk
    finally:
        if delete:
            path.unlink(missing_ok=True)


def parquet_file(hub: Hub, engine: QueryEngine, ref: VersionRef) -> str:
    """A single Parquet file holding the whole version (GeoParquet where there is geometry).

    A one-part version is its part; a multipart version is combined once and
    kept, keyed by the version's content hash (versions never change).
    """
    if len(ref.uris) == 1:
        return ref.uris[0]
    key = f"exports/{ref.dataset}/{ref.content_hash}.parquet"
    if not hub.storage.exists(key):
        with _scratch_file(hub, ".parquet", "parquet") as scratch:
            cur = engine.cursor()
            try:
                cur.execute(
                    f"COPY (SELECT * FROM {parquet_scan(list(ref.uris))}) TO {literal(str(scratch))} "
                    f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {hub.settings.row_group_rows}, "
                    "USE_TMP_FILE false)"  # a failed COPY leaves no tmp_ file of DuckDB's beside the scratch file
                )
            finally:
                cur.close()
            hub.storage.publish_file(key, scratch)
    return hub.storage.engine_uri(key)
