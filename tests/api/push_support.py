"""A catalogue for the push, token and private-dataset tests: two publishers, a private dataset, a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import update

from api.app import create_app
from catalogue.hub import Hub, open_hub
from catalogue.ingest.pipeline import Delivery, ingest_delivery
from catalogue.meta.definitions import load_definitions, sync_definitions
from catalogue.meta.models import Dataset
from catalogue.meta.tokens import create_token
from catalogue.settings import Settings
from tests.api.live_server import threaded_server

LICENSE = "http://dcat-ap.de/def/licenses/dl-zero-de/2.0"
METERS_SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "name", "type": "string"},
                            {"name": "value", "type": "number"}], "primaryKey": ["id"]}
PLACES_SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "name", "type": "string"},
                            {"name": "geometry", "type": "geojson"}], "primaryKey": ["id"]}
METERS_CSV = b"id,name,value\n1,Nord,1.5\n2,Mitte,2.5\n3,Sued,3.5\n"
# name -> (publisher, schema, first delivery, private)
DATASETS: dict[str, tuple[str, dict[str, Any], bytes, bool]] = {
    "meters": ("stadtwerke", METERS_SCHEMA, METERS_CSV, False),
    "places": ("stadtwerke", PLACES_SCHEMA, b"id,name,geometry\n1,Rathaus,\"{\"\"type\"\":\"\"Point\"\",\"\"coordinates\"\":[9.1,48.7]}\"\n", False),
    "secret-meters": ("stadtwerke", METERS_SCHEMA, b"id,name,value\n7,Geheim,7.5\n", True),
    "other-meters": ("testamt", METERS_SCHEMA, METERS_CSV, False),
}
PUBLISHERS = {"publishers": [{"name": "stadtwerke", "title": "Stadtwerke Musterstadt"},
                             {"name": "testamt", "title": "Testamt Musterstadt"}]}


def make_push_hub(root: Path, **settings: Any) -> Hub:
    """A catalogue under ``root`` with DATASETS, each with its first version; secret-meters is private."""
    defs = root / "defs"
    (defs / "definitions").mkdir(parents=True)
    (defs / "publishers.yaml").write_text(yaml.safe_dump(PUBLISHERS), encoding="utf-8")
    for name, (publisher, schema, _, _) in DATASETS.items():
        (defs / "definitions" / f"{name}.yaml").write_text(yaml.safe_dump({
            "name": name, "title": f"Zähler {name}", "description": "Testdaten.", "publisher": publisher,
            "license": LICENSE, "schema": json.loads(json.dumps(schema))}), encoding="utf-8")
    hub = open_hub(Settings(data_dir=root / "var", definitions_dir=defs, **settings))
    sync_definitions(hub, load_definitions(defs))
    for name, (_, _, content, private) in DATASETS.items():
        result = ingest_delivery(hub, name, Delivery(content, "csv", {}, "replace", {"source_url": "test"}))
        assert result.status == "published", (result.status, getattr(result, "message", ""), result.report)
        if private:
            with hub.sessions.begin() as session:
                session.execute(update(Dataset).where(Dataset.name == name).values(private=True))
    return hub


@contextmanager
def push_hub(root: Path, **settings: Any) -> Iterator[Hub]:
    """make_push_hub(root, **settings), closed on leaving: the body of the push tests' ``hub`` fixtures."""
    hub = make_push_hub(root, **settings)
    try:
        yield hub
    finally:
        hub.close()


def token(hub: Hub, publisher: str, *scopes: str, name: str = "test") -> str:
    """A new token of ``publisher`` with ``scopes``."""
    plaintext, _ = create_token(hub, publisher, name, list(scopes))
    return plaintext


def bearer(plaintext: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {plaintext}"}


@contextmanager
def serving(hub: Hub) -> Iterator[str]:
    """The API of ``hub`` under a real uvicorn on a free loopback port; yields its base URL."""
    app = create_app(hub.settings, hub)
    try:
        with threaded_server(app) as (host, port):
            yield f"http://{host}:{port}"
    finally:
        app.state.query_engine.close()
        app.state.sql_pool.close()


@contextmanager
def serving_api(hub: Hub) -> Iterator[str]:
    """serving(hub), yielding the base URL of its ``/api/v1``."""
    with serving(hub) as url:
        yield f"{url}/api/v1"
