"""A CSV delivery read by DuckDB's parallel reader, cell for cell as the text path reads it.

The text path (``readers.open_csv``, then ``validation``) reads with one
thread and lists every bad cell; most deliveries are valid, and for them this
path is the fast one: DuckDB reads the file on every core straight into a
table it can spill, every cell as text, typed and checked by the very SQL the
text path uses (``field_parsing``, ``validation.constraint_checks``), so the
typed values and the verdict agree by construction. The primary key is left
to the writer, which sees the rows sorted by it. Anything else ends on the
text path, which writes the report:

- the reading itself, where DuckDB is more lenient than pyarrow: short rows
  and empty trailing cells (read with null padding and no null string, then
  every cell must be there and nothing after the last), blanks around a
  quoted cell (the file is scanned for a quote next to a blank), a header
  that is not the first row DuckDB sees; DuckDB refuses quoted line breaks and
  mixed line endings, which pyarrow may read;
- encodings other than utf-8, latin-1 and cp1252. DuckDB's latin-1 refuses
  the bytes 0x80–0x9F (where cp1252 has €, „, “, ...), so a file holding them
  is transcoded to utf-8 with Python's codec, the one pyarrow uses, and read
  again.
"""

from __future__ import annotations

import codecs
import dataclasses
import mmap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from frictionless import Report, ReportTask

from catalogue.errors import MalformedFeed
from catalogue.schema.field_parsing import offset_expression, parse_expression
from catalogue.ingest.readers import check_declared_encoding, csv_labels
from catalogue.ingest.tables import TYPED
from catalogue.schema.sql_text import ident, literal, literal_list
from catalogue.schema.model import Field, TableSchema
from catalogue.ingest.validation import Validated, constraint_checks, output_select

BAD = "__bad"  # per row: some cell breaks its type or a constraint, or the row is malformed
NEVER_NULL = "\x01"  # DuckDB's null string; no cell is NULL unless null padding made it
BLOCK_BYTES = 8 << 20


class ScanFailed(Exception):
    """DuckDB could not read the delivery the way pyarrow would; read it with pyarrow."""


class RepeatedKey(Exception):
    """Two rows of a scanned delivery have the same primary key; the text path reports which."""


@dataclass
class CsvScan:
    """How DuckDB reads one CSV delivery: its read_csv() options and what a well-formed row is."""

    labels: list[str]
    options: str  # read_csv() arguments for the file and dialect
    columns: list[str]  # the columns read: the labels, and maybe one to catch cells beyond them
    reading: str  # read_csv() arguments for the cells: null string, padding, number and time formats
    complete: str  # SQL over the read columns: the row has exactly one cell per label
    missing_read_as_null: bool  # the reader maps the schema's missing values to NULL (else SQL does)
    latin1: bool  # read as latin-1 (which DuckDB refuses where it differs from cp1252), else as utf-8
    typed: dict[str, str] = dataclasses.field(default_factory=dict)  # label -> DuckDB type the reader parses it to

    def source(self) -> str:
        """The read_csv() call giving the rows."""
        types = "{" + ", ".join(f"{literal(c)}: {literal(self.typed.get(c, 'VARCHAR'))}" for c in self.columns) + "}"
        return f"read_csv({self.options}, columns = {types}, {self.reading}, header = true)"

    def header_source(self) -> str:
        """A read_csv() call giving the header as a row of text (padded with NULL)."""
        types = "{" + ", ".join(f"{literal(c)}: 'VARCHAR'" for c in self.columns) + "}"
        return f"read_csv({self.options}, columns = {types}, null_padding = true, header = false)"


@dataclass
class _Bytes:
    """What a pass over a file's bytes found."""

    quotes: bool = False  # a quote character anywhere
    blank_by_quote: bool = False  # a quote next to a blank
    delimiter_ends_line: bool = False  # a line (or the file) ending in the delimiter
    loose_number: bool = False  # '_', '+-' or a vertical tab, which DuckDB's number reading skips over


