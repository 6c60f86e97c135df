"""Checks the crash and soak suites share: every version whole, the store holding nothing unaccounted for."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
from sqlalchemy import select

from catalogue.hub import Hub
from catalogue.meta.models import Dataset, Version
from catalogue.store.keys import descriptor_key, part_key


def verify_versions(hub: Hub) -> dict[str, list[int]]:
    """Every version of every dataset, checked: numbered 1..n with the last one current, its descriptor
    matching its database row, each part matching its sha256 and holding the rows the row says.

    Returns the version numbers per dataset; raises AssertionError naming the first defect.
    """
    found: dict[str, list[int]] = {}
    rows: dict[str, tuple[int | None, list[Version]]] = {}
    with hub.sessions() as session:
        # One statement, so one snapshot: read in two, a harvest committing between them would show a
        # version newer than the current pointer read before it (SQLite's driver starts no read transaction).
        joined = session.execute(select(Dataset.name, Dataset.current_version_id, Version)
                                 .outerjoin(Version, Version.dataset_id == Dataset.id)
                                 .order_by(Dataset.name, Version.number))
        for name, current_id, version in joined:
            held = rows.setdefault(name, (current_id, []))[1]
            if version is not None:
                held.append(version)
    for name, (current_id, versions) in rows.items():
        numbers = [v.number for v in versions]
        assert numbers == list(range(1, len(versions) + 1)), f"{name}: versions {numbers} have gaps or repeats"
        assert current_id == (versions[-1].id if versions else None), f"{name}: the current version is not the last"
        for version in versions:
            verify_version(hub, name, version)
        found[name] = numbers
    return found


def verify_version(hub: Hub, name: str, version: Version) -> None:
    """One version whole: descriptor equal to its row, parts equal to their hashes and row counts."""
    where = f"{name} v{version.number}"
    assert version.descriptor_key == descriptor_key(name, version.number), where
    descriptor = json.loads(hub.storage.read_bytes(version.descriptor_key))
    meta = descriptor["urbandata"]
    assert (meta["version"], meta["sha256"], meta["rows"]) == (version.number, version.content_hash,
                                                                 version.row_count), f"{where}: descriptor {meta}"
    assert descriptor["resources"][0]["path"] == [p["path"] for p in version.parts], f"{where}: descriptor parts"
    for part in version.parts:
        data = hub.storage.read_bytes(part_key(name, part["sha256"]))
        assert hashlib.sha256(data).hexdigest() == part["sha256"], f"{where}: part {part['sha256']} altered"
        assert pq.ParquetFile(io.BytesIO(data)).metadata.num_rows == part["rows"]
    assert sum(p["rows"] for p in version.parts) == version.row_count, f"{where}: parts hold another row count"


def unaccounted_files(hub: Hub) -> list[str]:
    """Store files no version references (parts, descriptors, half-moved files), plus scratch and downloads:
    what a collection with no grace period must leave empty."""
    store = hub.settings.store_dir
    keep: set[str] = set()
    with hub.sessions() as session:
        for name, parts, key in session.execute(select(Dataset.name, Version.parts, Version.descriptor_key)
                                                .join(Version, Version.dataset_id == Dataset.id)):
            keep |= {key, *(part_key(name, p["sha256"]) for p in parts)}
    left = []
    for path in sorted((store / "datasets").rglob("*")):
        key = path.relative_to(store).as_posix()
        if path.is_file() and key not in keep and (path.name.startswith(".") or "/parts/" in key
                                                    or path.name.endswith(".datapackage.json")):
            left.append(f"store/{key}")
    for folder, label in ((store / ".scratch", "store/.scratch"), (hub.settings.data_dir / "incoming", "incoming")):
        left += [f"{label}/{p.name}" for p in sorted(folder.iterdir())] if folder.is_dir() else []
    return left


def tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (0 if it does not exist)."""
    total = 0
    for entry in path.rglob("*") if path.is_dir() else []:
        try:
            if entry.is_file():
                total += entry.stat().st_size
        except FileNotFoundError:  # removed by its owner meanwhile
            continue
    return total
