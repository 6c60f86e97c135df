"""The versioned store: validate a delivery, write parts, commit a version.

Commit order (DESIGN.md): content-addressed Parquet parts (temp file, fsync,
rename), then the version's Data Package descriptor the same way, then one
database transaction inserts the version and moves the dataset's current
pointer. A failure anywhere leaves the previous version current and intact;
files written before the failure are unreferenced garbage.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from frictionless import Report, errors
from sqlalchemy import func, select

from catalogue import duck
from catalogue.changes import parquet_scan, summarize_changes
from catalogue.datapackage import build_descriptor
from catalogue.errors import DatasetNotFound, MalformedFeed
from catalogue.geoparquet import geo_metadata, with_geo_metadata
from catalogue.hub import Hub
from catalogue.models import Dataset, HarvestJob, Version, utcnow
from catalogue.readers import read_delivery
from catalogue.sql_text import ident
from catalogue.table_schema import geometry_fields, primary_key, schema_hash
from catalogue.validation import validate_delivery

MODES = ("replace", "append")


@dataclass
class Delivery:
    """Bytes delivered for one dataset, with how to read them and where they came from."""

    content: bytes
    format: str
    options: dict[str, Any] = field(default_factory=dict)
    mode: str = "replace"
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass
class IngestResult:
    """What became of a delivery."""

    status: str  # published | unchanged | quarantined
    dataset: str
    version: int | None
    rows: int
    report: dict[str, Any]
    changes: dict[str, Any] | None = None
    report_key: str | None = None

    @property
    def message(self) -> str:
        """One line for people: what happened."""
        if self.status == "published":
            c = self.changes or {}
            return (f"{self.dataset}: published version {self.version} ({self.rows} rows; "
                    f"+{c.get('added', 0)} −{c.get('removed', 0)} ~{c.get('changed', 0)})")
        if self.status == "unchanged":
            return f"{self.dataset}: unchanged, version {self.version} stays current"
        count = self.report.get("stats", {}).get("errors", 0)
        return f"{self.dataset}: quarantined, {count} validation errors; version {self.version or '—'} stays current"


def part_key(dataset: str, sha256: str) -> str:
    """Storage key of a content-addressed part."""
    return f"datasets/{dataset}/parts/{sha256}.parquet"


def descriptor_key(dataset: str, number: int) -> str:
    """Storage key of a version's Data Package descriptor."""
    return f"datasets/{dataset}/v{number}.datapackage.json"


def ingest_delivery(hub: Hub, dataset_name: str, delivery: Delivery, job_id: int | None = None) -> IngestResult:
    """Validate ``delivery`` and publish it as the dataset's next version if it is valid and new.

    An invalid or unreadable delivery is quarantined with its report; the
    current version does not change.
    """
    with hub.sessions() as session:
        dataset = session.scalar(select(Dataset).where(Dataset.name == dataset_name))
        if dataset is None:
            raise DatasetNotFound(f"There is no dataset named '{dataset_name}'.")
        schema = dataset.table_schema
        current = dataset.current_version
    place = delivery.provenance.get("source_url", "push")
    con = duck.connect(memory_limit_mb=hub.settings.duckdb_memory_limit_mb, threads=hub.settings.duckdb_threads)
    con.execute("SET enable_geoparquet_conversion = false")  # compare geometry as WKB bytes
    try:
        try:
            raw = read_delivery(delivery.content, delivery.format, delivery.options, schema)
        except MalformedFeed as exc:
            report = Report.from_validation(errors=[errors.FormatError(note=exc.message)]).to_descriptor()
            return _quarantine(hub, dataset_name, delivery, report, job_id, current, 0)
        checked = validate_delivery(
            con, raw, schema, name=dataset_name, place=place, max_errors=hub.settings.max_report_errors
        )
        if not checked.valid and any(not pa.types.is_string(t) for t in raw.schema.types):
            # The report quotes cells as delivered: read the invalid delivery again as text.
            raw = read_delivery(delivery.content, delivery.format, delivery.options, schema, exact_types=False)
            checked = validate_delivery(
                con, raw, schema, name=dataset_name, place=place, max_errors=hub.settings.max_report_errors
            )
        if not checked.valid or checked.table is None:
            return _quarantine(hub, dataset_name, delivery, checked.report, job_id, current, raw.num_rows)
        return _publish(hub, con, dataset_name, schema, checked.table, checked.report, delivery, job_id, current)
    finally:
        con.close()