def validate_csv(
    con: duckdb.DuckDBPyConnection, path: Path, options: dict[str, Any], schema: TableSchema, scratch: Path,
    *, name: str, place: str, held: dict[str, bool] | None = None,
) -> Validated | None:
    """Validate the CSV at ``path`` with DuckDB: the outcome if it is valid, None if it is not.

    Raises ScanFailed where DuckDB cannot read it as pyarrow would. A cp1252 or
    latin-1 file is read as latin-1; if DuckDB refuses one of its bytes
    (0x80–0x9F), a utf-8 copy made with Python's codec (the one pyarrow uses)
    in the directory ``scratch`` is read instead. The primary key is left to
    the caller (see ``validate_scan``). ``held``: as for ``validate_delivery``.
    """
    scan = plan_csv_scan(path, options, schema)
    if scan is None:
        raise ScanFailed("DuckDB does not read this file as pyarrow would")
    try:
        return validate_scan(con, scan, schema, name=name, place=place, held=held)
    except ScanFailed as exc:
        if not (scan.latin1 and "latin-1" in str(exc)):
            raise
    utf8 = _transcoded(path, codecs.lookup(options.get("encoding", "utf-8")).name, scratch / "delivery.utf8.csv")
    scan = plan_csv_scan(utf8, {**options, "encoding": "utf-8"}, schema) if utf8 else None
    if scan is None:
        raise ScanFailed("a byte the declared encoding refuses")  # the text path reports it
    return validate_scan(con, scan, schema, name=name, place=place, held=held)


def plan_csv_scan(path: Path, options: dict[str, Any], schema: TableSchema) -> CsvScan | None:
    """How DuckDB reads the CSV at ``path`` as the text path would, or None where it cannot."""
    delimiter, quote = options.get("delimiter", ","), options.get("quote_char", '"')
    if not all(isinstance(c, str) and len(c) == 1 and c.isascii() and c not in "\r\n" for c in (delimiter, quote)):
        return None
    if delimiter == quote:
        return None
    try:
        encoding = codecs.lookup(options.get("encoding", "utf-8")).name
    except LookupError:
        return None
    if encoding not in ("utf-8", "iso8859-1", "cp1252") or not path.stat().st_size:
        return None
    try:
        labels = csv_labels(path, options)
        check_declared_encoding(path, encoding)  # (a lie goes to the text path, which reports it)
    except MalformedFeed:
        return None
    names = schema.names
    if len(set(labels)) != len(labels) or set(labels) != set(names) or any(_breaks_line(x) for x in labels):
        return None
    found = _scan_bytes(path, delimiter, quote)
    if found.blank_by_quote:
        return None
    latin1 = encoding != "utf-8"  # DuckDB's latin-1 is cp1252 but for the bytes it refuses
    read = (
        f"{literal(str(path))}, auto_detect = false, delim = {literal(delimiter)}, quote = {literal(quote)}, "
        f"escape = {literal(quote)}, encoding = {literal('latin-1' if latin1 else 'utf-8')}, strict_mode = true"
    )
    if not (found.quotes or found.delimiter_ends_line):
        # Every line ends in a cell, so a row with cells beyond the header's is refused as
        # strictly as one with fewer; no quotes, so no quoted line breaks either.
        missing = "[" + ", ".join(literal(v) for v in schema.missing_values) + "]"
        typed, reader_options = _reader_types(list(schema.fields), delimiter, found)
        return CsvScan(labels, read, labels, f"nullstr = {missing}{reader_options}", "true", True, latin1, typed)
    # DuckDB takes empty cells beyond the header's as a trailing delimiter: read one column
    # more, padded with NULL, and no null string, so NULL means "no such cell". Padding also
    # makes it refuse quoted line breaks.
    trail = next(t for t in (f"__trail{i}" for i in range(len(labels) + 1)) if t not in labels)
    complete = f"{ident(labels[-1])} IS NOT NULL AND {ident(trail)} IS NULL"  # padding fills from the right
    return CsvScan(labels, read, [*labels, trail], f"null_padding = true, nullstr = {literal(NEVER_NULL)}",
                   complete, False, latin1)


