"""The commit: valid rows become the dataset's next version, one commit of a dataset at a time.

Order: content-addressed parts (``catalogue.ingest.parts``), then one
database transaction that holds the dataset's commit lock, checks that the
version the delivery was compared with is still current, takes the next
number, writes the descriptor under that number and inserts the version.
A failure anywhere leaves the previous version current and intact; files
written before it are unreferenced leftovers for the collector
(``catalogue.ingest.gc``).

The lock (``dataset_lock``) is what makes two harvests of one dataset safe:
on PostgreSQL an advisory lock on a hash of the dataset's name, held until
the transaction ends; on SQLite ``BEGIN IMMEDIATE``, the database's write
lock (SQLite has no row locks; ``SELECT … FOR UPDATE`` does nothing there).
A descriptor is only ever written by the transaction that holds the lock
and has taken its number, so no other delivery can overwrite it; a file
left under that number by a crash is replaced by the next winner.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import duckdb
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from catalogue.errors import BaseVersionConflict, CommitConflict, UpsertWithoutKey
from catalogue.hub import Hub
from catalogue.ingest import tables
from catalogue.ingest.csv_scan import RepeatedKey, repeats_key
from catalogue.ingest.delivery import IngestResult
from catalogue.ingest.parts import write_parts
from catalogue.store.by_time import copy_order
from catalogue.meta.models import Dataset, Version, utcnow
from catalogue.schema.sql_text import ident
from catalogue.schema.model import TableSchema
from catalogue.store.changes import parquet_scan, summarize_changes
from catalogue.store.datapackage import build_descriptor
from catalogue.store.geoparquet import geo_metadata
from catalogue.store.keys import descriptor_key, part_key

# Each attempt after the first follows a commit of the same dataset that landed while this
# delivery was being compared; more than a handful in a row means something else is wrong.
ATTEMPTS = 5


@dataclass(frozen=True)
class Offer:
    """Valid rows offered as a dataset's next version (what the commit needs besides the store)."""

    dataset: str
    schema: TableSchema
    relation: str  # SQL reading the typed rows, in key order, from the ingest's DuckDB connection
    rows: int
    report: dict[str, Any]
    mode: str  # replace | append
    provenance: dict[str, Any]
    job_id: int | None = None
    check_key: bool = False  # the key is still to be checked for repeats (RepeatedKey)
    windows: tuple[str, ...] = ()  # a query per time window (``catalogue.store.layout``), or none
    pinned: bool = False  # based on the current version it is compared with (If-Match): never committed after another


@dataclass(frozen=True)
class Draft:
    """The version an offer makes next to one current version: its parts, hash and changes."""

    parts: list[dict[str, Any]]
    content_hash: str
    changes: dict[str, Any]
    base: Version | None  # the current version it was compared with

    @property
    def rows(self) -> int:
        return sum(p["rows"] for p in self.parts)


class CurrentMoved(Exception):
    """Another commit of the dataset landed after the draft was compared: compare again."""


@contextmanager
def dataset_lock(hub: Hub, name: str) -> Iterator[Session]:
    """A session whose transaction holds ``name``'s commit lock until it ends (commit on success)."""
    with hub.sessions.begin() as session:
        connection = session.connection()
        dialect = connection.dialect.name
        if dialect == "sqlite":
            # pysqlite opens transactions lazily and deferred; this one takes the write lock now,
            # waiting up to the connection's busy timeout for another writer to finish.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif dialect == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)})
        else:  # another database: lock the dataset's row (works where FOR UPDATE does)
            session.scalar(select(Dataset.id).where(Dataset.name == name).with_for_update())
        yield session


def lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for a dataset (PostgreSQL takes a bigint)."""
    digest = hashlib.sha256(f"urbandata-commit:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def publish(hub: Hub, con: duckdb.DuckDBPyConnection, offer: Offer, current: Version | None) -> IngestResult:
    """Make ``offer`` the dataset's next version, unless it leaves ``current`` as it is.

    When another commit of the dataset lands meanwhile, the offer is compared
    with that version and committed after it (or found unchanged).
    """
    report_key = _write_report(hub, offer)
    replaced: list[dict[str, Any]] | None = None  # replace mode: parts independent of the current version
    for _ in range(ATTEMPTS):
        base = current if current is not None and current.parts else None
        if base is not None and offer.mode == "append" and base.schema.hash == offer.schema.hash:
            parts = list(base.parts) + _appended_parts(hub, con, offer, base)
        elif base is not None and offer.mode in ("append", "upsert"):
            # Upsert (the delivery's rows win by key), or append across a schema change (the current rows
            # win): every row is rewritten with the new schema, so no part lacks an added column.
            parts = _write_all(hub, con, _merged(hub, con, offer, base))
        else:
            replaced = replaced if replaced is not None else _write_all(hub, con, offer)
            parts = replaced
        draft = _draft(hub, con, offer, current, parts)
        if current is not None and draft.content_hash == current.content_hash:
            return _unchanged(offer, current, report_key, f"identical to version {current.number}")
        if current is not None and offer.mode != "append" and _same_rows(draft.changes):
            # The same rows in other bytes (parts written by another release or with other settings):
            # no new version; its parts stay unreferenced until the collector removes them.
            return _unchanged(offer, current, report_key, f"the same rows as version {current.number}")
        try:
            number = _commit(hub, offer, draft)
        except CurrentMoved:
            current = current_version(hub, offer.dataset)
            if offer.pinned:
                check_base(offer.dataset, draft.base.number if draft.base else 0, current)
            continue
        return IngestResult("published", offer.dataset, number, draft.rows, offer.report, changes=draft.changes,
                            report_key=report_key, note=f"version {number}")
    raise CommitConflict(
        f"Dataset '{offer.dataset}' received {ATTEMPTS} other versions while this delivery was being committed. "
        "Harvest it again once the other deliveries are done."
    )


def check_base(dataset: str, base: int, current: Version | None) -> None:
    """BaseVersionConflict (409) unless version ``base`` (0: none) is ``current``: no update is lost."""
    number = current.number if current is not None else 0
    if base != number:
        now = f"version {number}" if number else "no version yet"
        raise BaseVersionConflict(
            f"Dataset '{dataset}' is at {now}, not version {base} as If-Match says: another delivery was "
            f"published meanwhile. Fetch version {number}, merge, and push again with If-Match: \"{number}\".",
            details={"current_version": number or None, "base_version": base})


def current_version(hub: Hub, name: str) -> Version | None:
    """The dataset's current version as it is now (read in a session of its own)."""
    with hub.sessions() as session:
        dataset = session.scalar(select(Dataset).where(Dataset.name == name))
        return dataset.current_version if dataset is not None else None


def _write_report(hub: Hub, offer: Offer) -> str:
    stamp = offer.job_id or utcnow().strftime("%Y%m%dT%H%M%S%f")
    key = f"datasets/{offer.dataset}/reports/delivery-{stamp}.json"
    hub.storage.write_bytes(key, json.dumps(offer.report, indent=1, ensure_ascii=False).encode())
    return key


def _write_all(hub: Hub, con: duckdb.DuckDBPyConnection, offer: Offer) -> list[dict[str, Any]]:
    """Every offered row as parts (at least one, possibly empty: a version always has a file with its schema)."""
    geo = _geo(con, offer, offer.relation, offer.rows)
    key = list(offer.schema.primary_key) if offer.check_key else []
    return write_parts(hub, offer.dataset, con, offer.relation, geo, unique_key=key, windows=list(offer.windows),
                       time_order=copy_order(offer.schema))


def _appended_parts(hub: Hub, con: duckdb.DuckDBPyConnection, offer: Offer, current: Version) -> list[dict[str, Any]]:
    """Parts holding the offered rows that ``current`` does not have yet (none if there are none)."""
    key = list(offer.schema.primary_key)
    if offer.check_key and key and repeats_key(con, offer.relation, key):  # before published rows drop out
        raise RepeatedKey()
    old_uris = [hub.storage.engine_uri(part_key(offer.dataset, p["sha256"])) for p in current.parts]
    relation = _only_new_rows(con, offer.relation, old_uris, key)
    (new_rows,) = con.execute(f"SELECT count(*) FROM {tables.NEW}").fetchone()  # type: ignore[misc]
    if not new_rows:
        return []
    return write_parts(hub, offer.dataset, con, relation, _geo(con, offer, relation, new_rows),
                       time_order=copy_order(offer.schema))


def _merged(hub: Hub, con: duckdb.DuckDBPyConnection, offer: Offer, current: Version) -> Offer:
    """The offer with the current version's rows it does not replace, merged by primary key.

    Upsert: a delivered row replaces the current row of its key, other current rows stay. Append across
    a schema change: current rows stay, delivered rows with a new key are added. Columns the current
    parts lack (an added field) are NULL in their rows.
    """
    key = list(offer.schema.primary_key)
    if not key:
        raise UpsertWithoutKey(
            f"Dataset '{offer.dataset}' has no primary key, so mode '{offer.mode}' cannot tell which rows a delivery "
            "replaces. Add a primaryKey to its Table Schema, or harvest it in mode replace.")
    if offer.check_key and repeats_key(con, offer.relation, key):
        raise RepeatedKey()
    using = ", ".join(ident(k) for k in key)
    columns = ", ".join(ident(f.name) for f in offer.schema.fields)
    old_uris = [hub.storage.engine_uri(part_key(offer.dataset, p["sha256"])) for p in current.parts]
    delivered = f"SELECT {columns} FROM ({offer.relation})"
    kept = f"SELECT * FROM {parquet_scan(old_uris)}"
    if offer.mode == "upsert":
        sql = f"{delivered} UNION ALL BY NAME ({kept} ANTI JOIN ({delivered}) AS d USING ({using}))"
    else:
        sql = f"{kept} UNION ALL BY NAME ({delivered} ANTI JOIN ({kept}) AS k USING ({using}))"
    con.execute(f"CREATE OR REPLACE TABLE {tables.NEW} AS SELECT {columns} FROM ({sql})")
    (rows,) = con.execute(f"SELECT count(*) FROM {tables.NEW}").fetchone()  # type: ignore[misc]
    return replace(offer, relation=f"SELECT * FROM {tables.NEW} ORDER BY {using}", rows=rows, check_key=False,
                   windows=())


