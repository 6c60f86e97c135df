"""After a commit: the version's live files, then the notice that it is there.

For a dataset keyed by (entity, time), the latest row per entity is written
right after the commit (``catalogue.store.live``), from the previous version's
latest file and the new rows, so ``/latest`` never scans the history. A
failure here leaves the version published: a reader makes the file it misses.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from catalogue import duck
from catalogue.commit_notices import COMMITS
from catalogue.pg_notices import notify_commit
from catalogue.hub import Hub
from catalogue.meta.models import Dataset, Version
from catalogue.store.keys import part_key
from catalogue.store.live import Snapshot, latest_rows, live_key

log = logging.getLogger(__name__)


def snapshot(version: Version, dataset: str) -> Snapshot:
    """The ``Snapshot`` of a catalogue version."""
    removed = (version.changes or {}).get("removed")
    return Snapshot(dataset, version.number, version.content_hash,
                    tuple(part_key(dataset, p["sha256"]) for p in version.parts), version.schema,
                    removed if isinstance(removed, int) else None)


def keep_live_values(hub: Hub, dataset: str, number: int) -> None:
    """Write version ``number``'s latest file when the dataset has an (entity, time) key, then notify listeners."""
    try:
        _write_latest(hub, dataset, number)
    except Exception:  # noqa: BLE001 - the version is committed; /latest makes the file when it is missing
        log.warning("live values: the latest rows of %s version %d were not written", dataset, number, exc_info=True)
    COMMITS.publish(dataset, number)
    notify_commit(hub.engine, dataset, number)  # API replicas and workers on the same PostgreSQL


def _write_latest(hub: Hub, dataset: str, number: int) -> None:
    with hub.sessions() as session:
        rows = session.scalars(
            select(Version).join(Dataset, Dataset.id == Version.dataset_id)
            .where(Dataset.name == dataset, Version.number <= number, Version.number >= number - 1)
            .order_by(Version.number.desc())
        ).all()
        found = [snapshot(v, dataset) for v in rows]
    if not found or found[0].number != number or live_key(found[0].schema) is None:
        return
    version, before = found[0], (found[1] if len(found) > 1 else None)
    settings = hub.settings
    # Without the spatial extension (loading it took 0.2-0.7 s a commit): DuckDB reads and writes
    # GeoParquet geometry as its own GEOMETRY type, which is all that selecting whole rows needs.
    con = duck.connect(memory_limit_mb=settings.ingest_memory_limit_mb, threads=settings.duckdb_threads,
                       spatial=False)
    try:
        hub.storage.prepare_duckdb(con)
        latest_rows(con, hub.storage, version, before)
    finally:
        con.close()
