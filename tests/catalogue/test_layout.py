"""Part layout: a (thing, time) history is cut into time windows, each part sorted by the key."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from catalogue.hub import Hub
from catalogue.meta.metadata import get_dataset
from catalogue.query.engine import VersionRef
from catalogue.ingest.pipeline import Delivery, ingest_delivery
from catalogue.store.keys import part_key
from tests.conftest import read_stored_table

SCHEMA = {
    "fields": [
        {"name": "sensor", "type": "string"}, {"name": "at", "type": "datetime"}, {"name": "free", "type": "integer"},
    ],
    "primaryKey": ["sensor", "at"],
}
START = datetime(2026, 1, 5)
HOURS = 40
SENSORS = 25


def history() -> bytes:
    """Arrival order (every sensor of one hour, then the next hour), as sensor platforms deliver."""
    lines = ["sensor,at,free"]
    for hour in range(HOURS):
        for sensor in range(SENSORS):
            at = (START + timedelta(hours=hour)).strftime("%Y-%m-%dT%H:%M:%S")
            lines.append(f"S{sensor:02d},{at},{(sensor * 7 + hour) % 50}")
    return ("\n".join(lines) + "\n").encode()


def parts_of(hub: Hub, name: str) -> list[list[dict[str, Any]]]:
    with hub.sessions() as session:
        ds = get_dataset(session, name)
        return [read_stored_table(hub.storage, part_key(name, p["sha256"])).to_pylist()
                for p in ds.current_version.parts]


def test_a_sensor_history_is_cut_into_time_windows_sorted_by_key_inside(make_catalogue: Any) -> None:
    hub = make_catalogue("sensors", SCHEMA, history(), part_max_rows=300, row_group_rows=64)
    parts = parts_of(hub, "sensors")
    rows = [r for part in parts for r in part]
    assert len(rows) == HOURS * SENSORS
    assert {(r["sensor"], r["at"]) for r in rows} == {
        (f"S{s:02d}", START + timedelta(hours=h)) for h in range(HOURS) for s in range(SENSORS)}
    # ceil(1000 / 300) = 4 windows of 10 hours each: one part per window, none over 300 rows.
    assert len(parts) == 4 and all(len(p) <= 300 for p in parts)
    spans = [(min(r["at"] for r in p), max(r["at"] for r in p)) for p in parts]
    assert all(spans[i][1] < spans[i + 1][0] for i in range(len(spans) - 1))  # windows do not overlap
    for part in parts:
        keys = [(r["sensor"], r["at"]) for r in part]
        assert keys == sorted(keys)  # sorted by the primary key inside each part


def test_the_same_delivery_again_makes_the_same_parts(make_catalogue: Any) -> None:
    hub = make_catalogue("sensors", SCHEMA, history(), part_max_rows=300, row_group_rows=64)
    again = ingest_delivery(hub, "sensors", Delivery(history(), "csv", {}, "replace", {"source_url": "test"}))
    assert again.status == "unchanged"


def test_a_time_filter_reads_one_window_and_a_key_filter_still_prunes(make_catalogue: Any) -> None:
    from catalogue.query.records import RecordsRequest, plan_records, prune

    hub = make_catalogue("sensors", SCHEMA, history(), part_max_rows=300, row_group_rows=64)
    with hub.sessions() as session:
        ds = get_dataset(session, "sensors")
        ref = VersionRef.of(hub, ds, ds.current_version)
    from catalogue import duck

    con = duck.connect(memory_limit_mb=256, threads=1)
    hub.storage.prepare_duckdb(con)  # the object store's extension and secret (nothing on local files)
    try:
        at_noon = plan_records(RecordsRequest(where="at = '2026-01-05T12:00:00'"), ref.schema, list(ref.uris), 1)
        assert len(prune(con, at_noon).params["scan"]) == 1
        one_sensor = plan_records(RecordsRequest(where="sensor = 'S03'"), ref.schema, list(ref.uris), 1)
        assert len(prune(con, one_sensor).params["scan"]) == 4  # every window holds every sensor
    finally:
        con.close()


def test_a_key_without_time_is_sorted_by_key_alone(make_catalogue: Any) -> None:
    schema = {"fields": [{"name": "id", "type": "integer"}, {"name": "at", "type": "datetime"}], "primaryKey": ["id"]}
    lines = ["id,at"] + [f"{(i * 37) % 500},2026-01-0{1 + i % 9}T00:00:00" for i in range(500)]
    hub = make_catalogue("plain", schema, ("\n".join(lines) + "\n").encode(), part_max_rows=200, row_group_rows=64)
    parts = parts_of(hub, "plain")
    assert [len(p) for p in parts] == [200, 200, 100]
    assert [r["id"] for p in parts for r in p] == list(range(500))
