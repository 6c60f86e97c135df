"""The versioned store on the harvested demo city: exact German values, descriptors, exports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from catalogue import duck
from catalogue.ingest.csv_scan import ScanFailed, validate_csv
from catalogue.schema.model import TableSchema
from catalogue.hub import Hub
from catalogue.meta.metadata import get_dataset, list_versions
from catalogue.query.engine import QueryEngine, VersionRef
from catalogue.ingest.pipeline import Delivery, IngestResult, ingest_delivery
from catalogue.store.keys import part_key
from catalogue.ingest.validation import discard_typed
from tests.conftest import parquet_file


def _rows(hub: Hub, name: str) -> list[dict]:
    engine = QueryEngine(hub)
    try:
        with hub.sessions() as session:
            ds = get_dataset(session, name)
            ref = VersionRef.of(hub, ds, ds.current_version)
        return engine.records(ref, limit=1000, offset=0)["results"]
    finally:
        engine.close()


def test_german_demo_csv_values_are_exact_after_harvest(harvested: Hub) -> None:
    bins = {r["bin_id"]: r for r in _rows(harvested, "waste-bin-fill-levels")}
    assert bins["UB-0004"] == {
        "bin_id": "UB-0004", "street": "Große Bäckerstraße", "district": "Altstadt",
        "measured_at": "2026-11-20T09:29:00", "fill_level_percent": 55.0, "volume_litres": 3000,
        "last_emptied": "2026-11-15", "lon": 9.99669, "lat": 53.54648, "emptying_fee_eur": 2854.74,
        "note": "Gebühr inkl. 19 % MwSt. in €",
    }
    services = {r["service_id"]: r for r in _rows(harvested, "egovernment-services")}
    assert (services["LEI-009"]["fee_eur"], services["LEI-009"]["online"]) == (1250.0, True)


def test_descriptor_is_a_frictionless_data_package(harvested: Hub) -> None:
    with harvested.sessions() as session:
        ds = get_dataset(session, "parking-occupancy")
        version = ds.current_version
        descriptor = json.loads(harvested.storage.read_bytes(version.descriptor_key))
        schema = ds.table_schema
    resource = descriptor["resources"][0]
    assert resource["path"] == [p["path"] for p in version.parts]
    assert resource["schema"] == schema
    assert (resource["format"], resource["profile"]) == ("parquet", "tabular-data-resource")
    assert descriptor["licenses"] == [{
        "name": "dl-de/by-2-0", "path": "http://dcat-ap.de/def/licenses/dl-by-de/2.0",
        "title": "Datenlizenz Deutschland – Namensnennung – Version 2.0"}]
    assert {k: descriptor["urbandata"][k] for k in ("version", "rows", "sha256", "changes")} == {
        "version": 1, "rows": 576, "sha256": version.content_hash,
        "changes": {"added": 576, "removed": 0, "changed": 0, "compared_by": "primary key", "schema_changed": False},
    }
    assert descriptor["urbandata"]["provenance"]["source_url"].endswith("/feeds/parking-occupancy.csv")
    # Part paths are relative to the descriptor and stay inside its directory.
    assert all(not p.startswith(("/", "..")) for p in resource["path"])


READINGS = {
    "fields": [
        {"name": "sensor", "type": "string", "constraints": {"required": True}},
        {"name": "at", "type": "datetime", "constraints": {"required": True}},
        {"name": "level", "type": "number", "decimalChar": ",", "constraints": {"minimum": 0}},
        {"name": "count", "type": "integer"},
        {"name": "place", "type": "geopoint"},
    ],
    "primaryKey": ["sensor", "at"],
}


# The same readings without a geometry: their time windows are written by DuckDB's COPY.
PLAIN_READINGS = {**READINGS, "fields": READINGS["fields"][:-1]}


def _readings(rows: int, *, start: int = 0, place: bool = True) -> bytes:
    """Sensor readings in arrival order (by time, then sensor), German style, as cp1252 bytes."""
    lines = ["sensor;at;level;count" + (";place" if place else "")]
    for i in range(start, start + rows):
        sensor, tick = f"S{i % 7:02d}", i // 7
        level = "" if i % 11 == 0 else f"{(i * 37) % 1000},{i % 10}"
        lines.append(f'{sensor};2026-11-{1 + tick // 96:02d}T{tick % 96 // 4:02d}:{tick % 4 * 15:02d}:00;{level};'
                     f'{i % 5}' + (f';"9.9{i % 7}, 53.5{i % 3}"' if place else ""))
    return ("\r\n".join(lines) + "\r\n").encode("cp1252")


def _ingest(hub: Hub, name: str, content: bytes, encoding: str, mode: str = "replace") -> IngestResult:
    options = {"delimiter": ";", "encoding": encoding}
    return ingest_delivery(hub, name, Delivery(content, "csv", options, mode, {"source_url": "test"}))


def _read_by(tmp_path: Path, content: bytes, encoding: str) -> str:
    """Which path reads the delivery: 'duckdb' (csv_scan) or 'pyarrow'."""
    path = tmp_path / "probe.csv"
    path.write_bytes(content)
    con = duck.connect(memory_limit_mb=256, threads=1)
    try:
        validate_csv(con, path, {"delimiter": ";", "encoding": encoding}, TableSchema.from_stored(READINGS), tmp_path, name="t", place="t")
        return "duckdb"
    except ScanFailed:
        return "pyarrow"
    finally:
        discard_typed(con)
        con.close()


def test_duckdb_and_pyarrow_paths_write_the_same_parts(make_catalogue: Any, tmp_path: Path) -> None:
    content = _readings(700)
    # cp1252 is read by DuckDB; iso8859-15 (the same bytes for this text) only by pyarrow.
    assert (_read_by(tmp_path, content, "cp1252"), _read_by(tmp_path, content, "iso8859-15")) == ("duckdb", "pyarrow")
    hub = make_catalogue("readings", READINGS, content, options={"delimiter": ";", "encoding": "cp1252"},
                         part_max_rows=300, row_group_rows=64)
    with hub.sessions() as session:
        parts = get_dataset(session, "readings").current_version.parts
    assert len(parts) >= 3 and all(p["rows"] <= 300 for p in parts)
    for part in parts:
        groups = parquet_file(hub.storage, part_key("readings", part["sha256"])).metadata
        sizes = [groups.row_group(i).num_rows for i in range(groups.num_row_groups)]
        assert all(size == 64 for size in sizes[:-1])
    again = _ingest(hub, "readings", content, "iso8859-15")
    assert (again.status, again.version) == ("unchanged", 1)


def test_repeated_key_found_by_the_writer_gets_the_text_paths_report(make_catalogue: Any) -> None:
    hub = make_catalogue("readings", READINGS, _readings(50), options={"delimiter": ";", "encoding": "cp1252"})
    lines = _readings(50).split(b"\r\n")
    repeated = b"\r\n".join([*lines[:30], lines[12].replace(b";3;", b";4;"), *lines[30:]])
    by_duckdb = _ingest(hub, "readings", repeated, "cp1252")
    by_pyarrow = _ingest(hub, "readings", repeated, "iso8859-15")
    assert (by_duckdb.status, by_duckdb.version) == ("quarantined", 1)
    assert _timeless(by_duckdb.report) == _timeless(by_pyarrow.report)
    assert [(e["type"], e["rowNumber"]) for e in by_duckdb.report["tasks"][0]["errors"]] == [("primary-key", 31)]


def _part_files(hub: Hub, name: str) -> list[pq.ParquetFile]:
    with hub.sessions() as session:
        parts = get_dataset(session, name).current_version.parts
    return [parquet_file(hub.storage, part_key(name, p["sha256"])) for p in parts]


@pytest.mark.parametrize("place", [False, True])
def test_time_windows_are_written_by_duckdb_unless_geometry(make_catalogue: Any, place: bool) -> None:
    """Windows without geometry: one part each by DuckDB's writer, sorted by the key, exact row groups."""
    hub = make_catalogue("readings", READINGS if place else PLAIN_READINGS, _readings(700, place=place),
                         options={"delimiter": ";", "encoding": "cp1252"}, part_max_rows=300, row_group_rows=64)
    files = _part_files(hub, "readings")
    assert len(files) >= 3
    for part in files:
        assert part.metadata.created_by.startswith("parquet-cpp" if place else "DuckDB")
        assert part.metadata.num_rows <= 300
        sizes = [part.metadata.row_group(i).num_rows for i in range(part.metadata.num_row_groups)]
        assert all(size == 64 for size in sizes[:-1])
        keys = list(zip(*(part.read(columns=["sensor", "at"]).column(c).to_pylist() for c in ("sensor", "at"))))
        assert keys == sorted(keys)