def _reader_types(fields: list[Field], delimiter: str, found: _Bytes) -> tuple[dict[str, str], str]:
    """Fields DuckDB's reader parses exactly as ``field_parsing`` does: name -> type, and read_csv() options.

    Numbers (one decimal mark for all, no group mark) where the file holds
    nothing DuckDB reads more loosely than NUMBER_RE but NaN and infinity,
    which validation sends to the text path. Fields whose constraints look at
    the text (length, pattern) stay text.
    """
    plain = [f for f in fields if not {"minLength", "maxLength", "pattern"} & set(f.constraints)]
    numbers = [f for f in plain if f.type == "number" and not f.group_char and f.bare_number]
    marks = {f.decimal_char for f in numbers}
    types: dict[str, str] = {}
    options = ""
    if len(marks) == 1 and (mark := marks.pop()) in ".," and mark != delimiter and not found.loose_number:
        types |= {f.name: "DOUBLE" for f in numbers}
        options += f", decimal_separator = {literal(mark)}"
    # Datetimes stay text: the reader's timestampformat reads '01.01.26' as the year 26 where
    # %Y wants four digits; field_parsing checks the whole value's widths first.
    return types, options


def validate_scan(
    con: duckdb.DuckDBPyConnection, scan: CsvScan, schema: TableSchema, *, name: str, place: str,
    held: dict[str, bool] | None = None,
) -> Validated | None:
    """Read and check the delivery with DuckDB; the outcome when it is valid, None when it is not.

    Raises ScanFailed when DuckDB cannot read the file. The primary key is
    not checked here: the caller checks it on the rows sorted by it (the
    relation's order), where a repeated key sits next to its twin.
    """
    started = time.perf_counter()
    fields = list(schema.fields)
    key = list(schema.primary_key)
    (keep_order,) = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()  # type: ignore[misc]
    try:
        con.execute("SET preserve_insertion_order = true")
        first = con.execute(f"SELECT * FROM {scan.header_source()} LIMIT 1").fetchone()
        if first is None or list(first) != [*scan.labels, *[None] * (len(scan.columns) - len(scan.labels))]:
            raise ScanFailed("DuckDB does not see the header pyarrow sees")
        if key:  # sorted by it later; without a key, the rows keep the delivery's order (rowid)
            con.execute(f"SET preserve_insertion_order = {str(bool(keep_order)).lower()}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE {TYPED} AS {_typing_sql(scan, fields, key, schema)}")
    except duckdb.ConversionException:  # a cell the reader cannot type: the text path lists it
        con.execute(f"DROP TABLE IF EXISTS {TYPED}")
        return None
    except duckdb.Error as exc:
        con.execute(f"DROP TABLE IF EXISTS {TYPED}")
        raise ScanFailed(str(exc)) from exc
    finally:
        con.execute(f"SET preserve_insertion_order = {str(bool(keep_order)).lower()}")
    unique = [ident(f"f{i}") for i, f in enumerate(fields)
              if f.unique and [f.name] != key]
    offsets = _offset_fields(fields)
    rows, bad, *counts = con.execute(
        f"SELECT count(*), coalesce(bool_or({BAD}), false)"
        + "".join(f", count({c}) - count(DISTINCT {c})" for c in unique)
        + "".join(f", bool_or(z{i}), bool_and(z{i})" for i in offsets) + f" FROM {TYPED}"
    ).fetchone()  # type: ignore[misc]
    counts, zones = counts[:len(unique)], counts[len(unique):]
    held = held or {}
    kinds = {fields[i].name: (some, every) for i, some, every in zip(offsets, zones[::2], zones[1::2])}
    if bad or any(counts) or any(
            (some and not every) or (some is not None and fields_held is not None and some != fields_held)
            for name, (some, every) in kinds.items() for fields_held in [held.get(name)]):
        # (offsets on some values of a datetime field only, or not as in the version appended
        # to: the text path names the rows)
        con.execute(f"DROP TABLE IF EXISTS {TYPED}")
        return None
    columns = {f.name: ident(f"f{i}") for i, f in enumerate(fields)}
    instants = {name for name, (some, _) in kinds.items() if some or held.get(name)}
    select = output_select(fields, columns, instants)
    key_order = [columns[k] for k in key] or ["rowid"]
    seconds = round(time.perf_counter() - started, 3)
    task = ReportTask(
        name=name, type="table", valid=True, place=place, labels=scan.labels, warnings=[],
        stats={"errors": 0, "warnings": 0, "rows": rows, "fields": len(fields), "seconds": seconds}, errors=[],
    )
    report = Report.from_validation(time=seconds, tasks=[task]).to_descriptor()
    return Validated(valid=True, report=report, error_count=0, rows=rows,
                     relation=f"SELECT {select} FROM {TYPED} ORDER BY {', '.join(key_order)}",
                     select=select, columns=columns, key_order=key_order)