def _geo(con: duckdb.DuckDBPyConnection, offer: Offer, relation: str, rows: int) -> dict[str, Any] | None:
    columns = list(offer.schema.geometry_fields)
    return geo_metadata(con, relation, columns) if columns and rows else None


def _only_new_rows(con: duckdb.DuckDBPyConnection, relation: str, old_uris: list[str], key: list[str]) -> str:
    """SQL for the rows of ``relation`` not yet in the current version (by primary key, else whole row)."""
    if key:
        using = ", ".join(ident(k) for k in key)
        sql = (f"SELECT * FROM ({relation}) ANTI JOIN (SELECT {using} FROM {parquet_scan(old_uris)}) "
               f"USING ({using}) ORDER BY {using}")
    else:
        sql = f"SELECT * FROM ({relation}) EXCEPT ALL SELECT * FROM {parquet_scan(old_uris)}"
    con.execute(f"CREATE OR REPLACE TABLE {tables.NEW} AS {sql}")
    return f"SELECT * FROM {tables.NEW}" + (f" ORDER BY {', '.join(ident(k) for k in key)}" if key else "")


def _draft(hub: Hub, con: duckdb.DuckDBPyConnection, offer: Offer, current: Version | None,
           parts: list[dict[str, Any]]) -> Draft:
    """Hash ``parts`` with the schema and count what changed since ``current``."""
    content_hash = hashlib.sha256((offer.schema.hash + "".join(p["sha256"] for p in parts)).encode()).hexdigest()
    changes: dict[str, Any] = {}
    if current is None or current.content_hash != content_hash:
        uri = hub.storage.engine_uri
        old_uris = [uri(part_key(offer.dataset, p["sha256"])) for p in (current.parts if current else [])]
        new_uris = [uri(part_key(offer.dataset, p["sha256"])) for p in parts]
        changes = summarize_changes(con, old_uris, new_uris, current.schema if current else offer.schema, offer.schema)
        changes["schema_changed"] = current is not None and current.schema.hash != offer.schema.hash
        if changes["schema_changed"]:
            assert current is not None
            changes["fields_added"] = [n for n in offer.schema.names if n not in current.schema.names]
    return Draft(parts, content_hash, changes, current)


def _same_rows(changes: dict[str, Any]) -> bool:
    return not changes["schema_changed"] and changes["added"] == changes["removed"] == changes["changed"] == 0


def _commit(hub: Hub, offer: Offer, draft: Draft) -> int:
    """Insert the draft as the next version under the dataset's lock; its number. CurrentMoved if it is stale."""
    with dataset_lock(hub, offer.dataset) as session:
        dataset = session.scalar(select(Dataset).where(Dataset.name == offer.dataset))
        assert dataset is not None
        if dataset.current_version_id != (draft.base.id if draft.base else None):
            raise CurrentMoved()
        number = (session.scalar(select(func.max(Version.number)).where(Version.dataset_id == dataset.id)) or 0) + 1
        provenance = dict(offer.provenance, mode=offer.mode, schema_hash=offer.schema.hash,
                          harvest_job=offer.job_id)
        version = Version(
            dataset_id=dataset.id, number=number, row_count=draft.rows, bytes=sum(p["bytes"] for p in draft.parts),
            content_hash=draft.content_hash, descriptor_key=descriptor_key(offer.dataset, number), parts=draft.parts,
            table_schema=offer.schema.descriptor, changes=draft.changes, provenance=provenance, harvest_job_id=offer.job_id,
            created_at=utcnow(),
        )
        descriptor = build_descriptor(hub.settings, dataset, version)
        # Written under the lock, after the number is taken and before the transaction commits:
        # a crash leaves an unreferenced file (replaced by the next winner of this number),
        # never a referenced version without its descriptor.
        hub.storage.write_bytes(version.descriptor_key, json.dumps(descriptor, indent=1, ensure_ascii=False).encode())
        session.add(version)
        session.flush()
        dataset.current_version_id = version.id
        dataset.modified_at = version.created_at
    return number


def _unchanged(offer: Offer, current: Version, report_key: str, why: str) -> IngestResult:
    return IngestResult("unchanged", offer.dataset, current.number, current.row_count, offer.report,
                        report_key=report_key, note=why)
