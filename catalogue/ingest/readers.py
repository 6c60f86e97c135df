"""Open delivered files (CSV, JSON, NDJSON, GeoJSON, Excel, Parquet) as streams of Arrow record batches.

Cells stay text, exactly as delivered, so validation can report the original
value and parse it with the field's declared format (decimal comma, German
dates, ...), except where pyarrow reads a column exactly as the schema means
it (plain integers and numbers, booleans). Typing happens in ``validation``.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from catalogue.errors import MalformedFeed
from catalogue.ingest.json_stream import geojson_records, json_records, ndjson_records
from catalogue.ingest.parquet_reader import read_parquet
from catalogue.schema.model import TableSchema

FORMATS = ("csv", "json", "ndjson", "geojson", "xlsx", "parquet")
BLOCK_BYTES = 8 << 20


@dataclass
class RawDelivery:
    """A delivery opened for reading: its column labels and a stream of record batches."""

    labels: list[str]
    batches: Iterator[pa.RecordBatch]


NO_FIELDS = TableSchema.from_stored({"fields": []})  # for reading a header only


def open_delivery(
    source: bytes | Path, fmt: str, options: dict[str, Any], schema: TableSchema, *, exact_types: bool = True
) -> RawDelivery:
    """Open ``source`` in format ``fmt``: text columns, or typed ones where reading them is exact.

    CSV is streamed in blocks, JSON, NDJSON and GeoJSON read incrementally
    (``json_stream``): bounded memory for any size. A cell that the exact types cannot read raises
    MalformedFeed while iterating; read again with ``exact_types=False``.
    """
    if fmt == "csv":
        return open_csv(source, options, schema, exact_types=exact_types)
    if fmt == "xlsx":
        from catalogue.ingest.spreadsheet import read_xlsx  # openpyxl only for spreadsheets

        table = read_xlsx(source, options, schema)
        return RawDelivery(table.column_names, iter(table.to_batches()))
    if fmt == "parquet":
        return RawDelivery(*read_parquet(source))
    if fmt not in FORMATS:
        raise MalformedFeed(f"Unknown feed format '{fmt}'. Supported formats: {', '.join(FORMATS)}.")
    check_declared_encoding(source, options.get("encoding", "utf-8"))
    read = {"json": json_records, "ndjson": ndjson_records, "geojson": geojson_records}[fmt]
    return RawDelivery(*read(source, options))


def read_delivery(
    source: bytes | Path, fmt: str, options: dict[str, Any], schema: TableSchema, *, exact_types: bool = True
) -> pa.Table:
    """The whole delivery as one table (for small deliveries and tests)."""
    raw = open_delivery(source, fmt, options, schema, exact_types=exact_types)
    batches = list(raw.batches)
    if not batches:
        return pa.table({label: pa.array([], pa.string()) for label in raw.labels})
    return pa.Table.from_batches(batches)


def _exact_types(schema: TableSchema) -> tuple[dict[str, pa.DataType], dict[str, Any]]:
    """Columns pyarrow can parse exactly as the Table Schema means them, and the options for it.

    Integers and numbers without group characters, one decimal mark, one set of
    boolean words. Everything else stays text for DuckDB to parse in validation.
    """
    types: dict[str, pa.DataType] = {}
    decimals = {f.decimal_char for f in schema.fields if f.type == "number" and not f.group_char}
    booleans = {(f.true_values, f.false_values) for f in schema.fields if f.type == "boolean"}
    for field in schema.fields:
        kind = field.type
        if kind == "integer" and not field.group_char and field.bare_number:
            types[field.name] = pa.int64()
        elif kind == "number" and not field.group_char and len(decimals) == 1 and field.bare_number:
            types[field.name] = pa.float64()
        elif kind == "boolean" and len(booleans) == 1:
            types[field.name] = pa.bool_()
    extra: dict[str, Any] = {}
    if decimals and len(decimals) == 1:
        extra["decimal_point"] = decimals.pop()
    if len(booleans) == 1:
        true, false = booleans.pop()
        extra["true_values"], extra["false_values"] = list(true), list(false)
    return types, extra


def open_csv(
    source: bytes | Path, options: dict[str, Any], schema: TableSchema, *, exact_types: bool = True,
    block_bytes: int = 8 << 20, whole_file: bool = True,
) -> RawDelivery:
    """Stream CSV with the declared delimiter and encoding, in blocks of ``block_bytes``.

    With ``exact_types``, columns pyarrow parses exactly as the schema means
    them arrive typed (fast, and most deliveries are valid); everything else
    arrives as text, so validation can report each bad cell as delivered.
    ``whole_file=False`` skips the checks that read the whole file first (the
    declared encoding), for a look at the header only.
    """
    field_names = schema.names
    types, extra = _exact_types(schema) if exact_types else ({}, {})
    column_types = {n: types.get(n, pa.string()) for n in field_names}
    if types:
        extra["null_values"] = list(schema.missing_values)
    encoding = options.get("encoding", "utf-8")
    try:
        "".encode(encoding)
    except LookupError:
        raise MalformedFeed(f"Unknown encoding '{encoding}' in the source options; use e.g. utf-8 or cp1252.")
    if whole_file:
        check_declared_encoding(source, encoding)
    read = pacsv.ReadOptions(encoding=encoding, block_size=block_bytes)
    parse = pacsv.ParseOptions(
        delimiter=options.get("delimiter", ","),
        quote_char=options.get("quote_char", '"'),
        newlines_in_values=bool(options.get("newlines_in_values", False)),
    )
    # Unknown (extra) columns are read as text too, so the report can name them.
    convert = pacsv.ConvertOptions(
        column_types=column_types, strings_can_be_null=False, quoted_strings_can_be_null=False, **extra
    )
    problem = (f"The CSV feed cannot be read with delimiter {parse.delimiter!r} and encoding {encoding!r}: "
               "{}. Check the delimiter, encoding and quoting declared for the source.")
    stream = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        reader = pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise _csv_failure(problem, exc, source, encoding, parse) from exc
    keep = set(types)

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for batch in reader:
                yield _all_text(batch, keep)
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise _csv_failure(problem, exc, source, encoding, parse) from exc

    return RawDelivery(reader.schema.names, batches())


def _csv_failure(problem: str, exc: Exception, source: bytes | Path, encoding: str,
                 parse: pacsv.ParseOptions) -> MalformedFeed:
    """The CSV reader's error as MalformedFeed, naming the line (and row) it came from when it can be found.

    pyarrow numbers the rows it could not parse ("Row #5": the header is row 1, empty lines are not
    counted) only when it reads without threads, so a failed read is parsed again that way (error path
    only, no columns converted). A row is not a line when a quoted cell holds line breaks: the line where
    the row starts is counted with Python's csv reader.
    """
    message, details = _arrow_message(exc), {}
    row = _row_number(message) or _row_number(_unthreaded_parse_error(source, encoding, parse))
    if row is not None:
        details["row"] = row
        line = _line_of_row(source, encoding, parse, row)
        where = f"line {line} (row {row}, counting the header)" if line is not None else f"row {row}"
        if line is not None:
            details["line"] = line
        message = _ROW_PREFIX.sub("", message)
        head = "CSV parse error: "
        message = (f"CSV parse error at {where}: {message[len(head):]}" if message.startswith(head)
                   else f"at {where}: {message}")
    return MalformedFeed(problem.format(message), details=details)


_ROW_PREFIX = re.compile(r"Row #\d+: ")


def _row_number(message: str) -> int | None:
    found = re.search(r"Row #(\d+)", message)
    return int(found.group(1)) if found else None


def _unthreaded_parse_error(source: bytes | Path, encoding: str, parse: pacsv.ParseOptions) -> str:
    """The message of the first parse error of ``source`` read without threads ('' if it parses)."""
    stream = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        for _ in pacsv.open_csv(stream, read_options=pacsv.ReadOptions(encoding=encoding, use_threads=False),
                                parse_options=parse, convert_options=pacsv.ConvertOptions(include_columns=[])):
            pass
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        return _arrow_message(exc)
    return ""


def _line_of_row(source: bytes | Path, encoding: str, parse: pacsv.ParseOptions, row: int) -> int | None:
    """The line on which CSV row ``row`` (1: the header; empty lines not counted, as pyarrow counts) starts."""
    text = (io.TextIOWrapper(io.BytesIO(source), encoding=encoding, errors="replace", newline="")
            if isinstance(source, bytes) else open(source, encoding=encoding, errors="replace", newline=""))
    with text:
        reader = csv.reader(text, delimiter=parse.delimiter, quotechar=parse.quote_char or '"')
        seen, before = 0, 0
        try:
            for cells in reader:
                if cells:
                    seen += 1
                    if seen == row:
                        return before + 1
                before = reader.line_num
        except csv.Error:
            return None
    return None


def csv_labels(source: Path, options: dict[str, Any]) -> list[str]:
    """The header labels of a CSV file exactly as ``open_csv`` reads them (only its first block is read)."""
    return open_csv(source, options, NO_FIELDS, exact_types=False, block_bytes=1 << 20, whole_file=False).labels


def single_byte(encoding: str) -> bool:
    """Whether ``encoding`` reads every byte as one character (cp1252, latin-1, iso-8859-15, ...).

    Asked of the codec itself: fed a lone byte above 0x7F, a single-byte
    decoder answers a character where a multi-byte one waits for more.
    """
    try:
        factory = codecs.getincrementaldecoder(encoding)
    except LookupError:
        return False
    return all(factory(errors="replace").decode(bytes([b])) for b in range(0x80, 0x100))


def check_declared_encoding(source: bytes | Path, encoding: str) -> None:
    """Raise MalformedFeed when a feed declared in a single-byte encoding is UTF-8 text.

    Valid UTF-8 holding multi-byte sequences is, in practice, never text in
    cp1252 or latin-1 (that would take runs like 'Ã¼' in the real text), and
    reading it as declared publishes mojibake ('MÃ¼ller'). Bytes that are not
    valid UTF-8 (an honest cp1252 'ü' is one byte, 0xFC) end the look early.
    """
    if not single_byte(encoding):
        return
    decoder = codecs.getincrementaldecoder("utf-8")()
    sample = ""
    try:
        for block in _blocks(source):
            if block.isascii() and not decoder.getstate()[0]:
                continue  # (most blocks of most feeds: no need to decode them)
            text = decoder.decode(block)
            sample = sample or next((c for c in text if not c.isascii()), "")
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return
    if sample:
        shown = sample.encode("utf-8").decode(encoding, errors="replace")
        raise MalformedFeed(
            f"The feed is declared as {encoding} but its bytes are UTF-8 text ({sample!r} would be published as "
            f"{shown!r}). Declare 'encoding: utf-8' for the source.")


def _blocks(source: bytes | Path) -> Iterator[bytes]:
    """The bytes of ``source`` in blocks (a file is never read whole)."""
    if isinstance(source, bytes):
        for start in range(0, len(source), BLOCK_BYTES):
            yield source[start:start + BLOCK_BYTES]
        return
    with open(source, "rb") as handle:
        yield from iter(lambda: handle.read(BLOCK_BYTES), b"")


def _all_text(batch: pa.RecordBatch, keep: set[str]) -> pa.RecordBatch:
    """Cast every column to text except those in ``keep``."""
    columns = [col if pa.types.is_string(col.type) or name in keep else col.cast(pa.string())
               for name, col in zip(batch.schema.names, batch.columns)]
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _arrow_message(exc: Exception) -> str:
    return str(exc).splitlines()[0].rstrip(".")
