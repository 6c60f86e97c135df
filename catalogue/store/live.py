"""Live values: the latest row per entity and each version's new rows, kept as small files beside the parts.

A dataset keyed by (entity, time) (a primary key with a date or datetime field
after its first field, as ``layout.time_field`` finds it: a car park and the
time of its count) is asked "what is the value now" far more often than about
its history. Scanning the history for the newest row of each entity grows with
the history; so each version gets a *latest file*, the newest row per entity,
made at commit time from the previous version's latest file and the rows the
version added (an append or an upsert that removed nothing), or from all of its
rows (a replace, a schema change, or when the previous file is missing).

The rows a version added to the one before (what a stream of live values sends)
are the parts it added when it kept every part of the previous version (an
append); otherwise a *delta file*, the version's rows less the previous
version's, made when first needed.

Both files are keyed by the version's number and content hash, so they never
change once written; the write path makes them after a commit and a reader that
finds one missing (a version made before this existed, a crash right after the
commit, a file the collector removed) makes it from the parts, as exports keep
their files. Writing the same key twice writes the same rows. Only the current
version's files are needed for long (the next commit merges its latest file), so
the collector (``catalogue.ingest.gc``) removes those of versions superseded
longer ago than its grace period (``live_files``, ``is_live_file``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import duckdb

from catalogue.schema.model import TableSchema
from catalogue.schema.sql_text import ident, literal
from catalogue.store import layout
from catalogue.store.changes import parquet_scan
from catalogue.store.keys import delta_key, latest_key
from catalogue.store.storage import Storage

RANK = "__live_rank"  # which input a row came from when merging: the newer version wins a tie


@dataclass(frozen=True)
class LiveKey:
    """The entity fields and the time field of an (entity, time) primary key."""

    entity: tuple[str, ...]
    time: str


def live_key(schema: TableSchema) -> LiveKey | None:
    """The (entity, time) split of ``schema``'s primary key; None when it has no time after an entity field."""
    time = layout.time_field(schema)
    if time is None:
        return None
    entity = tuple(name for name in schema.primary_key if name != time)
    return LiveKey(entity, time) if entity else None


@dataclass(frozen=True)
class Snapshot:
    """What the live files need of one version: its identity, parts and schema.

    ``removed``: rows the version removed from the one before (from its
    recorded changes), None when not known.
    """

    dataset: str
    number: int
    content_hash: str
    part_keys: tuple[str, ...]
    schema: TableSchema
    removed: int | None = None


def live_files(dataset: str, number: int, content_hash: str) -> tuple[str, str]:
    """The keys of a version's live files: its latest file and its delta file (either may not exist)."""
    return latest_key(dataset, number, content_hash), delta_key(dataset, number, content_hash)


def is_live_file(key: str, dataset: str) -> bool:
    """Whether ``key`` is where one of ``dataset``'s versions keeps a live file (a latest or a delta file)."""
    path = PurePosixPath(key)
    return (path.parent == PurePosixPath(latest_key(dataset, 1, "")).parent
            and path.name.endswith((".latest.parquet", ".delta.parquet")) and not path.name.startswith("."))


def added_parts(version: Snapshot, before: Snapshot | None) -> list[str] | None:
    """Keys of the parts ``version`` added, when it kept every part of ``before`` (an append); else None."""
    if before is None or before.schema.hash != version.schema.hash:
        return None
    kept = set(before.part_keys)
    if not kept <= set(version.part_keys):
        return None
    return [key for key in version.part_keys if key not in kept]