def test_a_window_too_big_for_one_part_goes_through_pyarrow(make_catalogue: Any) -> None:
    # One early reading and 398 in the second of two windows: one part could not hold them.
    lines = _readings(700, place=False).split(b"\r\n")
    early = lines[1].replace(b"2026-11-01T00:00:00", b"2026-10-01T00:00:00")
    content = b"\r\n".join([lines[0], early, *lines[2:400]]) + b"\r\n"
    hub = make_catalogue("readings", PLAIN_READINGS, content, options={"delimiter": ";", "encoding": "cp1252"},
                         part_max_rows=300, row_group_rows=64)
    files = _part_files(hub, "readings")
    assert [f.metadata.num_rows for f in files] == [1, 300, 98]
    assert {f.metadata.created_by.split(" ")[0] for f in files} == {"parquet-cpp-arrow"}


def test_repeated_key_in_a_window_written_by_duckdb_gets_the_text_paths_report(make_catalogue: Any) -> None:
    options = {"delimiter": ";", "encoding": "cp1252"}
    hub = make_catalogue("readings", PLAIN_READINGS, _readings(700, place=False), options=options,
                         part_max_rows=300, row_group_rows=64)
    lines = _readings(700, place=False).split(b"\r\n")
    repeated = b"\r\n".join([*lines[:500], lines[450], *lines[500:]])  # row 501 repeats row 451
    by_duckdb = _ingest(hub, "readings", repeated, "cp1252")
    by_pyarrow = _ingest(hub, "readings", repeated, "iso8859-15")
    assert (by_duckdb.status, by_duckdb.version) == ("quarantined", 1)
    assert _timeless(by_duckdb.report) == _timeless(by_pyarrow.report)
    assert [(e["type"], e["rowNumber"]) for e in by_duckdb.report["tasks"][0]["errors"]] == [("primary-key", 501)]


