"""Exports: every row of a version, filtered and shaped like records, in one download.

The query is the records planner's (``select``, ``where``, ``group_by``,
``order_by``, ``refine``, ``exclude``) without a row limit; the rows go to the
export format asked for, found by name in the hub's registry (the
``urbandata.export_formats`` entry point; the built-ins are in
:mod:`catalogue.query.formats`). Text formats stream record batches, so memory
stays flat whatever the size; Parquet and XLSX are files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import cast

import duckdb

from catalogue.errors import InvalidParameter
from catalogue.hub import Hub
from catalogue.query.engine import QueryEngine, VersionRef
from catalogue.query.formats.base import (
    CsvOptions, Export, ExportFile, ExportFormat, ExportRows, StoredExport, params_in,
)
from catalogue.query.formats.files import FILE_CHUNK_BYTES, parquet_key
from catalogue.query.records import Plan, RecordsRequest, engine_error, output_columns, plan_records, prune
from catalogue.query.spreadsheet import NUMBER_STYLES
from catalogue.registry import Registry

__all__ = ["CsvOptions", "ExportFile", "StoredExport", "chunks_of", "stored_chunks", "csv_options", "export_format", "export_tag", "export_version",
           "format_names", "parquet_file", "read_file"]

SEAM = "export_formats"


def format_names(registry: Registry) -> list[str]:
    """The registered export formats' names, in the order they are listed to users."""
    return sorted(registry.names(SEAM), key=lambda n: (registry.get(SEAM, n).order, n))


def export_format(registry: Registry, fmt: str) -> ExportFormat:
    """The export format named ``fmt``; InvalidParameter listing the known ones otherwise."""
    if fmt not in registry.names(SEAM):
        raise InvalidParameter(f"Unknown export format '{fmt}'. Use one of: {', '.join(format_names(registry))}.")
    return cast(ExportFormat, registry.get(SEAM, fmt)())


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
) -> Export:
    """Export ``ref`` as ``fmt``: a file to send, or bytes to stream.

    Every parameter is checked, and the query bound, before this returns, so
    a bad request fails here and not halfway through a download.
    """
    form = export_format(hub.registry, fmt)
    form.check(ref, query)
    if is_whole(query):
        stored = form.whole(engine, ref)
        if stored is not None:
            return stored
    unlimited = RecordsRequest(select=query.select, where=query.where, group_by=query.group_by,
                               order_by=query.order_by, refine=query.refine, exclude=query.exclude, limit=None)
    plan = plan_records(unlimited, ref.schema, list(ref.uris), ref.number)
    cur = engine.cursor()
    try:
        plan = prune(cur, plan)
        rows = ExportRows(hub, ref, cur, plan, _describe(cur, plan), options or CsvOptions())
        return form.write(rows)
    except BaseException:
        cur.close()
        raise


def _describe(cur: duckdb.DuckDBPyConnection, plan: Plan) -> list[tuple[str, str]]:
    """(name, DuckDB type) of the plan's output columns; binding errors become invalid-query."""
    try:
        return output_columns(cur, plan.sql, params_in(plan.sql, plan))
    except duckdb.Error as exc:
        raise engine_error(exc) from exc


def chunks_of(hub: Hub, result: Export) -> Iterator[bytes]:
    """Any export's bytes in chunks: a file's (a scratch file deleted after), a stored object's, or the stream."""
    if isinstance(result, ExportFile):
        return read_file(result.path, delete=result.temporary)
    if isinstance(result, StoredExport):
        return stored_chunks(hub, result.key)
    return result


def stored_chunks(hub: Hub, key: str, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
    """The bytes stored under ``key`` from ``start`` to ``stop`` (default: the end), in chunks."""
    with hub.storage.open_read(key) as handle:
        handle.seek(start)
        left = None if stop is None else stop - start
        while left is None or left > 0:
            chunk = handle.read(FILE_CHUNK_BYTES if left is None else min(FILE_CHUNK_BYTES, left))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk


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
    """The engine URI of one Parquet file holding the whole version (for the benchmarks; see ``parquet_key``)."""
    return hub.storage.engine_uri(parquet_key(engine, ref))
