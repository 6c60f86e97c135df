"""Concurrent ingests of one dataset (threads and processes, SQLite and PostgreSQL) while a third
connection holds the write lock: versions numbered without gaps or duplicates, every descriptor
matching its database row, every part matching its hash; a loser publishes next or is unchanged."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import select

from catalogue.hub import Hub
from catalogue.ingest.pipeline import Delivery, IngestResult, ingest_delivery
from catalogue.meta.models import Dataset, Version
from catalogue.settings import PROJECT_ROOT
from catalogue.store.keys import part_key
from tests.conftest import pg_schema

NAME = "counters"
SCHEMA = {
    "fields": [{"name": "id", "type": "integer", "constraints": {"required": True}}, {"name": "value", "type": "integer"}],
    "primaryKey": ["id"],
}


def _csv(tag: int, rows: int = 40) -> bytes:
    return ("id,value\n" + "".join(f"{i},{tag * 1000 + i}\n" for i in range(rows))).encode()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Settings overrides for the catalogue database: SQLite in the data dir, or a throwaway PostgreSQL schema."""
    if request.param == "sqlite":
        yield {}
        return
    with pg_schema("commits") as overrides:
        yield overrides


@pytest.fixture
def hub(make_catalogue: Callable[..., Hub], backend: dict[str, Any]) -> Hub:
    return make_catalogue(NAME, SCHEMA, _csv(0), **backend)


@contextmanager
def write_lock_held(hub: Hub, seconds: float) -> Iterator[list[datetime]]:
    """A third connection holds the database's write lock for ``seconds`` (SQLite: BEGIN IMMEDIATE;
    PostgreSQL: an EXCLUSIVE lock on the versions table); yields a list that gets the release time."""
    released: list[datetime] = []
    url = hub.settings.resolved_database_url
    if url.startswith("sqlite"):
        connection: Any = sqlite3.connect(str(hub.settings.data_dir / "catalogue.sqlite"), isolation_level=None,
                                          check_same_thread=False)
        connection.execute("BEGIN IMMEDIATE")
    else:
        import psycopg

        schema = url.split("search_path%3D")[1].split("%2C")[0]
        connection = psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres")
        connection.execute(f'LOCK TABLE "{schema}".versions IN EXCLUSIVE MODE')

    def release() -> None:
        time.sleep(seconds)  # lets the contenders reach their commit; nothing asserts how long anything takes
        released.append(datetime.now(timezone.utc))
        connection.commit() if not url.startswith("sqlite") else connection.execute("COMMIT")
        connection.close()

    holder = threading.Thread(target=release)
    holder.start()
    try:
        yield released
    finally:
        holder.join()


def _ingest_in_threads(hub: Hub, contents: list[bytes]) -> list[IngestResult | BaseException]:
    results: list[IngestResult | BaseException] = [RuntimeError("did not run")] * len(contents)
    start = threading.Barrier(len(contents))

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = ingest_delivery(hub, NAME, Delivery(contents[i], "csv", {}, "replace", {"source_url": f"t{i}"}))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(contents))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def check_versions(hub: Hub) -> list[Version]:
    """Every version numbered 1..n, its descriptor matching its row, its parts matching their hashes."""
    with hub.sessions() as session:
        dataset = session.scalar(select(Dataset).where(Dataset.name == NAME))
        assert dataset is not None
        versions = list(session.scalars(select(Version).where(Version.dataset_id == dataset.id).order_by(Version.number)))
        assert [v.number for v in versions] == list(range(1, len(versions) + 1))
        assert dataset.current_version_id == versions[-1].id
    for version in versions:
        descriptor = json.loads(hub.storage.read_bytes(version.descriptor_key))
        meta = descriptor["urbandata"]
        assert (meta["version"], meta["sha256"], meta["rows"]) == (version.number, version.content_hash, version.row_count)
        assert descriptor["resources"][0]["path"] == [p["path"] for p in version.parts]
        for part in version.parts:
            assert hashlib.sha256(hub.storage.read_bytes(part_key(NAME, part["sha256"]))).hexdigest() == part["sha256"]
    return versions