def test_invalid_cells_get_the_text_paths_report(make_catalogue: Any) -> None:
    hub = make_catalogue("readings", READINGS, _readings(50), options={"delimiter": ";", "encoding": "cp1252"})
    bad = _readings(50).replace(b";111,3;", b";111.3;").replace(b";148,4;", b";-148,4;")
    by_duckdb = _ingest(hub, "readings", bad, "cp1252")
    assert by_duckdb.status == "quarantined"
    assert _timeless(by_duckdb.report) == _timeless(_ingest(hub, "readings", bad, "iso8859-15").report)
    assert [(e["type"], e["rowNumber"], e["cell"]) for e in by_duckdb.report["tasks"][0]["errors"]] == [
        ("type-error", 5, "111.3"), ("constraint-error", 6, "-148,4")]


def test_append_through_duckdb_adds_a_part_and_refuses_a_repeated_key(make_catalogue: Any) -> None:
    hub = make_catalogue("readings", READINGS, _readings(70), mode="append",
                         options={"delimiter": ";", "encoding": "cp1252"})
    more = _ingest(hub, "readings", _readings(35, start=50), "cp1252", mode="append")
    assert (more.status, more.version, more.rows) == ("published", 2, 85)
    lines = _readings(35, start=50).split(b"\r\n")
    twice = b"\r\n".join([*lines, lines[5]])  # a row repeated within the delivery, already in version 2
    refused = _ingest(hub, "readings", twice, "cp1252", mode="append")
    assert (refused.status, refused.version) == ("quarantined", 2)
    assert [e["type"] for e in refused.report["tasks"][0]["errors"]] == ["primary-key"]


def _timeless(report: dict[str, Any]) -> dict[str, Any]:
    """A report without its timings."""
    out = json.loads(json.dumps(report))
    out.pop("time", None)
    out["stats"].pop("seconds", None)
    for task in out.get("tasks", []):
        task["stats"].pop("seconds", None)
    return out


def test_the_same_rows_in_other_bytes_make_no_new_version_and_a_change_still_does(
    make_catalogue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catalogue.store import layout

    content = _readings(400)
    hub = make_catalogue("readings", READINGS, content, options={"delimiter": ";", "encoding": "cp1252"})
    with hub.sessions() as session:
        first = get_dataset(session, "readings").current_version
        before = (first.content_hash, [p["sha256"] for p in first.parts])
    # Parts written another way (as by an earlier release): other bytes, other hashes, the same rows.
    monkeypatch.setattr(layout, "PART_COMPRESSION", "zstd")
    same = _ingest(hub, "readings", content, "cp1252")
    assert (same.status, same.version, same.rows) == ("unchanged", 1, 400)
    changed = _ingest(hub, "readings", content.replace(b"S03;", b"S09;", 1), "cp1252")
    assert (changed.status, changed.version) == ("published", 2)
    assert changed.changes["added"] == changed.changes["removed"] == 1
    with hub.sessions() as session:
        versions = list_versions(session, get_dataset(session, "readings"))
        assert [v.number for v in versions] == [2, 1]
        assert (versions[1].content_hash, [p["sha256"] for p in versions[1].parts]) == before
    back = _ingest(hub, "readings", content, "cp1252")  # version 1's rows again: a change from version 2
    assert (back.status, back.version, back.changes["added"], back.changes["removed"]) == ("published", 3, 1, 1)
    fewer = _ingest(hub, "readings", _readings(399), "cp1252")  # a row less is a change too
    assert (fewer.status, fewer.version, fewer.changes["removed"]) == ("published", 4, 1)
