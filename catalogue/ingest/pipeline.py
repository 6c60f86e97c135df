"""The ingest pipeline: a delivery is read, validated, and published or quarantined.

Steps, each in its own module: read and validate the rows (``readers``,
``csv_scan``, ``validation``), then either quarantine them with their report
(``quarantine``) or write content-addressed parts (``parts``) and commit the
next version under the dataset's lock (``commit``; the order of files and
transaction is described in ARCHITECTURE.md). A failure anywhere leaves the
previous version current and intact; files written before it are
leftovers for the collector (``gc``). Harvest jobs are written by ``jobs``
alone.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from frictionless import Report, errors
from sqlalchemy import select

from catalogue import duck
from catalogue.errors import DatasetNotFound, MalformedFeed
from catalogue.hub import Hub
from catalogue.ingest import tables
from catalogue.ingest.commit import Offer, check_base, publish
from catalogue.ingest.csv_scan import RepeatedKey, ScanFailed, validate_csv
from catalogue.ingest.dialect import apply_dialect, number_hint
from catalogue.ingest.evolution import refusal_report, refused_changes
from catalogue.redact import redact_url
from catalogue.ingest.delivery import MODES, Delivery, IngestResult
from catalogue.ingest.latest import keep_live_values
from catalogue.ingest.quarantine import quarantine
from catalogue.ingest.readers import open_delivery
from catalogue.ingest.validation import Validated, discard_typed, stored_instants, validate_delivery
from catalogue.meta.models import Dataset, Version
from catalogue.schema.sql_text import literal
from catalogue.schema.model import TableSchema
from catalogue.store import layout
from catalogue.store.iceberg import register_after_commit
from catalogue.store.keys import part_key

__all__ = ["MODES", "Delivery", "IngestResult", "ingest_delivery"]


@dataclass(frozen=True)
class Target:
    """The dataset a delivery is for, as it was when the ingest started."""

    name: str
    schema: TableSchema
    current: Version | None


def ingest_delivery(hub: Hub, dataset_name: str, delivery: Delivery, job_id: int | None = None) -> IngestResult:
    """Validate ``delivery`` and publish it as the dataset's next version if it is valid and new.

    An invalid or unreadable delivery is quarantined with its report; the
    current version does not change. Rows stream through DuckDB, which spills
    to the store's scratch space beyond its memory limit. A published version
    gets its live values (``catalogue.ingest.latest``) and, with ``iceberg_catalog_url`` set, its Iceberg
    snapshot (``catalogue.store.iceberg``) before this returns; neither can undo the commit.
    """
    result = _ingest(hub, dataset_name, delivery, job_id)
    if result.status == "published" and result.version is not None:
        keep_live_values(hub, result.dataset, result.version)
        register_after_commit(hub, result.dataset, result.version)
    return result


def _ingest(hub: Hub, dataset_name: str, delivery: Delivery, job_id: int | None) -> IngestResult:
    target = _load_target(hub, dataset_name)
    try:
        if delivery.base_version is not None:
            check_base(target.name, delivery.base_version, target.current)
        # The source's dialect options (decimal_char, date_format...) fill in what the fields leave open.
        target = Target(target.name, apply_dialect(target.schema, delivery.options), target.current)
        if target.current is not None:
            refused = refused_changes(target.current.schema, target.schema)
            if refused:
                result = quarantine(hub, target.name, delivery, refusal_report(refused, target.name),
                                    current=target.current, rows=0, job_id=job_id)
                result.note = f"schema change refused: {refused[0]}"
                return result
        with _workspace(hub, target) as (con, spill):
            read_by_duckdb = False
            held = _held_instants(hub, con, target, delivery)
            if delivery.format == "csv":
                read_by_duckdb, published = _try_csv_scan(hub, con, spill, target, delivery, job_id, held)
                if published is not None:
                    return published
            checked = _validate(hub, con, target, delivery, exact_first=not read_by_duckdb, held=held)
            if isinstance(checked, dict):  # unreadable: a report of one format error
                return quarantine(hub, target.name, delivery, checked, current=target.current, rows=0, job_id=job_id)
            if not checked.valid or checked.relation is None:
                result = quarantine(hub, target.name, delivery, checked.report, current=target.current,
                                    rows=checked.rows, job_id=job_id)
                hint = number_hint(checked.report, target.schema)
                result.note = f"{result.note}. {hint}" if hint else result.note
                return result
            return _publish_valid(hub, con, target, checked, delivery, job_id)
    finally:
        if delivery.path is not None:
            delivery.path.unlink(missing_ok=True)


def _load_target(hub: Hub, name: str) -> Target:
    with hub.sessions() as session:
        dataset = session.scalar(select(Dataset).where(Dataset.name == name))
        if dataset is None:
            raise DatasetNotFound(f"There is no dataset named '{name}'.")
        return Target(name, dataset.schema, dataset.current_version)


@contextmanager
def _workspace(hub: Hub, target: Target) -> Iterator[tuple[duckdb.DuckDBPyConnection, Path]]:
    """A DuckDB database in a scratch directory of its own, removed afterwards.

    The typed rows live in a table DuckDB can evict to disk, so deliveries of
    any size validate and sort within the memory limit.
    """
    settings = hub.settings
    spill = hub.storage.new_scratch_file(".ingest")
    spill.unlink()
    spill.mkdir()
    # Spatial only for geometry, in this delivery or the version it is compared with.
    current = target.current
    spatial = bool(target.schema.geometry_fields or (current and current.schema.geometry_fields))
    try:
        con = duck.connect(memory_limit_mb=settings.ingest_memory_limit_mb, threads=settings.duckdb_threads,
                           database=str(spill / "ingest.duckdb"), spatial=spatial)
        try:
            con.execute(f"SET temp_directory = {literal(str(spill / 'tmp'))}")
            hub.storage.prepare_duckdb(con)  # the current version's parts are read to compare and merge
            # Every read of the typed rows has an explicit ORDER BY; not keeping insertion order
            # lets DuckDB sort and spill within the memory limit.
            con.execute("SET preserve_insertion_order = false")
            yield con, spill
        finally:
            discard_typed(con)
            con.execute(f"DROP TABLE IF EXISTS {tables.NEW}")
            con.close()
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def _held_instants(hub: Hub, con: duckdb.DuckDBPyConnection, target: Target, delivery: Delivery) -> dict[str, bool]:
    """Appending: per ISO datetime field, whether the current version stores instants (the delivery must keep to it)."""
    current = target.current
    if delivery.mode != "append" or current is None or not current.parts:
        return {}
    uri = hub.storage.engine_uri(part_key(target.name, current.parts[0]["sha256"]))
    return stored_instants(con, uri, target.schema)


def _try_csv_scan(hub: Hub, con: duckdb.DuckDBPyConnection, spill: Path, target: Target, delivery: Delivery,
                  job_id: int | None, held: dict[str, bool]) -> tuple[bool, IngestResult | None]:
    """Publish a CSV file through DuckDB's parallel reader if it reads and validates there.

    Returns whether DuckDB read the whole file (then only the text path's
    report is missing, and pyarrow's exact-types pass is skipped) and the
    result if it was published.
    """
    place = redact_url(delivery.provenance.get("source_url", "push"))
    try:
        scanned = validate_csv(con, _on_disk(delivery, spill), delivery.options, target.schema, spill,
                               name=target.name, place=place, held=held)
    except ScanFailed:
        return False, None
    if scanned is None:
        return True, None
    try:
        return True, _publish_valid(hub, con, target, scanned, delivery, job_id, check_key=True)
    except RepeatedKey:
        discard_typed(con)
        return True, None


def _validate(hub: Hub, con: duckdb.DuckDBPyConnection, target: Target, delivery: Delivery, *,
              exact_first: bool, held: dict[str, bool]) -> Validated | dict[str, Any]:
    """The delivery validated; a report of one format error if it cannot be read at all.

    pyarrow reads it with exact types for plain numbers and booleans (fast);
    if a cell does not read that way, or the delivery is invalid, again as
    text so the report quotes every cell as it was delivered.
    """
    place = redact_url(delivery.provenance.get("source_url", "push"))
    checked: Validated | None = None
    for exact in (True, False) if exact_first else (False,):
        try:
            raw = open_delivery(delivery.source, delivery.format, delivery.options, target.schema, exact_types=exact)
            checked = validate_delivery(con, raw.batches, target.schema, labels=raw.labels, name=target.name,
                                        place=place, max_errors=hub.settings.max_report_errors, held=held)
        except MalformedFeed as exc:
            if exact:
                continue
            unreadable: dict[str, Any] = Report.from_validation(errors=[errors.FormatError(note=exc.message)]).to_descriptor()
            for key, name in (("line", "line"), ("record", "record"), ("row", "rowNumber")):
                if key in exc.details:  # where in the delivery, when the reader knows it (kept on the job)
                    unreadable["errors"][0][name] = exc.details[key]
            return unreadable
        if checked.valid:
            break
    assert checked is not None
    return checked


def _on_disk(delivery: Delivery, spill: Path) -> Path:
    """The delivery's file (its bytes written to ``spill`` if it came as bytes)."""
    if delivery.path is not None:
        return delivery.path
    path = spill / f"delivery.{delivery.format}"
    path.write_bytes(delivery.content)
    return path


def _publish_valid(hub: Hub, con: duckdb.DuckDBPyConnection, target: Target, checked: Validated, delivery: Delivery,
                   job_id: int | None, *, check_key: bool = False) -> IngestResult:
    """Commit a valid delivery; ``check_key``: its primary key is still to be checked (RepeatedKey)."""
    assert checked.relation is not None
    appending = delivery.mode == "append" and target.current is not None
    offer = Offer(
        dataset=target.name, schema=target.schema, relation=checked.relation, rows=checked.rows,
        report=checked.report, mode=delivery.mode, provenance=delivery.provenance, job_id=job_id,
        check_key=check_key, windows=() if appending else _time_windows(con, checked, target.schema, hub),
        pinned=delivery.base_version is not None,
    )
    return publish(hub, con, offer, target.current)


def _time_windows(con: duckdb.DuckDBPyConnection, checked: Validated, schema: TableSchema, hub: Hub) -> tuple[str, ...]:
    """When the key has a time (``catalogue.store.layout``), a query of each time window's rows sorted by key.

    DuckDB sorts ten 1M-row windows one by one in about 70 % of the time it
    takes to sort all 10M rows by (window, key) at once, and spills the same.
    """
    time_name = layout.time_field(schema)
    if time_name is None:
        return ()
    windows = layout.time_windows(con, tables.TYPED, checked.columns[time_name], checked.rows,
                                  hub.settings.part_max_rows)
    order = ", ".join(checked.key_order)
    return tuple(f"SELECT {checked.select} FROM {tables.TYPED} WHERE {window} ORDER BY {order}" for window in windows)
