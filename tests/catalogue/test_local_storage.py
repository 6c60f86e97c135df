"""The local store's keys: a key stays inside the store, read lexically (no stat per folder on every read)."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalogue.errors import NotFound
from catalogue.settings import Settings
from catalogue.store.storage import LocalStorage


@pytest.mark.parametrize("key", ["../outside", "datasets/../../outside", "/etc/passwd", "", ".", "datasets/.."])
def test_a_key_out_of_the_store_names_nothing(tmp_path: Path, key: str) -> None:
    storage = LocalStorage(Settings(data_dir=tmp_path / "var"))
    (tmp_path / "outside").write_text("secret", encoding="utf-8")
    with pytest.raises(NotFound):
        storage.engine_uri(key)
    with pytest.raises(NotFound):
        storage.read_bytes(key)


def test_keys_inside_the_store_are_its_files(tmp_path: Path) -> None:
    storage = LocalStorage(Settings(data_dir=tmp_path / "var"))
    storage.write_bytes("datasets/a/parts/x.parquet", b"rows")
    assert storage.read_bytes("datasets/a/../a/parts/x.parquet") == b"rows"
    assert Path(storage.engine_uri("datasets/a/parts/x.parquet")) == storage.root / "datasets/a/parts/x.parquet"
    assert storage.exists("datasets/a/parts/x.parquet") and not storage.exists("datasets/a/parts/y.parquet")