def repeats_key(con: duckdb.DuckDBPyConnection, relation: str, key: list[str]) -> bool:
    """Whether two rows of ``relation`` have the same ``key`` (for rows that are not read sorted by it)."""
    using = ", ".join(ident(k) for k in key)
    return con.execute(
        f"SELECT 1 FROM ({relation}) GROUP BY {using} HAVING count(*) > 1 LIMIT 1").fetchone() is not None


class SortedKeyWatch:
    """Watches batches of rows sorted by ``key`` go by; raises RepeatedKey where a row repeats its predecessor."""

    def __init__(self, key: list[str]) -> None:
        self.key = key
        self.last: list[pa.Array] | None = None  # the previous batch's last row, one array per key column

    def check(self, batch: pa.RecordBatch) -> None:
        """Raise RepeatedKey if a row of ``batch`` has the key of the row before it."""
        if not batch.num_rows:
            return
        columns = [batch.column(k) for k in self.key]
        if self.last is not None and _all_same([(c.slice(0, 1), last) for c, last in zip(columns, self.last)]):
            raise RepeatedKey()
        if batch.num_rows > 1 and _all_same([(c.slice(1), c.slice(0, batch.num_rows - 1)) for c in columns]):
            raise RepeatedKey()
        self.last = [c.slice(batch.num_rows - 1) for c in columns]


def _all_same(pairs: list[tuple[pa.Array, pa.Array]]) -> bool:
    """Whether in some position every pair of arrays holds equal values (NaN equals NaN, as in GROUP BY)."""
    same = None
    for a, b in pairs:
        equal = pc.equal(a, b)
        if pa.types.is_floating(a.type):
            equal = pc.or_(equal, pc.and_(pc.is_nan(a), pc.is_nan(b)))
        same = equal if same is None else pc.and_(same, equal)
    return bool(same is not None and pc.any(same).as_py())


