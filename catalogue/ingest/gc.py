"""The collector: removes what failed or killed ingests and exports left behind, and ends orphaned jobs.

Leftovers: downloaded feeds in ``incoming/``, scratch files and ingest
directories, export temp files, parts and descriptors no version references,
and the live files (``catalogue.store.live``) of versions no longer current.
Nothing is removed that was written within the grace period (a live ingest
or a slow download may still use it); a part any version references is never
removed; parts and descriptors are removed under the dataset's commit lock,
so no commit can start referencing one meanwhile (a part an ingest is about
to reference was published moments ago: it is within the grace period).
Live files stay for the current version and for a version superseded within
the grace period (a reader that resolved it while it was current may still
read them; the next commit merges the current latest file); a reader that
asks for an older version's live values later makes its files again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import PurePosixPath

from sqlalchemy import select

from catalogue.background import BackgroundThread
from catalogue.hub import Hub
from catalogue.ingest.commit import dataset_lock
from catalogue.ingest.jobs import Interrupted, interrupt_orphans
from catalogue.meta import delivery_keys
from catalogue.meta.models import Dataset, Version
from catalogue.store.by_space import by_space_key
from catalogue.store.by_time import by_time_key
from catalogue.store.keys import descriptor_key, part_key
from catalogue.store.live import is_live_file, live_files

log = logging.getLogger(__name__)

GRACE = timedelta(hours=6)  # an ingest of 10M rows takes minutes; a download or export stream less
JOB_GRACE = timedelta(minutes=1)  # a job of this host is ended only once its process is gone as well
INTERVAL_S = 3600.0  # how often a running server collects


@dataclass
class Collected:
    """What one collection removed: file names (relative to the data directory) with sizes, and jobs ended."""

    files: list[tuple[str, int]] = field(default_factory=list)
    jobs: list[Interrupted] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.files)

    def summary(self) -> str:
        """One line for people."""
        return (f"Removed {len(self.files)} leftover files ({self.bytes / 1e6:.1f} MB); "
                f"ended {len(self.jobs)} interrupted jobs.")


def collect(hub: Hub, grace: timedelta = GRACE) -> Collected:
    """Remove leftovers older than ``grace`` and end jobs whose process is gone; what was done.

    Jobs get the shorter of ``grace`` and JOB_GRACE: whether their process is gone is known.
    """
    older_than = time.time() - grace.total_seconds()
    done = Collected()
    done.files += _incoming(hub, older_than)
    done.files += [(f"store/.scratch/{name}", size) for name, size in hub.storage.sweep_scratch(older_than)]
    with hub.sessions() as session:
        names = list(session.scalars(select(Dataset.name).order_by(Dataset.name)))
    for name in names:
        done.files += _unreferenced(hub, name, older_than)
    done.jobs = interrupt_orphans(hub, min(grace, JOB_GRACE))
    delivery_keys.forget_old(hub)  # pushed deliveries' Idempotency-Keys past the time they are honoured
    return done


def _incoming(hub: Hub, older_than: float) -> list[tuple[str, int]]:
    """Downloaded feeds (``harvesters.http_file``) that no ingest took away."""
    incoming = hub.settings.data_dir / "incoming"
    removed = []
    for path in sorted(incoming.glob("*")) if incoming.is_dir() else []:
        try:
            stat = path.stat()
            if path.is_file() and stat.st_mtime < older_than:
                path.unlink()
                removed.append((f"incoming/{path.name}", stat.st_size))
        except FileNotFoundError:  # taken by its ingest meanwhile
            continue
    return removed


def _unreferenced(hub: Hub, name: str, older_than: float) -> list[tuple[str, int]]:
    """The dataset's parts, descriptors and live files that no version needs, and files left half-moved."""
    storage = hub.storage
    removed = []
    with dataset_lock(hub, name) as session:
        dataset_id = session.scalar(select(Dataset.id).where(Dataset.name == name))
        rows = session.execute(select(Version.number, Version.parts, Version.descriptor_key, Version.content_hash,
                                      Version.created_at)
                               .where(Version.dataset_id == dataset_id).order_by(Version.number)).all()
        keep = {part_key(name, p["sha256"]) for _, parts, *_ in rows for p in parts}
        # A part's by-time and by-space copies go with it (catalogue.store.by_time, catalogue.store.by_space).
        keep |= {copy(key) for key in keep for copy in (by_time_key, by_space_key)}
        keep |= {key for _, _, key, *_ in rows} | {descriptor_key(name, number) for number, *_ in rows}
        keep |= _live_needed(name, [(number, content_hash, created) for number, _, _, content_hash, created in rows],
                             older_than)
        for key in storage.list_keys(f"datasets/{name}"):
            if key in keep or not _collectable(PurePosixPath(key), name):
                continue
            size = storage.remove_stale(key, older_than)
            if size:
                removed.append((f"store/{key}", size))
    return removed


def _live_needed(name: str, versions: list[tuple[int, str, datetime]], older_than: float) -> set[str]:
    """The live files of the newest (current) version and of every version superseded after ``older_than``.

    ``versions``: (number, content hash, created) in the order of their numbers; a
    version is superseded when the next one was created.
    """
    needed: set[str] = set()
    for index, (number, content_hash, _) in enumerate(versions):
        successor = versions[index + 1][2] if index + 1 < len(versions) else None
        if successor is None or _epoch(successor) >= older_than:
            needed.update(live_files(name, number, content_hash))
    return needed


def _epoch(moment: datetime) -> float:
    """Seconds since the epoch (a stored time without a zone is UTC: SQLite does not keep the zone)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _collectable(key: PurePosixPath, name: str) -> bool:
    """Parts and their by-time and by-space copies, descriptors, live files and half-moved files (a staged copy,
    a file set aside by the collector)."""
    if key.name.startswith("."):
        return key.name.endswith(".incoming") or ".gc-" in key.name
    if key.parent in (PurePosixPath("datasets", name, folder) for folder in ("parts", "by-time", "by-space")):
        return key.suffix == ".parquet"
    if is_live_file(key.as_posix(), name):
        return True
    return key.parent == PurePosixPath("datasets", name) and key.name.endswith(".datapackage.json")


class Collector(BackgroundThread):
    """A background thread that collects now and then every ``interval_s`` seconds, until stopped."""

    def __init__(self, hub: Hub, interval_s: float = INTERVAL_S) -> None:
        super().__init__("collector")
        self.hub, self.interval_s = hub, interval_s

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                done = collect(self.hub)
                if done.files or done.jobs:
                    log.info("collector: %s", done.summary())
            except Exception:  # noqa: BLE001 - a failed round is logged; the next one tries again
                log.warning("collector: a round failed", exc_info=True)
            self.stopped.wait(self.interval_s)