def new_rows(con: duckdb.DuckDBPyConnection, storage: Storage, version: Snapshot,
             before: Snapshot | None) -> list[str]:
    """Engine URIs of files holding exactly the rows ``version`` added to ``before`` (none: no new rows).

    An append's new parts as they are; otherwise the delta file, written if missing.
    """
    added = added_parts(version, before)
    if added is not None:
        return [storage.engine_uri(key) for key in added]
    key = delta_key(version.dataset, version.number, version.content_hash)
    if not storage.exists(key):
        rows = f"SELECT * FROM {_scan(storage, version.part_keys)}"
        if before is not None and before.schema.hash == version.schema.hash:
            # Only the parts the two versions do not share can hold rows that differ.
            shared = set(before.part_keys) & set(version.part_keys)
            mine = [k for k in version.part_keys if k not in shared]
            theirs = [k for k in before.part_keys if k not in shared]
            # No part of its own: the version only dropped rows, and added none.
            rows = f"SELECT * FROM {_scan(storage, mine)}" if mine else f"{rows} LIMIT 0"
            if theirs and mine:
                rows += f" EXCEPT ALL SELECT * FROM {_scan(storage, theirs)}"
        order = ", ".join(ident(name) for name in version.schema.primary_key)
        _write(con, storage, key, f"SELECT * FROM ({rows}) AS r" + (f" ORDER BY {order}" if order else ""))
    return [storage.engine_uri(key)]


def latest_rows(con: duckdb.DuckDBPyConnection, storage: Storage, version: Snapshot,
                before: Snapshot | None = None) -> str:
    """The engine URI of ``version``'s latest file (the newest row per entity), written if missing.

    Made from ``before``'s latest file and the rows ``version`` added when that
    file exists and nothing was removed in between; from every row otherwise.
    """
    key = latest_key(version.dataset, version.number, version.content_hash)
    if storage.exists(key):
        return storage.engine_uri(key)
    live = live_key(version.schema)
    if live is None:
        raise ValueError(f"dataset {version.dataset!r} has no (entity, time) key")
    previous = _mergeable_latest(storage, version, before)
    if previous is not None and before is not None:
        added = new_rows(con, storage, version, before)
        sources = [(f"read_parquet({literal(previous)})", 0)]
        if added:
            sources.append((parquet_scan(added), 1))
        union = " UNION ALL BY NAME ".join(f"SELECT *, {rank} AS {RANK} FROM {scan}" for scan, rank in sources)
        sql = (f"SELECT * EXCLUDE ({RANK}) FROM ({union}) AS r "
               f"QUALIFY row_number() OVER (PARTITION BY {_entity(live)} "
               f"ORDER BY {ident(live.time)} DESC NULLS LAST, {RANK} DESC) = 1")
    else:
        sql = (f"SELECT * FROM {_scan(storage, version.part_keys)} "
               f"QUALIFY row_number() OVER (PARTITION BY {_entity(live)} ORDER BY {ident(live.time)} DESC NULLS LAST) = 1")
    _write(con, storage, key, f"SELECT * FROM ({sql}) AS l ORDER BY {_entity(live)}")
    return storage.engine_uri(key)


def _mergeable_latest(storage: Storage, version: Snapshot, before: Snapshot | None) -> str | None:
    """``before``'s latest file, when ``version`` is ``before`` plus rows (same schema, nothing removed)."""
    if before is None or before.schema.hash != version.schema.hash:
        return None
    if added_parts(version, before) is None and version.removed != 0:
        return None
    key = latest_key(before.dataset, before.number, before.content_hash)
    return storage.engine_uri(key) if storage.exists(key) else None


def _entity(live: LiveKey) -> str:
    return ", ".join(ident(name) for name in live.entity)


def _scan(storage: Storage, keys: Sequence[str]) -> str:
    return parquet_scan([storage.engine_uri(key) for key in keys])


def _write(con: duckdb.DuckDBPyConnection, storage: Storage, key: str, sql: str) -> None:
    """The rows of ``sql`` as a Parquet file published under ``key`` (GeoParquet when they hold geometry)."""
    scratch = storage.new_scratch_file(".parquet")
    try:
        con.execute(f"COPY ({sql}) TO {literal(str(scratch))} (FORMAT parquet, COMPRESSION {layout.PART_COMPRESSION})")
        storage.publish_file(key, scratch)
    finally:
        scratch.unlink(missing_ok=True)
