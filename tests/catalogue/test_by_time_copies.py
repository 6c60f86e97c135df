"""By-time copies of a history's parts: questions about a moment or a time range read them and answer exactly
as a full scan of the parts does; a question about one sensor and a plain record list keep the parts; the
collector removes a copy with its part."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete

from catalogue.hub import Hub
from catalogue.ingest.gc import collect
from catalogue.ingest.pipeline import Delivery, ingest_delivery
from catalogue.meta.models import Version
from catalogue.query import by_time
from catalogue.query.engine import QueryEngine, VersionRef
from catalogue.query.records import RecordsRequest, plan_records, prune, run_records
from catalogue.store.by_time import by_time_key
from catalogue.store.s3 import S3Storage
from tests.catalogue.seaweed_server import s3_settings, seaweed  # noqa: F401 - the SeaweedFS fixtures
from tests.catalogue.test_layout import HOURS, SCHEMA, SENSORS, START  # the same sensor history
from tests.conftest import catalogue_maker, parquet_file, read_stored_table, stored_mtime_ns

NAME = "sensors"
SMALL = {"part_max_rows": 300, "row_group_rows": 64}  # 4 parts (time windows) of 5 row groups each


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S")


def history(sensors: range = range(SENSORS), hours: range = range(HOURS), shift: int = 0) -> bytes:
    """Arrival order (every sensor of one hour, then the next hour), free counts with many ties."""
    lines = ["sensor,at,free"]
    for hour in hours:
        for sensor in sensors:
            lines.append(f"S{sensor:02d},{_stamp(START + timedelta(hours=hour))},{(sensor * 7 + hour + shift) % 13}")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def engine_of() -> Iterator[Any]:
    engines: list[QueryEngine] = []

    def make(hub: Hub) -> QueryEngine:
        engines.append(QueryEngine(hub))
        return engines[-1]

    yield make
    for engine in engines:
        engine.close()


def _rows(hub: Hub, ref: VersionRef) -> list[dict[str, Any]]:
    """Every row of the version, read straight from its parts (the full scan answers are checked against)."""
    return [row for key in ref.keys for row in read_stored_table(hub.storage, key).to_pylist()]


def _ask(engine: QueryEngine, request: RecordsRequest) -> tuple[dict[str, Any], list[str]]:
    """(run_records' answer, the files the rows query read) for the current version."""
    ref = engine.version(NAME)
    plan = plan_records(request, ref.schema, list(ref.uris), ref.number, row_count=ref.row_count)
    files = engine.run(lambda cur: prune(cur, plan).params["scan"])
    out = engine.run(lambda cur: run_records(cur, plan, version=ref.number, limit=request.limit or 0,
                                             time_limit_ms=20_000))
    return out, files


def _top(rows: list[dict[str, Any]], at: datetime, limit: int) -> tuple[int, list[tuple[str, int]]]:
    matching = [r for r in rows if r["at"] == at]
    ordered = sorted(matching, key=lambda r: (-r["free"], r["sensor"]))
    return len(matching), [(r["sensor"], r["free"]) for r in ordered[:limit]]


def _check_top(engine: QueryEngine, hub: Hub, at: datetime, limit: int = 10) -> list[str]:
    ref = engine.version(NAME)
    out, files = _ask(engine, RecordsRequest(where=f"at = '{_stamp(at)}'", order_by="free desc, sensor", limit=limit))
    total, expected = _top(_rows(hub, ref), at, limit)
    got = [(r["sensor"], r["free"]) for r in json.loads(out["results_json"])]
    assert (out["total_count"], got) == (total, expected), at
    return files


def test_a_moment_reads_the_by_time_copies_and_answers_as_a_full_scan(make_catalogue: Any, engine_of: Any) -> None:
    hub = make_catalogue(NAME, SCHEMA, history(), **SMALL)
    engine = engine_of(hub)
    rng = random.Random(14)
    moments = [START + timedelta(hours=rng.randrange(HOURS)) for _ in range(12)]
    moments += [START, START + timedelta(hours=HOURS - 1)]  # the first and last reading (window edges)
    for at in moments:
        files = _check_top(engine, hub, at, limit=rng.choice([1, 3, 10, 30]))
        assert files and all("/by-time/" in f for f in files)
        assert len(files) == 1  # the moment's window only: part pruning still applies
    # No reading at that time (between two hours, and after the history): no rows, a zero count.
    for at in (START + timedelta(minutes=30), START + timedelta(days=30)):
        out, _ = _ask(engine, RecordsRequest(where=f"at = '{_stamp(at)}'", order_by="free desc, sensor", limit=10))
        assert (out["total_count"], out["results_json"]) == (0, "[]")

    # A copy holds its part's rows, sorted by time then sensor, in row groups of row_group_rows.
    ref = engine.version(NAME)
    for key in ref.keys:
        part, copy = read_stored_table(hub.storage, key), parquet_file(hub.storage, by_time_key(key))
        rows = copy.read().to_pylist()
        assert sorted(rows, key=lambda r: (r["sensor"], r["at"])) == part.to_pylist()
        assert [(r["at"], r["sensor"]) for r in rows] == sorted((r["at"], r["sensor"]) for r in rows)
        meta = copy.metadata
        at = meta.schema.names.index("at")
        ranges = [meta.row_group(i).column(at).statistics for i in range(meta.num_row_groups)]
        assert meta.num_rows == part.num_rows and all(s.has_min_max for s in ranges)
        assert all(a.max <= b.min for a, b in zip(ranges, ranges[1:]))


def test_a_time_range_grouped_by_sensor_answers_as_a_full_scan(make_catalogue: Any, engine_of: Any) -> None:
    hub = make_catalogue(NAME, SCHEMA, history(), **SMALL)
    engine = engine_of(hub)
    rows = _rows(hub, engine.version(NAME))
    rng = random.Random(7)
    for _ in range(6):
        low = START + timedelta(hours=rng.randrange(HOURS))
        high = low + timedelta(hours=rng.randrange(1, 15))
        out, files = _ask(engine, RecordsRequest(
            select="sensor, sum(free) AS total, count(*) AS n", group_by="sensor", order_by="sensor",
            where=f"at >= '{_stamp(low)}' and at < '{_stamp(high)}'", limit=100))
        assert all("/by-time/" in f for f in files)
        expected: dict[str, list[int]] = {}
        for r in rows:
            if low <= r["at"] < high:
                expected.setdefault(r["sensor"], [0, 0])
                expected[r["sensor"]][0] += r["free"]
                expected[r["sensor"]][1] += 1
        got = {r["sensor"]: [r["total"], r["n"]] for r in json.loads(out["results_json"])}
        assert got == expected


def test_one_sensor_and_plain_record_lists_keep_the_parts(make_catalogue: Any, engine_of: Any) -> None:
    hub = make_catalogue(NAME, SCHEMA, history(), **SMALL)
    engine = engine_of(hub)
    at = _stamp(START + timedelta(hours=12))
    for request in (RecordsRequest(where=f"sensor = 'S03' and at >= '{at}'", order_by="free desc"),  # one sensor
                    RecordsRequest(where=f"at = '{at}'"),  # a plain list, paged by position in the parts
                    RecordsRequest(where="free > 3", order_by="free")):  # no time condition
        _, files = _ask(engine, request)
        assert files and not any("/by-time/" in f for f in files), request


def test_an_ingest_writes_the_copies_of_its_new_parts(make_catalogue: Any, engine_of: Any) -> None:
    hub = make_catalogue(NAME, SCHEMA, history(), **SMALL)
    ref = engine_of(hub).version(NAME)
    assert len(ref.keys) == 4
    assert set(hub.storage.list_keys(f"datasets/{NAME}/by-time")) == {by_time_key(k) for k in ref.keys}
    # An append writes the copies of the parts it adds; the kept parts' copies stay as they were.
    written = {k: stored_mtime_ns(hub.storage, k)
               for k in hub.storage.list_keys(f"datasets/{NAME}/by-time")}
    added = ingest_delivery(hub, NAME, Delivery(history(range(60, 62), range(3)), "csv", {}, "append",
                                                {"source_url": "test"}))
    assert added.status == "published"
    after = engine_of(hub).version(NAME)
    assert set(hub.storage.list_keys(f"datasets/{NAME}/by-time")) == {by_time_key(k) for k in after.keys}
    assert {k: stored_mtime_ns(hub.storage, k) for k in written} == written
    # A dataset without a time in its key gets none.
    plain = make_catalogue("plain", {"fields": [{"name": "id", "type": "integer"}, {"name": "at", "type": "datetime"}],
                                     "primaryKey": ["id"]}, b"id,at\n1,2026-01-05T00:00:00\n")
    assert not any(plain.storage.list_keys("datasets/plain/by-time"))


def test_appended_and_replaced_versions_answer_from_their_own_parts_copies(make_catalogue: Any,
                                                                          engine_of: Any) -> None:
    hub = make_catalogue(NAME, SCHEMA, history(), **SMALL)
    engine = engine_of(hub)
    noon = START + timedelta(hours=12)
    _check_top(engine, hub, noon)
    first = engine.version(NAME)

    # An append of new sensors at the same hours: one moment's rows now lie in several parts.
    added = ingest_delivery(hub, NAME, Delivery(history(range(60, 70), range(10, 14), shift=5), "csv", {},
                                                "append", {"source_url": "test"}))
    assert (added.status, added.version) == ("published", 2)
    second = engine.version(NAME)
    assert set(first.keys) < set(second.keys)
    for hour in range(9, 15):
        files = _check_top(engine, hub, START + timedelta(hours=hour), limit=40)
        assert all("/by-time/" in f for f in files)
    assert len(_check_top(engine, hub, noon, limit=40)) == 2  # the window's part and the appended one

    # A replace: new parts and copies; the old version's copies go with its parts once the collector runs.
    replaced = ingest_delivery(hub, NAME, Delivery(history(range(5), range(8), shift=3), "csv", {}, "replace",
                                                   {"source_url": "test"}))
    assert (replaced.status, replaced.version) == ("published", 3)
    for hour in (0, 3, 7, 9):
        _check_top(engine, hub, START + timedelta(hours=hour))
    third = engine.version(NAME)
    copies = set(hub.storage.list_keys(f"datasets/{NAME}/by-time"))
    assert {by_time_key(k) for k in third.keys} <= copies
    assert {by_time_key(k) for k in first.keys} & copies  # written while version 1 was asked

    gone = {by_time_key(k) for k in set(first.keys) | set(second.keys) if k not in third.keys} & copies
    assert gone  # written while versions 1 and 2 were asked
    assert _copies_removed(hub) == set()  # every version still references its parts
    with hub.engine.begin() as con:  # versions 1 and 2 withdrawn: their parts are referenced no more
        con.execute(delete(Version).where(Version.number < 3))
    assert _copies_removed(hub) == gone
    assert set(hub.storage.list_keys(f"datasets/{NAME}/by-time")) == copies - gone
    by_time.forget()
    _check_top(engine, hub, START + timedelta(hours=2))  # the current version still answers


def _copies_removed(hub: Hub) -> set[str]:
    """Keys of the by-time copies one collection (without grace period) removed."""
    return {name.removeprefix("store/") for name, _ in collect(hub, grace=timedelta(0)).files if "/by-time/" in name}


def test_a_missing_copy_is_written_again(make_catalogue: Any, engine_of: Any) -> None:
    hub = make_catalogue(NAME, SCHEMA, history(), **SMALL)
    engine = engine_of(hub)
    at = START + timedelta(hours=20)
    keys = set(hub.storage.list_keys(f"datasets/{NAME}/by-time"))
    for key in keys:  # as a version made before copies existed: none
        assert hub.storage.remove_stale(key, float("inf"))
    by_time.forget()
    files = _check_top(engine, hub, at)
    assert len(files) == 1 and "/by-time/" in files[0]
    assert set(hub.storage.list_keys(f"datasets/{NAME}/by-time")) == {k for k in keys if files[0].endswith(k)}


def test_copies_on_object_storage(s3_settings: dict[str, Any], tmp_path: Any) -> None:
    """On an object store the copy is an object beside the parts, written through the storage seam and read
    by DuckDB over httpfs; the collector lists and removes it like a part."""
    maker = catalogue_maker(tmp_path)
    make = next(maker)
    try:
        hub = make(NAME, SCHEMA, history(), **SMALL, **s3_settings)
        engine = QueryEngine(hub)
        try:
            assert isinstance(hub.storage, S3Storage)
            for hour in (0, 17, 39):
                files = _check_top(engine, hub, START + timedelta(hours=hour))
                assert files and all(f.startswith("s3://") and "/by-time/" in f for f in files)
            # (Part pruning reads no footers of objects: every part was read, so every part has its copy.)
            ref = engine.version(NAME)
            assert set(hub.storage.list_keys(f"datasets/{NAME}/by-time")) == {by_time_key(k) for k in ref.keys}
            assert _copies_removed(hub) == set()  # referenced: kept
        finally:
            engine.close()
    finally:
        next(maker, None)
