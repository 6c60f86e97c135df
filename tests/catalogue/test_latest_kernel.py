"""Live values in the kernel: the latest row per entity kept at commit time, new rows per version, commit notices."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from catalogue.commit_notices import COMMITS
from catalogue.hub import Hub
from catalogue.ingest.pipeline import Delivery, ingest_delivery
from catalogue.query.engine import QueryEngine
from catalogue.query.latest import latest_uri, snapshot_of
from catalogue.schema.model import TableSchema
from catalogue.store.keys import latest_key
from catalogue.store.live import LiveKey, added_parts, live_key, new_rows
from tests.conftest import duckdb_on, read_stored_table, remove_stored

SCHEMA = {
    "fields": [
        {"name": "lot_id", "type": "string", "constraints": {"required": True}},
        {"name": "timestamp", "type": "datetime", "constraints": {"required": True}},
        {"name": "free", "type": "integer"},
        {"name": "location", "type": "geopoint"},
    ],
    "primaryKey": ["lot_id", "timestamp"],
}
HEADER = "lot_id,timestamp,free,location\n"
FIRST = HEADER + "".join(f"{lot},2026-12-01T0{hour}:00:00,{hour * 10 + n},\"9.9{n}, 53.5{n}\"\n"
                         for n, lot in enumerate(("P01", "P02", "P03")) for hour in range(4))


def rows_of(uris: list[str], storage: Any) -> list[tuple[Any, ...]]:
    con = duckdb_on(storage)
    quoted = ", ".join(f"'{u}'" for u in uris)
    found = con.execute(f"SELECT lot_id, strftime(timestamp, '%H:%M'), free FROM read_parquet([{quoted}]) "
                        "ORDER BY lot_id, timestamp").fetchall()
    con.close()
    return found


def current_ref(hub: Hub, name: str, number: int | None = None) -> Any:
    engine = QueryEngine(hub)
    try:
        return engine, engine.version(name, number)
    except BaseException:
        engine.close()
        raise


@pytest.fixture
def parking(make_catalogue: Any) -> Hub:
    hub: Hub = make_catalogue("parking", SCHEMA, FIRST.encode())
    return hub


def test_live_key_is_the_entity_and_the_time_of_the_primary_key() -> None:
    assert live_key(TableSchema.from_stored(SCHEMA)) == LiveKey(("lot_id",), "timestamp")
    three = {"fields": [{"name": "station", "type": "string"}, {"name": "day", "type": "date"},
                        {"name": "sensor", "type": "integer"}], "primaryKey": ["station", "day", "sensor"]}
    assert live_key(TableSchema.from_stored(three)) == LiveKey(("station", "sensor"), "day")
    assert live_key(TableSchema.from_stored({"fields": [{"name": "id", "type": "integer"}],
                                             "primaryKey": ["id"]})) is None
    # A time first is not an entity followed by a time.
    first = {"fields": [{"name": "t", "type": "datetime"}, {"name": "id", "type": "integer"}],
             "primaryKey": ["t", "id"]}
    assert live_key(TableSchema.from_stored(first)) is None


def test_the_commit_writes_the_latest_row_per_entity(parking: Hub) -> None:
    engine, ref = current_ref(parking, "parking")
    try:
        key = latest_key("parking", ref.number, ref.content_hash)
        assert parking.storage.exists(key)
        assert rows_of([parking.storage.engine_uri(key)], parking.storage) == [
            ("P01", "03:00", 30), ("P02", "03:00", 31), ("P03", "03:00", 32)]
    finally:
        engine.close()


def test_an_append_merges_the_previous_latest_rows_with_the_new_ones(parking: Hub) -> None:
    # P01 moves on, P02 gets an older reading only (it must not win), P04 is new.
    more = HEADER + ("P01,2026-12-01T05:00:00,99,\"9.9, 53.5\"\n"
                     "P02,2026-12-01T01:30:00,7,\"9.9, 53.5\"\n"
                     "P04,2026-12-01T02:00:00,44,\"9.9, 53.5\"\n")
    result = ingest_delivery(parking, "parking", Delivery(more.encode(), "csv", {}, "append", {"source_url": "t"}))
    assert (result.status, result.version) == ("published", 2)
    engine, ref = current_ref(parking, "parking")
    try:
        _, before = engine, engine.version("parking", 1)
        added = added_parts(snapshot_of(ref), snapshot_of(before))
        assert added is not None and len(added) == 1  # an append: the new rows are its own part
        key = latest_key("parking", 2, ref.content_hash)
        expected = [("P01", "05:00", 99), ("P02", "03:00", 31), ("P03", "03:00", 32), ("P04", "02:00", 44)]
        assert rows_of([parking.storage.engine_uri(key)], parking.storage) == expected
        # The same as recomputing from every row of the version.
        remove_stored(parking.storage, key)
        assert rows_of([latest_uri(engine, ref)], parking.storage) == expected
        assert engine.run(lambda cur: rows_of(new_rows(cur, parking.storage, snapshot_of(ref),
                                                       snapshot_of(before)), parking.storage)) == [
            ("P01", "05:00", 99), ("P02", "01:30", 7), ("P04", "02:00", 44)]
    finally:
        engine.close()


def test_a_replace_recomputes_and_its_new_rows_are_the_rows_the_previous_version_lacked(parking: Hub) -> None:
    # P03 is gone; P01's last reading changed; P02 is as it was.
    lines = FIRST.splitlines()
    kept = [line for line in lines if not line.startswith("P03")]
    kept = [line.replace(",30,", ",5,") if line.startswith("P01,2026-12-01T03") else line for line in kept]
    result = ingest_delivery(parking, "parking", Delivery(("\n".join(kept) + "\n").encode(), "csv", {}, "replace",
                                                          {"source_url": "t"}))
    assert (result.status, result.version) == ("published", 2)
    engine, ref = current_ref(parking, "parking")
    try:
        before = engine.version("parking", 1)
        assert added_parts(snapshot_of(ref), snapshot_of(before)) is None
        assert rows_of([latest_uri(engine, ref)], parking.storage) == [("P01", "03:00", 5), ("P02", "03:00", 31)]
        assert engine.run(lambda cur: rows_of(new_rows(cur, parking.storage, snapshot_of(ref),
                                                       snapshot_of(before)), parking.storage)) == [("P01", "03:00", 5)]
    finally:
        engine.close()


def test_a_published_version_is_announced_after_its_latest_rows_are_written(parking: Hub) -> None:
    heard: list[tuple[str, int, bool]] = []

    def listener(dataset: str, number: int) -> None:
        engine, ref = current_ref(parking, dataset, number)
        engine.close()
        heard.append((dataset, number, parking.storage.exists(latest_key(dataset, number, ref.content_hash))))

    COMMITS.listen(listener)
    try:
        more = HEADER + "P01,2026-12-01T06:00:00,1,\"9.9, 53.5\"\n"
        for mode in ("append", "append"):  # the second is unchanged: no notice
            ingest_delivery(parking, "parking", Delivery(more.encode(), "csv", {}, mode, {"source_url": "t"}))
    finally:
        COMMITS.forget(listener)
    assert heard == [("parking", 2, True)]


def test_a_failing_listener_is_dropped_and_the_commit_stands(parking: Hub) -> None:
    calls: list[int] = []

    def broken(dataset: str, number: int) -> None:
        calls.append(number)
        raise RuntimeError("listener bug")

    COMMITS.listen(broken)
    try:
        for hour in (7, 8):
            more = HEADER + f"P01,2026-12-01T0{hour}:00:00,1,\"9.9, 53.5\"\n"
            result = ingest_delivery(parking, "parking", Delivery(more.encode(), "csv", {}, "append",
                                                                  {"source_url": "t"}))
            assert result.status == "published"
    finally:
        COMMITS.forget(broken)
    assert calls == [2]


def test_an_upsert_merges_the_previous_latest_rows_with_the_rows_it_changed_or_added(parking: Hub) -> None:
    # P01's last reading is corrected, P02 gets a newer one, an old P03 reading is corrected (not its latest).
    rows = HEADER + ("P01,2026-12-01T03:00:00,77,\"9.9, 53.5\"\n"
                     "P02,2026-12-01T04:00:00,8,\"9.9, 53.5\"\n"
                     "P03,2026-12-01T00:00:00,1,\"9.9, 53.5\"\n")
    result = ingest_delivery(parking, "parking", Delivery(rows.encode(), "csv", {}, "upsert", {"source_url": "t"}))
    assert (result.status, result.version) == ("published", 2)
    engine, ref = current_ref(parking, "parking")
    try:
        before = engine.version("parking", 1)
        assert added_parts(snapshot_of(ref), snapshot_of(before)) is None  # an upsert rewrites its parts
        key = latest_key("parking", 2, ref.content_hash)
        expected = [("P01", "03:00", 77), ("P02", "04:00", 8), ("P03", "03:00", 32)]
        assert rows_of([parking.storage.engine_uri(key)], parking.storage) == expected  # merged at commit time
        assert engine.run(lambda cur: rows_of(new_rows(cur, parking.storage, snapshot_of(ref),
                                                       snapshot_of(before)), parking.storage)) == [
            ("P01", "03:00", 77), ("P02", "04:00", 8), ("P03", "00:00", 1)]
        remove_stored(parking.storage, key)
        assert rows_of([latest_uri(engine, ref)], parking.storage) == expected  # recomputed from every row: the same
    finally:
        engine.close()


def test_an_append_reads_the_previous_latest_file_not_the_history(parking: Hub) -> None:
    engine, first = current_ref(parking, "parking")
    try:
        # Stand-in previous file holding only P02: were the history read, P01 and P03 would come back.
        key = latest_key("parking", 1, first.content_hash)
        table = read_stored_table(parking.storage, key)
        sink = pa.BufferOutputStream()
        pq.write_table(table.filter(pc.equal(table["lot_id"], "P02")), sink)
        parking.storage.write_bytes(key, sink.getvalue().to_pybytes())
        more = HEADER + "P04,2026-12-01T05:00:00,4,\"9.9, 53.5\"\n"
        ingest_delivery(parking, "parking", Delivery(more.encode(), "csv", {}, "append", {"source_url": "t"}))
        ref = engine.version("parking")
        assert rows_of([latest_uri(engine, ref)], parking.storage) == [("P02", "03:00", 31), ("P04", "05:00", 4)]
    finally:
        engine.close()
