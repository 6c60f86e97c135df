"""Rows for spreadsheets: CSV and XLSX cells, with formula-like text neutralised.

A spreadsheet executes a cell that starts with ``=``, ``+``, ``-`` or ``@``
(and some treat a leading tab or carriage return the same way), so a text
cell starting with one of them gets a leading ``'`` (OWASP's advice against
CSV injection). Only text changes: numbers stay numbers. Everything works on
Arrow batches, column by column; only the XLSX writer visits cells, because
that is the only way into a workbook.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import xlsxwriter

FORMULA_START = r"^([=+\-@\t\r])"
XLSX_MAX_ROWS = 1_048_576  # rows of an Excel sheet, the header row included
NUMBER_STYLES = ("international", "german")
BOM = b"\xef\xbb\xbf"
# The workbook's creation time (docProps/core.xml, and xlsxwriter stamps the zip entries with it):
# fixed, so the same rows make the same bytes and a strong ETag holds (RFC 9110, 8.8.1).
XLSX_CREATED = datetime(2000, 1, 1)


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind))


def neutralise(column: pa.Array) -> pa.Array:
    """Text cells a spreadsheet would run as formulas, prefixed with ``'``."""
    if pa.types.is_string_view(column.type):
        column = column.cast(pa.string())
    return pc.replace_substring_regex(column, pattern=FORMULA_START, replacement=r"'\1")


def neutralise_name(name: str) -> str:
    """A header cell, neutralised like the text cells below it."""
    return "'" + name if name[:1] in ("=", "+", "-", "@", "\t", "\r") else name


def neutralise_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with every text column and every column name neutralised."""
    columns = [neutralise(c) if _is_text(c.type) else c for c in batch.columns]
    return pa.RecordBatch.from_arrays(columns, names=[neutralise_name(n) for n in batch.schema.names])


def _german(column: pa.Array) -> pa.Array:
    """Fractional numbers as text with a decimal comma (``12345,67``); integers unchanged."""
    if pa.types.is_floating(column.type) or pa.types.is_decimal(column.type):
        return pc.replace_substring(column.cast(pa.string()), pattern=".", replacement=",")
    return column


def csv_chunks(
    batches: Iterable[pa.RecordBatch], schema: pa.Schema, *, delimiter: str = ",", with_bom: bool = False,
    number_style: str = "international",
) -> Iterator[bytes]:
    """CSV bytes, one chunk per batch, starting with the header row (also when there are no rows).

    ``batches`` hold columns ready to print (geometry as WKT, times as ISO
    8601 text); this neutralises text and applies the number style.
    """

    def shape(batch: pa.RecordBatch) -> pa.RecordBatch:
        batch = neutralise_batch(batch)
        if number_style == "german":
            batch = pa.RecordBatch.from_arrays([_german(c) for c in batch.columns], names=batch.schema.names)
        return batch

    empty = shape(pa.RecordBatch.from_pylist([], schema=schema))
    sink = io.BytesIO()
    writer = pacsv.CSVWriter(sink, empty.schema, write_options=pacsv.WriteOptions(delimiter=delimiter))

    def flush() -> bytes:
        data = sink.getvalue()
        sink.seek(0)
        sink.truncate()
        return data

    try:
        yield (BOM if with_bom else b"") + flush()
        for batch in batches:
            writer.write_batch(shape(batch))
            yield flush()
    finally:
        writer.close()


def write_xlsx(
    batches: Iterable[pa.RecordBatch], schema: pa.Schema, path: Path, sheet: str, *, created: datetime = XLSX_CREATED,
) -> int:
    """Write a one-sheet workbook to ``path`` in constant memory; returns the rows written.

    Rows are written in order and flushed as they go (xlsxwriter's
    ``constant_memory``); the caller checks the row count against
    ``XLSX_MAX_ROWS`` first. The bytes depend only on the rows, ``sheet`` and
    ``created`` (never on the clock), so one export always has one ETag and one body.
    """
    # xlsxwriter's own temporary files go to a directory of this call's, removed even when writing fails
    # (on a full disk they were left in the scratch directory).
    tmpdir = tempfile.mkdtemp(prefix=".xlsx-", dir=path.parent)
    workbook = xlsxwriter.Workbook(str(path), {
        "constant_memory": True, "tmpdir": tmpdir,
        # Text stays text: never turned into formulas, links or numbers.
        "strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False,
        "nan_inf_to_errors": True, "remove_timezone": True,
    })
    try:
        workbook.set_properties({"created": created})
        worksheet = workbook.add_worksheet(_sheet_name(sheet))
        bold = workbook.add_format({"bold": True})
        for col, name in enumerate(schema.names):
            worksheet.write_string(0, col, neutralise_name(name), bold)
        worksheet.freeze_panes(1, 0)
        writers = [_cell_writer(workbook, worksheet, field.type) for field in schema]
        row = 0
        for batch in batches:
            columns = [c.to_pylist() for c in neutralise_batch(batch).columns]
            for values in zip(*columns):
                row += 1
                for col, (value, write) in enumerate(zip(values, writers)):
                    if value is not None:
                        write(row, col, value)
    finally:
        try:
            workbook.close()
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
    return row


def _cell_writer(workbook: Any, worksheet: Any, kind: pa.DataType) -> Callable[[int, int, Any], Any]:
    if _is_text(kind):
        return worksheet.write_string  # type: ignore[no-any-return]
    if pa.types.is_boolean(kind):
        return worksheet.write_boolean  # type: ignore[no-any-return]
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return worksheet.write_number  # type: ignore[no-any-return]
    if pa.types.is_decimal(kind):
        return lambda row, col, value: worksheet.write_number(row, col, float(value))
    if pa.types.is_timestamp(kind) and kind.tz:
        # An instant: Excel has no zones, so the cell holds the UTC date-time and its format says 'Z',
        # as the other formats write it.
        zoned = workbook.add_format({"num_format": 'yyyy-mm-dd hh:mm:ss"Z"'})
        return lambda row, col, value: worksheet.write_datetime(
            row, col, value.astimezone(timezone.utc).replace(tzinfo=None), zoned)
    pattern = ("yyyy-mm-dd hh:mm:ss" if pa.types.is_timestamp(kind) else "yyyy-mm-dd" if pa.types.is_date(kind)
               else "hh:mm:ss" if pa.types.is_time(kind) else None)
    if pattern:
        cell_format = workbook.add_format({"num_format": pattern})
        return lambda row, col, value: worksheet.write_datetime(row, col, value, cell_format)
    return lambda row, col, value: worksheet.write_string(row, col, str(value))


def _sheet_name(name: str) -> str:
    """Excel's rules: at most 31 characters, none of ``[]:*?/\\``."""
    cleaned = "".join("_" if ch in "[]:*?/\\" else ch for ch in name).strip("'")
    return cleaned[:31] or "data"
