"""Local copies of stored parts, for readers that may touch only local files (the SQL sandbox).

The SQL endpoint's sandbox reads exactly the files of the views a statement names, with DuckDB's
``enable_external_access = false``: no network, no extension, no credential inside it. On a hub whose
parts live in object storage, :func:`local_files` gives it local copies instead: each part is fetched once
through the storage seam into ``<data_dir>/cache/parts/`` under its storage key. Parts are content-addressed
and never change (a new version has new keys), so a copy never goes stale; the cache is bounded by
``sql_part_cache_mb``: after a fetch, the copies unused the longest go first, never one used in the last
``KEEP_RECENT_S`` seconds (a running query may be reading it). On local storage the parts are used where
they are, and nothing is copied.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from catalogue.errors import DISK_FULL_ERRNOS, InsufficientStorage
from catalogue.settings import Settings
from catalogue.store.storage import Storage

KEEP_RECENT_S = 600.0
CHUNK = 1024 * 1024


def copies_dir(settings: Settings) -> Path:
    """Where the local copies of stored parts are kept."""
    return settings.data_dir / "cache" / "parts"


def local_files(storage: Storage, settings: Settings, keys: tuple[str, ...]) -> tuple[str, ...]:
    """Local paths of the files under ``keys``, in order: where they are, or fetched copies (see the module)."""
    if all(storage.local_path(key) is not None for key in keys):
        return tuple(str(storage.local_path(key)) for key in keys)
    root = copies_dir(settings)
    fetched = [_copy(storage, root, key) for key in keys]
    paths = tuple(path for path, _ in fetched)
    if any(new for _, new in fetched):  # only a fetch can push the cache past its bound
        _trim(root, settings.sql_part_cache_mb * 1024 * 1024, keep=set(paths))
    return paths


def _copy(storage: Storage, root: Path, key: str) -> tuple[str, bool]:
    """The local copy of ``key`` and whether it was fetched now."""
    target = root / key
    if target.is_file():
        os.utime(target)  # used now: the last to go when the cache is trimmed
        return str(target), False
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.{os.getpid()}.{time.monotonic_ns()}.incoming")
    try:
        with storage.open_read(key) as source, open(staged, "wb") as sink:
            shutil.copyfileobj(source, sink, CHUNK)
        os.replace(staged, target)  # two fetching at once: both copies are the same bytes
    except OSError as exc:
        if exc.errno in DISK_FULL_ERRNOS:
            raise InsufficientStorage(
                "The server's disk is full, so the parts this query reads could not be copied for the SQL "
                "sandbox (it reads local files only). Try again later, or ask the records API, which reads "
                "the object store directly.") from None
        raise
    finally:
        staged.unlink(missing_ok=True)
    return str(target), True


def _trim(root: Path, budget: int, keep: set[str]) -> None:
    """Remove the least recently used copies until the cache fits ``budget`` bytes (see the module)."""
    copies = []
    for path in root.rglob("*.parquet"):
        try:
            stat = path.stat()
        except FileNotFoundError:  # trimmed by another process meanwhile
            continue
        copies.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in copies)
    recent = time.time() - KEEP_RECENT_S
    for mtime, size, path in sorted(copies):
        if total <= budget:
            break
        if str(path) in keep or mtime >= recent:
            continue
        path.unlink(missing_ok=True)
        total -= size
