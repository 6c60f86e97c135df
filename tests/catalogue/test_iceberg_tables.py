"""Datasets as Apache Iceberg tables: one snapshot per version over the hub's own parts, read by pyiceberg and DuckDB."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from sqlalchemy import text

from catalogue import duck
from catalogue.hub import Hub, open_hub
from catalogue.ingest.gc import collect
from catalogue.ingest.pipeline import Delivery, ingest_delivery
from catalogue.meta.definitions import load_definitions, sync_definitions
from catalogue.meta.metadata import get_dataset, get_version
from catalogue.query.engine import QueryEngine
from catalogue.settings import Settings
from catalogue.store import iceberg
from tests.catalogue.seaweed_server import s3_settings, seaweed  # noqa: F401 - fixtures: a SeaweedFS S3 server
from tests.conftest import pg_schema

pytest.importorskip("pyiceberg", reason="the [iceberg] extra: pip install -e '.[iceberg]'")

SCHEMA = {
    "fields": [
        {"name": "station", "type": "string", "constraints": {"required": True}},
        {"name": "day", "type": "date", "constraints": {"required": True}},
        {"name": "measured_at", "type": "datetime"},
        {"name": "pm10", "type": "number"},
        {"name": "samples", "type": "integer"},
        {"name": "ok", "type": "boolean"},
        {"name": "location", "type": "geopoint"},
    ],
    "primaryKey": ["station", "day"],
}
HEADER = "station,day,measured_at,pm10,samples,ok,location\n"


def line(station: str, day: int, pm10: float) -> str:
    return (f'{station},2026-11-{day:02d},2026-11-{day:02d}T08:00:00Z,{pm10},{day * 3},{"true" if day % 2 else "false"},'
            f'"9.9{day % 10}, 53.5{day % 10}"\n')


FIRST = HEADER + line("A", 1, 10.5) + line("B", 1, 20.25)
APPENDED = HEADER + line("A", 2, 11.0) + line("B", 2, 21.5)  # version 2 = version 1 + these rows
REPLACED = HEADER + line("C", 3, 5.0) + line("A", 3, 12.75)  # version 3 = only these rows


def dataset_versions(make_catalogue: Any, **settings: Any) -> Hub:
    """Three versions of ``air``: replace, append, replace."""
    hub: Hub = make_catalogue("air", SCHEMA, FIRST.encode(), **settings)
    for content, mode in ((APPENDED, "append"), (REPLACED, "replace")):
        result = ingest_delivery(hub, "air", Delivery(content.encode(), "csv", {}, mode, {"source_url": "test"}))
        assert result.status == "published", result.report
    return hub


def hub_rows(hub: Hub, number: int) -> list[tuple[Any, ...]]:
    """Version ``number``'s rows as the hub's own query engine resolves them (station, day, pm10, samples)."""
    engine = QueryEngine(hub)
    try:
        ref = engine.version("air", number)
        quoted = ", ".join(f"'{u}'" for u in ref.uris)
        con = duck.connect(memory_limit_mb=256, threads=1, spatial=False)  # nothing downloaded
        try:
            hub.storage.prepare_duckdb(con)
            return con.execute(f"SELECT station, day, pm10, samples FROM read_parquet([{quoted}]) "
                               "ORDER BY station, day").fetchall()
        finally:
            con.close()
    finally:
        engine.close()


def part_paths(hub: Hub, number: int) -> set[str]:
    """The version's part files as the hub reads them (a local path as a file: URI, as Iceberg names files)."""
    engine = QueryEngine(hub)
    try:
        uris = [hub.storage.engine_uri(key) for key in engine.version("air", number).keys]
    finally:
        engine.close()
    return {uri if "://" in uri else f"file://{uri}" for uri in uris}


def iceberg_rows(table: Any, snapshot_id: int) -> list[tuple[Any, ...]]:
    arrow = table.scan(snapshot_id=snapshot_id, selected_fields=("station", "day", "pm10", "samples")).to_arrow()
    return sorted(zip(*(arrow.column(n).to_pylist() for n in ("station", "day", "pm10", "samples"))))


