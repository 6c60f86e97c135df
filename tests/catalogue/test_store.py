"""The versioned store on the harvested demo city: exact German values, descriptors, exports."""

from __future__ import annotations

import json

from catalogue.hub import Hub
from catalogue.metadata import get_dataset
from catalogue.query import QueryEngine, VersionRef


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
