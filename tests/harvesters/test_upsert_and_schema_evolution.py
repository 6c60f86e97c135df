"""Mode upsert by primary key, and schema evolution, over a real HTTP source.

Upsert: delivered rows replace the current rows of their key, new keys are added, other rows stay.
An added field publishes a new version recording the change; a removed field or a changed type is
quarantined with a report and the current version stays.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from catalogue.hub import Hub
from catalogue.ingest.commit import current_version
from catalogue.meta.definitions import load_definitions, sync_definitions
from catalogue.meta.metadata import get_dataset
from catalogue.meta.models import HarvestJob
from catalogue.query.engine import QueryEngine, VersionRef
from harvesters.runner import harvest_source

NAME = "baustellen"
FIELDS = [{"name": "id", "type": "integer"}, {"name": "strasse", "type": "string"}]
SCHEMA = {"fields": FIELDS, "primaryKey": ["id"]}


def _rows(hub: Hub) -> list[dict[str, Any]]:
    engine = QueryEngine(hub)
    try:
        with hub.sessions() as session:
            dataset = get_dataset(session, NAME)
            ref = VersionRef.of(hub, dataset, dataset.current_version)
        return list(engine.records(ref, limit=100, offset=0)["results"])
    finally:
        engine.close()


def _catalogue(make: Callable[..., Hub], url: str, mode: str) -> Hub:
    return make(NAME, SCHEMA, {"type": "http-file", "url": url, "format": "csv", "mode": mode})


def _change_schema(hub: Hub, schema: dict[str, Any]) -> None:
    root = hub.settings.definitions_dir
    (root / "schemas" / f"{NAME}.json").write_text(json.dumps(schema), encoding="utf-8")
    sync_definitions(hub, load_definitions(root))


def test_upsert_replaces_rows_by_key_and_keeps_the_others(file_server: Any, source_catalogue: Callable[..., Hub]) -> None:
    server, files = file_server
    files["b.csv"] = b"id,strasse\n1,Markt\n2,Hafen\n3,Ring\n"
    hub = _catalogue(source_catalogue, server.url + "b.csv", "upsert")
    assert harvest_source(hub, NAME).status == "published"
    files["b.csv"] = b"id,strasse\n2,Hafenstrasse\n4,Allee\n"  # 2 changed, 4 new; 1 and 3 not delivered

    outcome = harvest_source(hub, NAME)

    assert (outcome.status, outcome.version) == ("published", 2), outcome.message
    assert _rows(hub) == [{"id": 1, "strasse": "Markt"}, {"id": 2, "strasse": "Hafenstrasse"},
                          {"id": 3, "strasse": "Ring"}, {"id": 4, "strasse": "Allee"}]
    with hub.sessions() as session:
        job = session.get(HarvestJob, outcome.job_id)
        assert (job.rows_added, job.rows_changed, job.rows_removed, job.rows) == (1, 1, 0, 4)
    files["b.csv"] = b"id,strasse\n4,Allee\n"  # nothing new
    assert (harvest_source(hub, NAME).status, current_version(hub, NAME).number) == ("unchanged", 2)  # type: ignore[union-attr]


def test_upsert_without_a_primary_key_fails_naming_the_fix(file_server: Any, source_catalogue: Callable[..., Hub]) -> None:
    server, files = file_server
    files["b.csv"] = b"id,strasse\n1,Markt\n"
    hub = source_catalogue(NAME, {"fields": FIELDS}, {"type": "http-file", "url": server.url + "b.csv",
                                                      "format": "csv", "mode": "upsert"})
    assert harvest_source(hub, NAME).status == "published"  # the first delivery has nothing to merge with
    files["b.csv"] = b"id,strasse\n2,Hafen\n"
    outcome = harvest_source(hub, NAME)
    assert (outcome.status, outcome.error_code) == ("failed", "upsert-without-key")
    assert "Add a primaryKey" in outcome.message
    assert current_version(hub, NAME).number == 1  # type: ignore[union-attr]


def test_an_added_field_makes_a_version_recording_the_change(file_server: Any, source_catalogue: Callable[..., Hub]) -> None:
    server, files = file_server
    files["b.csv"] = b"id,strasse\n1,Markt\n2,Hafen\n"
    hub = _catalogue(source_catalogue, server.url + "b.csv", "append")
    assert harvest_source(hub, NAME).status == "published"
    _change_schema(hub, {"fields": [*FIELDS, {"name": "bis", "type": "date"}], "primaryKey": ["id"]})
    files["b.csv"] = b"id,strasse,bis\n3,Ring,2026-12-24\n"

    outcome = harvest_source(hub, NAME)

    assert (outcome.status, outcome.version) == ("published", 2), outcome.message
    version = current_version(hub, NAME)
    assert version is not None
    assert version.changes == {"added": 1, "removed": 0, "changed": 0, "compared_by": "primary key",
                               "schema_changed": True, "fields_added": ["bis"]}
    assert _rows(hub) == [{"id": 1, "strasse": "Markt", "bis": None}, {"id": 2, "strasse": "Hafen", "bis": None},
                          {"id": 3, "strasse": "Ring", "bis": "2026-12-24"}]


def test_a_removed_field_or_changed_type_is_quarantined_and_the_version_stays(
        file_server: Any, source_catalogue: Callable[..., Hub]) -> None:
    server, files = file_server
    files["b.csv"] = b"id,strasse\n1,Markt\n"
    hub = _catalogue(source_catalogue, server.url + "b.csv", "replace")
    assert harvest_source(hub, NAME).status == "published"
    before = current_version(hub, NAME)
    for schema, words in [
        ({"fields": [FIELDS[0]], "primaryKey": ["id"]}, "the field 'strasse' (string) of the current version is missing"),
        ({"fields": [FIELDS[0], {"name": "strasse", "type": "integer"}], "primaryKey": ["id"]},
         "the field 'strasse' changes its type from string to integer"),
    ]:
        _change_schema(hub, schema)
        files["b.csv"] = b"id,strasse\n1,7\n"
        outcome = harvest_source(hub, NAME)
        assert outcome.status == "quarantined"
        with hub.sessions() as session:
            job = session.get(HarvestJob, outcome.job_id)
            assert job.message.startswith(f"schema change refused: {words}")
            assert [e["type"] for e in job.errors] == ["schema-error"]
            assert words in job.errors[0]["message"] and "The current version of 'baustellen' stays" in job.errors[0]["message"]
        after = current_version(hub, NAME)
        assert (after.number, after.content_hash) == (before.number, before.content_hash)  # type: ignore[union-attr]