def duck_iceberg(hub: Hub) -> duckdb.DuckDBPyConnection:
    """DuckDB with the iceberg extension (and avro, which it reads manifests with) loaded from their wheels,
    able to read ``hub``'s storage (on an object store: httpfs from its wheel, a secret scoped to the bucket)."""
    duckdb_extension_iceberg = pytest.importorskip("duckdb_extension_iceberg")
    duckdb_extension_avro = pytest.importorskip("duckdb_extension_avro")
    from catalogue.duck import wheel_extension_path

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.load_extension(wheel_extension_path("avro", duckdb_extension_avro.__file__))
    con.load_extension(wheel_extension_path("iceberg", duckdb_extension_iceberg.__file__))
    hub.storage.prepare_duckdb(con)
    return con


def check_table(hub: Hub) -> Any:
    """The table has one snapshot per version, each holding exactly that version's rows over its own parts."""
    with iceberg.open_catalog(hub) as catalog:
        table = catalog.load_table(iceberg.table_identifier("air"))
    ids = iceberg.snapshot_ids(table)
    assert sorted(ids) == [1, 2, 3]
    assert len(table.snapshots()) == 3
    assert table.current_snapshot().snapshot_id == ids[3]
    for number, snapshot_id in ids.items():
        snapshot = table.snapshot_by_id(snapshot_id)
        assert snapshot.summary[iceberg.HASH_PROPERTY] == hub_content_hash(hub, number)
        assert snapshot.summary[iceberg.PUBLISHED_PROPERTY] == published_at(hub, number)
        assert table.snapshot_by_name(f"v{number}").snapshot_id == snapshot_id
        assert iceberg_rows(table, snapshot_id) == hub_rows(hub, number)
        # No copy: the snapshot's data files are the version's own parts, nothing else.
        files = {task.file.file_path for task in table.scan(snapshot_id=snapshot_id).plan_files()}
        assert files == part_paths(hub, number)
    assert [r[0] for r in hub_rows(hub, 3)] == ["A", "C"]  # the replace dropped the older rows
    assert len(hub_rows(hub, 2)) == 4
    assert table.snapshot_by_id(ids[2]).summary.operation.value == "append"
    assert table.snapshot_by_id(ids[3]).summary.operation.value == "overwrite"
    # The table's own files are metadata only (JSON and Avro manifests), none a copy of a part.
    own = [key for key in hub.storage.list_keys("datasets/air/iceberg")]
    assert own and {key.rsplit(".", 1)[-1] for key in own} == {"json", "avro"}
    return table


def published_at(hub: Hub, number: int) -> str:
    with hub.sessions() as session:
        version = get_version(session, get_dataset(session, "air"), number)
        created = version.created_at
    return (created if created.tzinfo else created.replace(tzinfo=UTC)).isoformat()


def hub_content_hash(hub: Hub, number: int) -> str:
    engine = QueryEngine(hub)
    try:
        return engine.version("air", number).content_hash
    finally:
        engine.close()


def test_each_version_is_a_snapshot_over_its_own_parts(make_catalogue: Any, tmp_path: Path) -> None:
    hub = dataset_versions(make_catalogue, iceberg_catalog_url=f"sqlite:///{tmp_path / 'iceberg.sqlite'}")
    table = check_table(hub)
    ids = iceberg.snapshot_ids(table)
    # The geopoint column is the part's WKB geometry, an Iceberg binary column.
    location = table.schema().find_field("location")
    assert str(location.field_type) == "binary"
    con = duck_iceberg(hub)
    try:
        metadata = table.metadata_location
        current = con.execute(f"SELECT station, day, pm10, samples FROM iceberg_scan('{metadata}') "
                              "ORDER BY station, day").fetchall()
        older = con.execute(f"SELECT station, day, pm10, samples FROM iceberg_scan('{metadata}', "
                            f"snapshot_from_id => {ids[2]}) ORDER BY station, day").fetchall()
        # DuckDB knows the parts for GeoParquet and would read the column as GEOMETRY, which the table's binary
        # type cannot take: a reader of the WKB bytes turns that off (Spark and Trino read them as binary).
        con.execute("SET enable_geoparquet_conversion = false")
        geometry = con.execute(f"SELECT typeof(location), octet_length(location) FROM iceberg_scan('{metadata}') "
                               "LIMIT 1").fetchone()
    finally:
        con.close()
    assert current == hub_rows(hub, 3)
    assert older == hub_rows(hub, 2)
    assert geometry == ("BLOB", 21)  # a WKB point: byte order, type, two doubles


