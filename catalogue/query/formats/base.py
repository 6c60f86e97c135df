"""What every export format shares: its Protocol, the rows it is handed, and the files it may write.

An export format (csv, json, parquet, ...) turns the rows of one query over a
version into a download. Formats register under the ``urbandata.export_formats``
entry point (pyproject.toml), as harvesters do, and are found by name through
the hub's registry. A format writes *rows*; a document *about* a version (a Data
Package descriptor, DCAT) is a metadata exporter instead
(:mod:`catalogue.query.metadata_exporters`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa

from catalogue.errors import DISK_FULL_ERRNOS, InsufficientStorage
from catalogue.hub import Hub
from catalogue.query.engine import QueryEngine, VersionRef
from catalogue.query.records import Plan, RecordsRequest, engine_error
from catalogue.schema.sql_text import ident, iso_timestamp, json_value

BATCH_ROWS = 10_000


@dataclass(frozen=True)
class CsvOptions:
    """How a CSV export is written."""

    delimiter: str = ","
    with_bom: bool = False
    number_style: str = "international"


@dataclass(frozen=True)
class ExportFile:
    """An export served as a local file; ``temporary`` ones are scratch files to delete once sent."""

    path: Path
    temporary: bool


@dataclass(frozen=True)
class StoredExport:
    """An export that is a file in the storage as it is (sent with Range answered, wherever it is kept)."""

    key: str


Export = ExportFile | StoredExport | Iterator[bytes]


def params_in(sql: str, plan: Plan) -> dict[str, Any]:
    """The plan's parameters that ``sql`` uses (DuckDB refuses unused named parameters)."""
    return {k: v for k, v in plan.params.items() if f"${k}" in sql}


@dataclass(frozen=True)
class ExportRows:
    """The bound query of one export, handed to a format's ``write``.

    ``cur`` is the format's to close: a streamed export closes it after the last
    batch (:meth:`batches`), a file export once the file is written; if ``write``
    raises, the caller closes it.
    """

    hub: Hub
    ref: VersionRef
    cur: duckdb.DuckDBPyConnection
    plan: Plan
    columns: list[tuple[str, str]]  # (name, DuckDB type) of the output columns
    options: CsvOptions

    def reader(self, select: str) -> pa.RecordBatchReader:
        """Batches of ``SELECT <select> FROM (<the plan>) AS q``; engine errors become invalid-query."""
        sql = f"SELECT {select} FROM ({self.plan.sql}) AS q"
        try:
            return self.cur.execute(sql, params_in(sql, self.plan)).to_arrow_reader(BATCH_ROWS)
        except duckdb.Error as exc:
            raise engine_error(exc) from exc

    def batches(self, reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        """The reader's batches; the cursor is closed after the last one (or when the consumer stops)."""
        try:
            yield from reader
        finally:
            self.cur.close()

    def rendered(self, target: str) -> list[str]:
        """Select items over ``q`` turning each column into what ``target`` (json, csv, xlsx) holds."""
        out = []
        for name, kind in self.columns:
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

    def named(self, target: str) -> str:
        """The rendered columns of ``target`` as a select list keeping their names."""
        return ", ".join(f"{sql} AS {ident(name)}" for (name, _), sql in zip(self.columns, self.rendered(target)))


class ExportFormat(Protocol):
    """One export format: its name, how HTTP labels it, and its writer.

    ``order`` places it in lists shown to users (the built-ins 10 to 60; others
    after them by default). ``check`` refuses, before any query runs, what the
    format cannot hold; ``whole`` may answer an unfiltered export of the whole
    version from stored files (None: write it from the rows like any other).
    """

    name: str
    media_type: str
    extension: str
    order: int

    def check(self, ref: VersionRef, query: RecordsRequest) -> None:
        """Raise a catalogue error if this version or request cannot be exported in this format."""

    def whole(self, engine: QueryEngine, ref: VersionRef) -> Export | None:
        """The whole version as stored, or None to write it from rows."""

    def write(self, rows: ExportRows) -> Export:
        """The rows as a file to send or bytes to stream."""


class RowFormat:
    """Defaults for a format written from rows: nothing to refuse early, no stored shortcut."""

    order = 100

    def check(self, ref: VersionRef, query: RecordsRequest) -> None:
        return None

    def whole(self, engine: QueryEngine, ref: VersionRef) -> Export | None:
        return None


# -- scratch files ---------------------------------------------------------

# What the OS says when a file cannot grow: a full disk, a file-size limit (RLIMIT_FSIZE), a full quota.
_FULL_MESSAGES = tuple(os.strerror(code) for code in sorted(DISK_FULL_ERRNOS))


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says a file could not be written for lack of space.

    DuckDB and pyarrow give only text; xlsxwriter wraps the OSError in its own error, so the chain is followed.
    """
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno in DISK_FULL_ERRNOS:
            return True
        if isinstance(seen, (OSError, duckdb.Error)) and any(m in str(seen) for m in _FULL_MESSAGES):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextmanager
def scratch_file(hub: Hub, suffix: str, fmt: str) -> Iterator[Path]:
    """A scratch file to write an export into, removed if writing fails; a full disk is InsufficientStorage."""
    full = InsufficientStorage(
        f"The server's disk is full, so the {fmt} export could not be written. Try again later, or download "
        "csv, json or ndjson, which stream without writing a file.", details={"format": fmt})
    try:
        scratch = hub.storage.new_scratch_file(suffix)
    except OSError as exc:
        if disk_full(exc):
            raise full from exc
        raise
    try:
        yield scratch
    except BaseException as exc:
        scratch.unlink(missing_ok=True)
        if disk_full(exc):
            raise full from exc
        raise
