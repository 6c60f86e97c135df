"""The export formats written as files: parquet and xlsx.

A whole version's Parquet is its part (or its parts combined once and kept in
storage); anything filtered, and every workbook, is written to a scratch file
that is deleted once sent.
"""

from __future__ import annotations


import duckdb

from catalogue.errors import InvalidParameter
from catalogue.hub import Hub
from catalogue.query.engine import QueryEngine, VersionRef
from catalogue.query.formats.base import Export, ExportFile, ExportRows, StoredExport, RowFormat, disk_full, params_in, scratch_file
from catalogue.query.records import engine_error
from catalogue.query.spreadsheet import XLSX_MAX_ROWS, write_xlsx
from catalogue.schema.sql_text import literal
from catalogue.store.changes import parquet_scan

FILE_CHUNK_BYTES = 1 << 20


def _copy_options(hub: Hub) -> str:
    # USE_TMP_FILE false: the scratch file is already ours to remove on failure; DuckDB's own tmp_ file would not be.
    return f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {hub.settings.row_group_rows}, USE_TMP_FILE false)"


def parquet_key(engine: QueryEngine, ref: VersionRef) -> str:
    """The storage key of one Parquet file holding the whole version (GeoParquet where there is geometry).

    A one-part version is its part; a multipart version is combined once and
    kept, keyed by the version's content hash (versions never change).
    """
    hub = engine.hub
    if len(ref.keys) == 1:
        return ref.keys[0]
    key = f"exports/{ref.dataset}/{ref.content_hash}.parquet"
    if not hub.storage.exists(key):
        with scratch_file(hub, ".parquet", "parquet") as scratch:
            cur = engine.cursor()
            try:
                cur.execute(f"COPY (SELECT * FROM {parquet_scan(list(ref.uris))}) TO {literal(str(scratch))} "
                            f"{_copy_options(hub)}")
            finally:
                cur.close()
            hub.storage.publish_file(key, scratch)
    return key


class ParquetFormat(RowFormat):
    """Apache Parquet (GeoParquet where there is geometry)."""

    name = "parquet"
    media_type = "application/vnd.apache.parquet"
    extension = "parquet"
    order = 50

    def whole(self, engine: QueryEngine, ref: VersionRef) -> Export | None:
        # Sent as it is stored, local file or object (the server answers Range requests from either).
        return StoredExport(parquet_key(engine, ref))

    def write(self, rows: ExportRows) -> ExportFile:
        """The plan's rows written by DuckDB into a scratch Parquet file."""
        hub, cur, plan = rows.hub, rows.cur, rows.plan
        try:
            with scratch_file(hub, ".parquet", "parquet") as scratch:
                sql = f"COPY ({plan.sql}) TO {literal(str(scratch))} {_copy_options(hub)}"
                try:
                    cur.execute(sql, params_in(sql, plan))
                except duckdb.Error as exc:
                    if disk_full(exc):
                        raise  # scratch_file says so
                    raise engine_error(exc) from exc
        finally:
            cur.close()
        return ExportFile(scratch, temporary=True)


class XlsxFormat(RowFormat):
    """An Excel workbook of one sheet (at most 1,048,575 rows below its header)."""

    name = "xlsx"
    media_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    extension = "xlsx"
    order = 60

    def write(self, rows: ExportRows) -> ExportFile:
        cur, plan = rows.cur, rows.plan
        try:
            (count,) = cur.execute(plan.count_sql, params_in(plan.count_sql, plan)).fetchone()  # type: ignore[misc]
        except duckdb.Error as exc:
            raise engine_error(exc) from exc
        if count + 1 > XLSX_MAX_ROWS:
            raise InvalidParameter(
                f"This export has {count:,} rows; an Excel sheet holds at most {XLSX_MAX_ROWS - 1:,} below its header. "
                "Narrow it with where, or use csv or parquet.", details={"parameter": "format", "rows": count})
        reader = rows.reader(rows.named("xlsx"))
        with scratch_file(rows.hub, ".xlsx", "xlsx") as scratch:
            write_xlsx(rows.batches(reader), reader.schema, scratch, rows.ref.dataset)
        return ExportFile(scratch, temporary=True)
