"""The collector and live files: those of versions superseded longer ago than the grace period go, the current
version's (and a recently superseded or recently made one's) stay, and /latest answers before and after."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import duckdb
import httpx
import pytest
from sqlalchemy import select, update

from api.app import create_app
from catalogue.hub import Hub
from catalogue.ingest.gc import collect
from catalogue.ingest.pipeline import Delivery, ingest_delivery
from catalogue.meta.models import Dataset, Version, utcnow
from catalogue.store.keys import part_key
from catalogue.store.live import Snapshot, live_files, new_rows
from tests.api.live_server import threaded_server
from tests.catalogue.test_concurrent_commits import backend  # noqa: F401 - the SQLite/PostgreSQL fixture

NAME = "parking"
SCHEMA = {
    "fields": [{"name": "lot_id", "type": "string"}, {"name": "timestamp", "type": "datetime"},
               {"name": "free", "type": "integer"}],
    "primaryKey": ["lot_id", "timestamp"],
}
LOTS = ("P01", "P02", "P03")
OLD = time.time() - 7 * 3600  # older than the collector's default grace period of 6 hours


def _counts(tag: int) -> bytes:
    """Version ``tag``: four hours of counts per lot, the newest count of each lot tagged."""
    rows = [f"{lot},2026-12-0{tag}T0{hour}:00:00,{tag * 100 + n * 10 + hour}"
            for n, lot in enumerate(LOTS) for hour in range(4)]
    return ("lot_id,timestamp,free\n" + "\n".join(rows) + "\n").encode()


def _newest(tag: int) -> list[dict[str, Any]]:
    return [{"lot_id": lot, "free": tag * 100 + n * 10 + 3} for n, lot in enumerate(LOTS)]


def _versions(hub: Hub) -> list[Version]:
    with hub.sessions() as session:
        return list(session.scalars(select(Version).join(Dataset, Dataset.id == Version.dataset_id).where(Dataset.name == NAME)
                                    .order_by(Version.number)))


def _with_deltas(hub: Hub) -> None:
    """Each version's delta file (the rows it added to the one before, what /stream sends), as a reader makes it."""
    versions = _versions(hub)
    snaps = [Snapshot(NAME, v.number, v.content_hash, tuple(part_key(NAME, p["sha256"]) for p in v.parts), v.schema)
             for v in versions]
    con = duckdb.connect()
    try:
        for before, version in zip(snaps, snaps[1:]):
            new_rows(con, hub.storage, version, before)
    finally:
        con.close()


def _live_present(hub: Hub) -> dict[int, list[bool]]:
    """Per version: whether its latest file and its delta file are in the store."""
    return {v.number: [hub.storage.exists(key) for key in live_files(NAME, v.number, v.content_hash)]
            for v in _versions(hub)}


def _age(hub: Hub, numbers: list[int]) -> None:
    """Every file in the store written long ago; versions ``numbers`` created long ago."""
    for path in hub.settings.store_dir.rglob("*"):
        if path.is_file():
            os.utime(path, (OLD, OLD))
    with hub.sessions() as session:
        session.execute(update(Version).where(Version.number.in_(numbers))
                        .values(created_at=utcnow() - timedelta(hours=7)))
        session.commit()


def _latest(client: httpx.Client, version: int | None = None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"select": "lot_id, free", "order_by": "lot_id"}
    if version is not None:
        params["version"] = version
    answer = client.get(f"/api/v1/datasets/{NAME}/latest", params=params)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["results"])


@pytest.mark.embedded_only("ages stored files by their time on disk (os.utime); an object's Last-Modified cannot be set")
def test_the_collector_removes_the_live_files_of_superseded_versions(
        make_catalogue: Callable[..., Hub], backend: dict[str, Any]) -> None:  # noqa: F811
    hub = make_catalogue(NAME, SCHEMA, _counts(1), **backend)
    for tag in (2, 3, 4):
        result = ingest_delivery(hub, NAME, Delivery(_counts(tag), "csv", {}, "replace", {"source_url": "t"}))
        assert (result.status, result.version) == ("published", tag)
    _with_deltas(hub)
    assert _live_present(hub) == {1: [True, False], 2: [True, True], 3: [True, True], 4: [True, True]}

    # Versions 1-3 were made long ago, version 4 (which superseded 3) just now: 3's files may still be read.
    _age(hub, [1, 2, 3])
    done = collect(hub)
    assert _live_present(hub) == {1: [False, False], 2: [False, False], 3: [True, True], 4: [True, True]}
    # What it reports removed is exactly those files (every part and descriptor is referenced).
    versions = _versions(hub)
    assert sorted(name for name, _ in done.files) == sorted(
        f"store/{key}" for v in versions[:2] for key in live_files(NAME, v.number, v.content_hash)
        if not (v.number == 1 and key.endswith(".delta.parquet")))

    # Once version 4 is old too, 3's files go; the current version's stay however old they are.
    _age(hub, [4])
    collect(hub)
    assert _live_present(hub) == {1: [False, False], 2: [False, False], 3: [False, False], 4: [True, True]}
    for version in _versions(hub):  # every version's parts and descriptor are still there
        assert hub.storage.exists(version.descriptor_key)
        assert all(hub.storage.exists(part_key(NAME, p["sha256"])) for p in version.parts)

    app = create_app(hub.settings, hub)
    try:
        with threaded_server(app) as (host, port), httpx.Client(base_url=f"http://{host}:{port}", timeout=60) as client:
            assert _latest(client) == _newest(4)
            # An old version's live values are made again when asked for; that fresh file survives a collection.
            assert _latest(client, version=2) == _newest(2)
            assert _live_present(hub)[2][0]
            collect(hub)
            assert _live_present(hub) == {1: [False, False], 2: [True, False], 3: [False, False], 4: [True, True]}
            assert _latest(client) == _newest(4)
    finally:
        app.state.query_engine.close()
        app.state.sql_pool.close()