def _typing_sql(scan: CsvScan, fields: list[Field], key: list[str], schema: TableSchema) -> str:
    """SELECT over the read_csv() call: each field typed (f<i>) and whether the row has a problem."""
    missing = literal_list(list(schema.missing_values))
    raw = [f"{ident(f.name)} AS __r{i}" if scan.missing_read_as_null else
           f"CASE WHEN {ident(f.name)} IN {missing} THEN NULL ELSE {ident(f.name)} END AS __r{i}"
           for i, f in enumerate(fields)]
    typed = [f"{f'__r{i}' if f.name in scan.typed else parse_expression(f'__r{i}', f)} AS __t{i}"
             for i, f in enumerate(fields)]
    checks = [] if scan.complete == "true" else ["NOT __complete"]
    for i, field in enumerate(fields):
        conditions = {tag: condition for tag, condition, _ in
                      constraint_checks(field, f"__r{i}", f"__t{i}", field.name in key)}
        parsed = field.type != "string" and field.name not in scan.typed
        if parsed and "required" in conditions:  # unreadable or missing: no typed value either way
            del conditions["required"]
            checks.append(f"__t{i} IS NULL")
        elif parsed:
            checks.append(f"(__r{i} IS NOT NULL AND __t{i} IS NULL)")
        if scan.typed.get(field.name) == "DOUBLE":  # NaN and infinity: the text path decides
            checks.append(f"NOT isfinite(__t{i})")
        checks += conditions.values()
    out = [f"__t{i} AS {ident(f'f{i}')}" for i in range(len(fields))]
    out += [f"CASE WHEN __t{i} IS NOT NULL THEN {offset_expression(f'__r{i}', fields[i])} END AS z{i}"
            for i in _offset_fields(fields)]
    # A condition on a NULL cell is NULL, which counts as met: TRUE wins an OR over NULL.
    return (f"SELECT {', '.join(out)}, coalesce({' OR '.join(checks) or 'false'}, false) AS {BAD} FROM "
            f"(SELECT *, {', '.join(typed)} FROM "
            f"(SELECT {', '.join(raw)}, {scan.complete} AS __complete FROM {scan.source()}))")


def _offset_fields(fields: list[Field]) -> list[int]:
    """The ISO datetime fields, whose values may or may not carry offsets (z<i>: whether each does)."""
    return [i for i, f in enumerate(fields) if offset_expression("x", f) is not None]


def _breaks_line(label: str) -> bool:
    return "\n" in label or "\r" in label


def _scan_bytes(path: Path, delimiter: str, quote: str) -> _Bytes:
    """What one pass over the file's bytes finds.

    The file is mapped, not read, and each block is unmapped once looked at:
    mapped pages count in the process's resident memory.
    """
    q, d = quote.encode("ascii"), ord(delimiter)
    blanks = (b" " + q, q + b" ", b"\t" + q, q + b"\t")
    found = _Bytes()
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
        size = len(view)
        # Numbers are looked at after the header (field names may well hold a '_').
        header_end = [i for i in (view.find(b"\n", 0, BLOCK_BYTES), view.find(b"\r", 0, BLOCK_BYTES)) if i >= 0]
        body = min(header_end) + 1 if header_end else 0
        for start in range(0, size, BLOCK_BYTES):
            end = min(size, start + BLOCK_BYTES)
            back = max(0, start - 1)  # pairs across blocks
            if not found.quotes:
                found.quotes = view.find(q, start, end) >= 0
            if found.quotes and not found.blank_by_quote:
                found.blank_by_quote = any(view.find(b, back, end) >= 0 for b in blanks)
            block = np.frombuffer(view, np.uint8, count=end - back, offset=back)
            if not found.delimiter_ends_line:  # (block[0] is the previous block's last byte, or the file's first)
                ends = block[1:] == 10
                if view.find(b"\r", start, end) >= 0:
                    ends |= block[1:] == 13
                found.delimiter_ends_line = bool(np.any(ends & (block[:-1] == d)))
            if not found.loose_number and end > body:
                first = max(start, body)
                found.loose_number = (view.find(b"_", first, end) >= 0 or view.find(b"\x0b", first, end) >= 0
                                      or (view.find(b"+", first, end) >= 0 and view.find(b"+-", max(back, body), end) >= 0))
            del block
            view.madvise(mmap.MADV_DONTNEED, start, end - start)
        found.delimiter_ends_line = found.delimiter_ends_line or (size > 0 and view[size - 1] == d)
    return found


def _transcoded(path: Path, encoding: str, target: Path) -> Path | None:
    """A utf-8 copy of ``path`` (or None if a byte is not valid in ``encoding``)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        with open(path, "rb") as src, open(target, "wb") as dst:
            for block in iter(lambda: src.read(BLOCK_BYTES), b""):
                dst.write(decoder.decode(block).encode("utf-8"))
            dst.write(decoder.decode(b"", final=True).encode("utf-8"))
    except UnicodeDecodeError:
        target.unlink(missing_ok=True)
        return None
    return target
