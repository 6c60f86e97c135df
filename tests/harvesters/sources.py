"""A catalogue of one dataset harvested from a given source (ogc-features, database, mqtt tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from catalogue.hub import Hub, open_hub
from catalogue.meta.definitions import load_definitions, sync_definitions
from catalogue.meta.metadata import get_dataset, list_versions
from catalogue.meta.models import HarvestJob
from catalogue.settings import PROJECT_ROOT, Settings
from tests.conftest import LOOPBACK_ALLOWED, PUBLISHERS_YAML

DEMO = PROJECT_ROOT / "datasets"


def source_catalogue(tmp_path: Path, name: str, schema: dict[str, Any], source: dict[str, Any],
                     **settings: Any) -> Hub:
    """A catalogue whose one dataset ``name`` has ``schema`` and is harvested from ``source``."""
    root = tmp_path / "defs"
    (root / "definitions").mkdir(parents=True, exist_ok=True)
    (root / "schemas").mkdir(exist_ok=True)
    (root / "publishers.yaml").write_text(PUBLISHERS_YAML, encoding="utf-8")
    (root / "schemas" / f"{name}.json").write_text(json.dumps(schema), encoding="utf-8")
    definition = {
        "name": name, "title": f"Test {name}", "description": "Testdaten.", "publisher": "testamt",
        "license": "http://dcat-ap.de/def/licenses/dl-zero-de/2.0", "schema": f"schemas/{name}.json",
        "source": source,
    }
    (root / "definitions" / f"{name}.yaml").write_text(yaml.safe_dump(definition), encoding="utf-8")
    settings.setdefault("harvest_allowed_hosts", LOOPBACK_ALLOWED)
    hub = open_hub(Settings(data_dir=tmp_path / "var", definitions_dir=root, **settings))
    sync_definitions(hub, load_definitions(root))
    return hub


def demo_schema(name: str) -> dict[str, Any]:
    """A demo dataset's Table Schema."""
    loaded: dict[str, Any] = json.loads((DEMO / "schemas" / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def versions(hub: Hub, name: str) -> list[tuple[int, int]]:
    """(number, rows) of every version, newest first."""
    with hub.sessions() as session:
        return [(v.number, v.row_count) for v in list_versions(session, get_dataset(session, name))]


def last_job(hub: Hub) -> HarvestJob:
    """The newest harvest job."""
    with hub.sessions() as session:
        job = session.scalars(select(HarvestJob).order_by(HarvestJob.id.desc())).first()
        assert job is not None
        session.expunge(job)
        return job


def set_source(hub: Hub, name: str, **fields: Any) -> None:
    """Change the harvest source ``name`` (url, options, ...) as an operator editing its definition would."""
    from catalogue.meta.models import HarvestSource

    with hub.sessions.begin() as session:
        source = session.scalar(select(HarvestSource).where(HarvestSource.name == name))
        assert source is not None
        for key, value in fields.items():
            setattr(source, key, value)