@pytest.mark.parametrize("contenders", [2, 4])
def test_concurrent_ingests_of_different_rows_each_publish_the_next_number(hub: Hub, contenders: int) -> None:
    tag = 1
    for _ in range(3):
        contents = [_csv(tag + i) for i in range(contenders)]
        tag += contenders
        with write_lock_held(hub, 1.0) as released:
            results = _ingest_in_threads(hub, contents)
        assert [r.status if isinstance(r, IngestResult) else repr(r) for r in results] == ["published"] * contenders
        versions = check_versions(hub)
        new = versions[-contenders:]
        assert sorted(r.version for r in results if isinstance(r, IngestResult)) == [v.number for v in new]
        # Each delivery became exactly one version: its rows' hash is that version's.
        assert sorted(v.provenance["source_url"] for v in new) == sorted(f"t{i}" for i in range(contenders))
        # The commits waited for the third connection's lock: on SQLite all of them (BEGIN IMMEDIATE); on
        # PostgreSQL all but one, which took the dataset's lock and waited for the table inside its commit.
        early = [v.number for v in new if v.created_at < released[0]]
        assert len(early) <= (0 if hub.settings.resolved_database_url.startswith("sqlite") else 1)


@pytest.mark.parametrize("contenders", [2, 4])
def test_concurrent_ingests_of_the_same_rows_publish_once(hub: Hub, contenders: int) -> None:
    for round_ in range(1, 3):
        before = len(check_versions(hub))
        with write_lock_held(hub, 1.0):
            results = _ingest_in_threads(hub, [_csv(100 + round_)] * contenders)
        statuses = sorted(r.status if isinstance(r, IngestResult) else repr(r) for r in results)
        assert statuses == ["published"] + ["unchanged"] * (contenders - 1)
        versions = check_versions(hub)
        assert len(versions) == before + 1
        assert {r.version for r in results if isinstance(r, IngestResult)} == {versions[-1].number}


INGEST_SCRIPT = """
import json, sys
from catalogue.hub import open_hub
from catalogue.ingest.pipeline import Delivery, ingest_delivery
from catalogue.settings import Settings
args = json.loads(sys.argv[1])
hub = open_hub(Settings(**args["settings"]))
result = ingest_delivery(hub, args["name"], Delivery(args["csv"].encode(), "csv", {}, "replace",
                         {"source_url": args["tag"]}))
print(json.dumps({"status": result.status, "version": result.version}))
hub.close()
"""


@pytest.mark.parametrize("contenders", [2, 4])
def test_concurrent_ingests_in_separate_processes(hub: Hub, contenders: int) -> None:
    settings = {k: str(v) for k, v in hub.settings.model_dump(include={"data_dir", "definitions_dir", "database_url"}).items()
                if v is not None}
    for round_ in range(2):
        before = len(check_versions(hub))
        procs = [subprocess.Popen(
            [sys.executable, "-c", INGEST_SCRIPT, json.dumps({"settings": settings, "name": NAME, "tag": f"p{round_}-{i}",
                                                               "csv": _csv(500 + round_ * 10 + i).decode()})],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT_ROOT) for i in range(contenders)]
        with write_lock_held(hub, 2.0):
            outputs = [proc.communicate(timeout=300) for proc in procs]
        assert [(proc.returncode, "Traceback" in err) for proc, (_, err) in zip(procs, outputs)] == [(0, False)] * contenders, outputs
        results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
        versions = check_versions(hub)
        assert sorted(r["version"] for r in results) == list(range(before + 1, before + contenders + 1))
        assert {r["status"] for r in results} == {"published"}
        assert len(versions) == before + contenders


@pytest.mark.parametrize("contenders", [2, 4])
def test_concurrent_appends_lose_no_rows(hub: Hub, contenders: int) -> None:
    """Each append is compared again with the version that landed meanwhile: the last version has every row."""
    def rows(first: int) -> bytes:
        return ("id,value\n" + "".join(f"{i},{i}\n" for i in range(first, first + 10))).encode()

    results = []
    with write_lock_held(hub, 1.0):
        start = threading.Barrier(contenders)

        def run(i: int) -> None:
            start.wait()
            results.append(ingest_delivery(hub, NAME, Delivery(rows(1000 + 100 * i), "csv", {}, "append",
                                                               {"source_url": f"a{i}"})))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(contenders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(r.status for r in results) == ["published"] * contenders
    versions = check_versions(hub)
    assert [v.row_count for v in versions] == [40 + 10 * n for n in range(contenders + 1)]
    assert versions[-1].changes["added"] == 10 and versions[-1].changes["removed"] == 0