def test_registration_is_idempotent_and_the_collector_keeps_the_tables(make_catalogue: Any, tmp_path: Path) -> None:
    hub = dataset_versions(make_catalogue, iceberg_catalog_url=f"sqlite:///{tmp_path / 'iceberg.sqlite'}")
    (again,) = iceberg.sync_all(hub)
    assert (again.dataset, again.versions) == ("air", [])
    before = sorted(hub.storage.list_keys("datasets/air/iceberg"))
    collect(hub, grace=timedelta(0))  # every part is some version's: the table's files and parts all stay
    assert sorted(hub.storage.list_keys("datasets/air/iceberg")) == before
    check_table(hub)


def test_a_failed_registration_leaves_the_version_and_sync_repairs_it(
        make_catalogue: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A catalog in a directory that does not exist: every registration fails.
    broken = f"sqlite:///{tmp_path / 'missing' / 'iceberg.sqlite'}"
    with caplog.at_level(logging.WARNING, logger="catalogue.store.iceberg"):
        hub = dataset_versions(make_catalogue, iceberg_catalog_url=broken)
    warnings = [r.getMessage() for r in caplog.records if r.name == "catalogue.store.iceberg"]
    assert len(warnings) == 3 and "iceberg-sync" in warnings[-1]
    assert [r[0] for r in hub_rows(hub, 3)] == ["A", "C"]  # every version published and readable
    assert len(hub_rows(hub, 1)) == 2
    repaired = open_hub(Settings(data_dir=hub.settings.data_dir, definitions_dir=hub.settings.definitions_dir,
                                 iceberg_catalog_url=f"sqlite:///{tmp_path / 'iceberg.sqlite'}"))
    try:
        (done,) = iceberg.sync_all(repaired)
        assert done.versions == [1, 2, 3]
        check_table(repaired)
    finally:
        repaired.close()


def test_the_catalog_on_postgresql(make_catalogue: Any) -> None:
    with pg_schema("iceberg") as overrides:
        hub = dataset_versions(make_catalogue, database_url=overrides["database_url"],
                               iceberg_catalog_url=overrides["database_url"])
        try:
            check_table(hub)
            # The catalog's tables sit beside the catalogue's, in the throwaway schema (dropped with it).
            with hub.engine.connect() as connection:
                found = connection.execute(text(
                    "SELECT table_namespace, table_name, current_schema() FROM iceberg_tables")).all()
            assert [(ns, name) for ns, name, _ in found] == [("urbandata", "air")]
            assert found[0][2].startswith("iceberg_")
        finally:
            hub.close()


def test_an_added_field_widens_the_table_and_older_snapshots_keep_their_columns(
        make_catalogue: Any, tmp_path: Path) -> None:
    hub: Hub = make_catalogue("air", SCHEMA, FIRST.encode(), iceberg_catalog_url=f"sqlite:///{tmp_path / 'i.sqlite'}")
    root = hub.settings.definitions_dir
    widened = {**SCHEMA, "fields": [*SCHEMA["fields"], {"name": "no2", "type": "number"}]}  # type: ignore[list-item]
    (root / "schemas" / "air.json").write_text(json.dumps(widened), encoding="utf-8")
    sync_definitions(hub, load_definitions(root))
    content = HEADER.replace("\n", ",no2\n") + line("C", 2, 7.5).replace("\n", ",31.5\n")
    result = ingest_delivery(hub, "air", Delivery(content.encode(), "csv", {}, "append", {"source_url": "test"}))
    assert (result.status, result.version) == ("published", 2), result.report

    with iceberg.open_catalog(hub) as catalog:
        table = catalog.load_table(iceberg.table_identifier("air"))
    ids = iceberg.snapshot_ids(table)
    assert table.schema().find_field("no2").field_type.__class__.__name__ == "DoubleType"
    mapped = {field.names[0] for field in table.name_mapping()}
    assert "no2" in mapped  # the new parts' column is found by name
    latest = table.scan(snapshot_id=ids[2], selected_fields=("station", "no2")).to_arrow()
    assert sorted(zip(latest.column("station").to_pylist(), latest.column("no2").to_pylist()),
                  key=lambda r: r[0]) == [("A", None), ("B", None), ("C", 31.5)]
    older = table.scan(snapshot_id=ids[1]).to_arrow()
    assert older.num_rows == 2 and "no2" not in older.column_names  # read with the schema it was written with
    con = duck_iceberg(hub)
    try:
        con.execute("SET enable_geoparquet_conversion = false")
        found = con.execute(f"SELECT station, no2 FROM iceberg_scan('{table.metadata_location}') "
                            "ORDER BY station").fetchall()
    finally:
        con.close()
    assert found == [("A", None), ("B", None), ("C", 31.5)]


def test_two_registrations_at_once_make_each_snapshot_once(make_catalogue: Any, tmp_path: Path) -> None:
    hub = dataset_versions(make_catalogue)  # published with Iceberg tables off
    settings = Settings(data_dir=hub.settings.data_dir, definitions_dir=hub.settings.definitions_dir,
                        iceberg_catalog_url=f"sqlite:///{tmp_path / 'iceberg.sqlite'}")
    hubs = [open_hub(settings), open_hub(settings)]
    start = threading.Barrier(2)
    done: list[list[int]] = []
    failed: list[BaseException] = []

    def sync(one: Hub) -> None:
        start.wait()
        try:
            done.append(iceberg.sync_all(one)[0].versions)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failed.append(exc)

    threads = [threading.Thread(target=sync, args=(h,)) for h in hubs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    try:
        assert failed == []
        assert sorted(n for numbers in done for n in numbers) == [1, 2, 3]  # each registered by one of them
        check_table(hubs[0])  # three snapshots, in order, each holding its version's rows
    finally:
        for one in hubs:
            one.close()


def test_a_stale_table_cannot_commit_a_snapshot(make_catalogue: Any, tmp_path: Path) -> None:
    """The catalog's optimistic commit refuses a snapshot made from a table another process has moved on."""
    from pyiceberg.exceptions import CommitFailedException

    hub: Hub = make_catalogue("air", SCHEMA, FIRST.encode(), iceberg_catalog_url=f"sqlite:///{tmp_path / 'i.sqlite'}")
    with iceberg.open_catalog(hub) as catalog:
        stale = catalog.load_table(iceberg.table_identifier("air"))
    result = ingest_delivery(hub, "air", Delivery(APPENDED.encode(), "csv", {}, "append", {"source_url": "test"}))
    assert result.version == 2
    (version,) = iceberg._versions(hub, "air", after=1)
    with pytest.raises(CommitFailedException):
        iceberg._register(stale, version)
    with iceberg.open_catalog(hub) as catalog:
        table = catalog.load_table(iceberg.table_identifier("air"))
    assert sorted(iceberg.snapshot_ids(table)) == [1, 2] and len(table.snapshots()) == 2


def test_tables_over_parts_on_an_object_store(make_catalogue: Any, s3_settings: dict[str, Any],
                                              tmp_path: Path) -> None:
    """storage=s3: the table's metadata and data files are objects beside the parts; DuckDB reads them over httpfs."""
    hub = dataset_versions(make_catalogue, iceberg_catalog_url=f"sqlite:///{tmp_path / 'iceberg.sqlite'}",
                           **s3_settings)
    table = check_table(hub)
    assert table.metadata_location.startswith(f"s3://{s3_settings['s3_bucket']}/{s3_settings['s3_prefix']}/datasets/air/")
    con = duck_iceberg(hub)
    try:
        con.execute("SET enable_geoparquet_conversion = false")
        older = con.execute(f"SELECT station, day, pm10, samples FROM iceberg_scan('{table.metadata_location}', "
                            f"snapshot_from_id => {iceberg.snapshot_ids(table)[1]}) ORDER BY station, day").fetchall()
    finally:
        con.close()
    assert older == hub_rows(hub, 1)


def _footer(hub: Hub, uri: str) -> Any:
    """The Parquet footer of a table's data file (a local path or an object of the hub's store)."""
    if uri.startswith("s3://"):
        return pq.read_metadata(uri.removeprefix("s3://"), filesystem=hub.storage.fs)  # type: ignore[attr-defined]
    return pq.read_metadata(uri.removeprefix("file://"))


def test_every_stored_type_is_a_column_of_the_table(make_catalogue: Any, tmp_path: Path) -> None:
    """Local datetimes, times, years and GeoJSON geometry, in parts written by DuckDB's own writer and by pyarrow."""
    kinds = {"fields": [{"name": "id", "type": "string"}, {"name": "at", "type": "datetime"},
                        {"name": "clock", "type": "time"}, {"name": "yr", "type": "year"},
                        {"name": "n", "type": "integer"}], "primaryKey": ["id", "at"]}
    shapes = {"fields": [{"name": "id", "type": "integer"}, {"name": "shape", "type": "geojson"}], "primaryKey": ["id"]}
    url = f"sqlite:///{tmp_path / 'iceberg.sqlite'}"
    hub: Hub = make_catalogue("kinds", kinds, b"id,at,clock,yr,n\na,2026-11-20T08:15:30,08:15:30,2026,1\n"
                                                b"b,2026-11-21T09:00:00,23:59:59,1999,2\n", iceberg_catalog_url=url,
                              part_max_rows=1)  # one time window a part: DuckDB's COPY writes them
    make_catalogue("shapes", shapes, b'id,shape\n1,"{""type"": ""LineString"", ""coordinates"": [[9.9, 53.5], '
                                     b'[10.0, 53.6]]}"\n', iceberg_catalog_url=url)
    with iceberg.open_catalog(hub) as catalog:
        table = catalog.load_table(iceberg.table_identifier("kinds"))
        shapes_table = catalog.load_table(iceberg.table_identifier("shapes"))
    writers = {_footer(hub, task.file.file_path).created_by.split(" ")[0]
               for t in (table, shapes_table) for task in t.scan().plan_files()}
    assert writers == {"DuckDB", "parquet-cpp-arrow"}  # parts of both writers
    assert {f.name: str(f.field_type) for f in table.schema().fields} == {
        "id": "string", "at": "timestamp", "clock": "time", "yr": "int", "n": "long"}
    rows = table.scan().to_arrow().sort_by("id").to_pylist()
    assert [(r["id"], r["at"].isoformat(), r["clock"].isoformat(), r["yr"]) for r in rows] == [
        ("a", "2026-11-20T08:15:30", "08:15:30", 2026), ("b", "2026-11-21T09:00:00", "23:59:59", 1999)]
    assert str(shapes_table.schema().find_field("shape").field_type) == "binary"
    con = duck_iceberg(hub)
    try:
        con.execute("SET enable_geoparquet_conversion = false")
        found = con.execute('SELECT id, CAST("at" AS VARCHAR), CAST(clock AS VARCHAR), yr FROM '
                            f"iceberg_scan('{table.metadata_location}') ORDER BY id").fetchall()
        (wkb,) = con.execute(f"SELECT octet_length(shape) FROM iceberg_scan('{shapes_table.metadata_location}')"
                             ).fetchone()  # type: ignore[misc]
    finally:
        con.close()
    assert found == [("a", "2026-11-20 08:15:30", "08:15:30", 2026), ("b", "2026-11-21 09:00:00", "23:59:59", 1999)]
    assert wkb == 1 + 4 + 4 + 2 * 16  # a WKB line string of two points