def _publish(
    hub: Hub, con: duckdb.DuckDBPyConnection, name: str, schema: dict[str, Any], table: pa.Table,
    report: dict[str, Any], delivery: Delivery, job_id: int | None, current: Version | None,
) -> IngestResult:
    storage = hub.storage
    key = primary_key(schema)
    old_parts = list(current.parts) if current else []
    old_uris = [storage.engine_uri(part_key(name, p["sha256"])) for p in old_parts]
    if delivery.mode == "append" and old_parts:
        table = _only_new_rows(con, table, old_uris, key)
    geo_columns = geometry_fields(schema)
    if geo_columns and table.num_rows:
        table = with_geo_metadata(table, geo_metadata(con, table, geo_columns))
    # Append mode with nothing new adds no part; every other delivery writes at least one
    # (possibly empty) part, so a version always has a file carrying its schema.
    new_parts = [] if delivery.mode == "append" and old_parts and not table.num_rows else _write_parts(hub, name, table)
    parts = (old_parts + new_parts) if delivery.mode == "append" else new_parts
    content_hash = hashlib.sha256(
        (schema_hash(schema) + "".join(p["sha256"] for p in parts)).encode()
    ).hexdigest()
    rows = sum(p["rows"] for p in parts)
    report_key = f"datasets/{name}/reports/delivery-{job_id or utcnow().strftime('%Y%m%dT%H%M%S%f')}.json"
    storage.write_bytes(report_key, json.dumps(report, indent=1, ensure_ascii=False).encode())
    if current is not None and current.content_hash == content_hash:
        _finish_job(hub, job_id, "unchanged", f"identical to version {current.number}", report_key, current.number, rows)
        return IngestResult("unchanged", name, current.number, rows, report, report_key=report_key)
    new_uris = [storage.engine_uri(part_key(name, p["sha256"])) for p in parts]
    changes = summarize_changes(con, old_uris, new_uris, current.table_schema if current else schema, schema)
    changes["schema_changed"] = current is not None and schema_hash(current.table_schema) != schema_hash(schema)
    provenance = dict(delivery.provenance, mode=delivery.mode, schema_hash=schema_hash(schema), harvest_job=job_id)
    with hub.sessions.begin() as session:
        dataset = session.scalar(select(Dataset).where(Dataset.name == name).with_for_update())
        assert dataset is not None
        number = (session.scalar(select(func.max(Version.number)).where(Version.dataset_id == dataset.id)) or 0) + 1
        version = Version(
            dataset_id=dataset.id, number=number, row_count=rows, bytes=sum(p["bytes"] for p in parts),
            content_hash=content_hash, descriptor_key=descriptor_key(name, number), parts=parts, table_schema=schema,
            changes=changes, provenance=provenance, harvest_job_id=job_id, created_at=utcnow(),
        )
        descriptor = build_descriptor(hub.settings, dataset, version)
        # The descriptor is written before the transaction commits: a crash leaves an
        # unreferenced file, never a referenced version without its descriptor.
        storage.write_bytes(version.descriptor_key, json.dumps(descriptor, indent=1, ensure_ascii=False).encode())
        session.add(version)
        session.flush()
        dataset.current_version_id = version.id
        dataset.modified_at = version.created_at
        if job_id is not None:
            job = session.get(HarvestJob, job_id)
            if job is not None:
                _set_job(job, "published", f"version {number}", report_key, number, rows)
    return IngestResult("published", name, number, rows, report, changes=changes, report_key=report_key)


def _only_new_rows(con: duckdb.DuckDBPyConnection, table: pa.Table, old_uris: list[str], key: list[str]) -> pa.Table:
    """Rows of ``table`` not yet in the current version (by primary key, else whole row)."""
    con.register("__new", table)
    try:
        if key:
            using = ", ".join(ident(k) for k in key)
            sql = f"SELECT * FROM __new ANTI JOIN (SELECT {using} FROM {parquet_scan(old_uris)}) USING ({using})"
        else:
            sql = f"FROM __new EXCEPT ALL FROM {parquet_scan(old_uris)}"
        order = ", ".join(ident(k) for k in key)
        result = con.execute(sql + (f" ORDER BY {order}" if order else "")).arrow()
        if isinstance(result, pa.RecordBatchReader):
            result = result.read_all()
        return result.cast(table.schema) if result.schema != table.schema else result
    finally:
        con.unregister("__new")


def _write_parts(hub: Hub, name: str, table: pa.Table) -> list[dict[str, Any]]:
    """Write ``table`` as content-addressed parts of at most ``part_max_rows`` rows."""
    step = hub.settings.part_max_rows
    parts = []
    for start in range(0, max(table.num_rows, 1), step):
        chunk = table.slice(start, step)
        scratch = hub.storage.new_scratch_file(".parquet")
        pq.write_table(
            chunk, scratch, row_group_size=hub.settings.row_group_rows, compression="zstd",
            write_statistics=True, store_schema=True,
        )
        digest = hashlib.sha256()
        with open(scratch, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        sha = digest.hexdigest()
        size = scratch.stat().st_size
        key = part_key(name, sha)
        if hub.storage.exists(key):
            scratch.unlink()
        else:
            hub.storage.publish_file(key, scratch)
        parts.append({"path": f"parts/{sha}.parquet", "sha256": sha, "rows": chunk.num_rows, "bytes": size})
    return parts


def _quarantine(
    hub: Hub, name: str, delivery: Delivery, report: dict[str, Any], job_id: int | None,
    current: Version | None, rows: int,
) -> IngestResult:
    stamp = f"job-{job_id}" if job_id else utcnow().strftime("%Y%m%dT%H%M%S%f")
    base = f"quarantine/{name}/{stamp}"
    hub.storage.write_bytes(f"{base}/delivery.{delivery.format}", delivery.content)
    report_key = f"{base}/report.json"
    hub.storage.write_bytes(report_key, json.dumps(report, indent=1, ensure_ascii=False).encode())
    count = report.get("stats", {}).get("errors", 0)
    _finish_job(hub, job_id, "quarantined", f"{count} validation errors; delivery quarantined", report_key,
                current.number if current else None, rows)
    return IngestResult("quarantined", name, current.number if current else None, rows, report, report_key=report_key)


def _set_job(job: HarvestJob, status: str, message: str, report_key: str | None, version: int | None, rows: int) -> None:
    job.status, job.message, job.report_key = status, message, report_key
    job.version_number, job.rows, job.finished_at = version, rows, utcnow()


def _finish_job(hub: Hub, job_id: int | None, status: str, message: str, report_key: str | None,
                version: int | None, rows: int) -> None:
    if job_id is None:
        return
    with hub.sessions.begin() as session:
        job = session.get(HarvestJob, job_id)
        if job is not None:
            _set_job(job, status, message, report_key, version, rows)
