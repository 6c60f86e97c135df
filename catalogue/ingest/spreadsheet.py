"""Excel (.xlsx) deliveries: one named sheet, a header row, cells as the text the other readers give.

openpyxl reads in read-only mode, row by row, so a large sheet is never held as
cell objects. Cells become text as validation expects it: numbers as written
(``12``, ``3.25``, or ``3,25`` in a field whose decimal mark is a comma), booleans as ``true``/``false``, and date cells in the
field's own format (a German ``%d.%m.%Y`` field gets ``20.11.2026``), ISO
otherwise.
"""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pyarrow as pa

from catalogue.errors import MalformedFeed
from catalogue.schema.model import TableSchema

ROWS_PER_BATCH = 65_536


def read_xlsx(source: bytes | Path, options: dict[str, Any], schema: TableSchema) -> pa.Table:
    """The sheet ``options['sheet']`` (default: the first) from row ``options['header_row']`` (default 1) on."""
    import openpyxl  # type: ignore[import-untyped]  # imported only where a spreadsheet is read

    try:
        book = openpyxl.load_workbook(io.BytesIO(source) if isinstance(source, bytes) else source,
                                      read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise MalformedFeed(f"The feed is not a readable .xlsx workbook ({type(exc).__name__}: {exc}).") from exc
    try:
        return _sheet_table(book, options, schema)
    finally:
        book.close()


def _sheet_table(book: Any, options: dict[str, Any], schema: TableSchema) -> pa.Table:
    name = options.get("sheet")
    if name is not None and name not in book.sheetnames:
        raise MalformedFeed(f"The workbook has no sheet named '{name}'; its sheets are: "
                            f"{', '.join(book.sheetnames)}. Set the source option sheet to one of them.",
                            details={"sheet": name})
    sheet = book[name] if name is not None else book.worksheets[0]
    header_row = int(options.get("header_row", 1))
    if header_row < 1:
        raise MalformedFeed("The source option header_row counts from 1 (the sheet's first row).")
    rows = sheet.iter_rows(min_row=header_row, values_only=True)
    header = next(rows, None)
    if header is None:
        raise MalformedFeed(f"Sheet '{sheet.title}' has no row {header_row} to read the column labels from.")
    while header and header[-1] is None:  # trailing empty header cells: the sheet's used range, not columns
        header = header[:-1]
    labels = ["" if cell is None else str(cell).strip() for cell in header]
    kinds = {f.name: (f.type, f.format, f.decimal_char if f.type == "number" else ".") for f in schema.fields}
    cell_kinds = [kinds.get(label, ("string", "default", ".")) for label in labels]
    columns: list[list[str | None]] = [[] for _ in labels]
    for row in rows:
        if row is None or all(cell is None for cell in row):
            continue  # blank rows between or after the data
        for index, _ in enumerate(labels):
            value = row[index] if index < len(row) else None
            columns[index].append(_cell_text(value, *cell_kinds[index]))
    return pa.table({label or f"column_{i + 1}": pa.array(cells, pa.string())
                     for i, (label, cells) in enumerate(zip(labels, columns))})


def _cell_text(value: Any, kind: str, fmt: str, decimal: str) -> str | None:
    """One cell as text; a date cell in its field's strftime format when it has one, else ISO; a number with
    its field's decimal mark (a sheet holds numbers, not text: the mark a CSV of the same rows would use)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date, time)):
        if "%" in fmt:
            return value.strftime(fmt)
        if kind == "date" and isinstance(value, datetime):  # Excel keeps every date as a datetime
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    if isinstance(value, float):
        return repr(value).replace(".", decimal)
    return str(value)
