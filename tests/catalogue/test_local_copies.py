"""Local copies of stored parts for the SQL sandbox (catalogue/store/local_copies.py): fetched once, bounded."""

from __future__ import annotations

import os
import time
from pathlib import Path

from catalogue.settings import Settings
from catalogue.store.local_copies import KEEP_RECENT_S, copies_dir, local_files
from catalogue.store.storage import LocalStorage


class RemoteLike(LocalStorage):
    """A real store on disk that, like object storage, has no local path to give: every read is a fetch."""

    fetches = 0

    def local_path(self, key: str) -> Path | None:
        return None

    def open_read(self, key: str):  # type: ignore[no-untyped-def]
        RemoteLike.fetches += 1
        return super().open_read(key)


def _store(tmp_path: Path, cache_mb: int) -> tuple[RemoteLike, Settings]:
    settings = Settings(data_dir=tmp_path / "var", sql_part_cache_mb=cache_mb)
    storage = RemoteLike(settings)
    for n in range(3):
        storage.write_bytes(f"datasets/d/parts/{n}.parquet", bytes([n]) * (600 * 1024))
    return storage, settings


def test_parts_are_fetched_once_and_read_from_local_copies(tmp_path: Path) -> None:
    storage, settings = _store(tmp_path, cache_mb=100)
    RemoteLike.fetches = 0
    keys = ("datasets/d/parts/0.parquet", "datasets/d/parts/1.parquet")
    first = local_files(storage, settings, keys)
    again = local_files(storage, settings, keys)
    assert first == again and RemoteLike.fetches == 2
    assert [Path(p).read_bytes() for p in first] == [storage.read_bytes(k) for k in keys]
    assert all(Path(p).is_relative_to(copies_dir(settings)) for p in first)
    assert not [p for p in copies_dir(settings).rglob("*") if p.name.endswith(".incoming")]


def test_the_cache_drops_the_least_recently_used_copies_past_its_bound(tmp_path: Path) -> None:
    storage, settings = _store(tmp_path, cache_mb=1)  # room for one 600 KiB part
    old = local_files(storage, settings, ("datasets/d/parts/0.parquet",))[0]
    long_ago = time.time() - KEEP_RECENT_S - 60
    os.utime(old, (long_ago, long_ago))
    newest = local_files(storage, settings, ("datasets/d/parts/1.parquet",))[0]
    assert not Path(old).exists() and Path(newest).exists()
    # A copy used recently stays even past the bound: a running query may be reading it.
    third = local_files(storage, settings, ("datasets/d/parts/2.parquet",))[0]
    assert Path(newest).exists() and Path(third).exists()


def test_local_storage_is_read_in_place(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    storage = LocalStorage(settings)
    storage.write_bytes("datasets/d/parts/a.parquet", b"x")
    assert local_files(storage, settings, ("datasets/d/parts/a.parquet",)) == (
        str(storage.local_path("datasets/d/parts/a.parquet")),)
    assert not copies_dir(settings).exists()
