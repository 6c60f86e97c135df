"""Catalogue source definitions (catalogues/*.yaml) and `urbandata harvest-catalogue` on a real CKAN server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from api.cli import app
from catalogue.errors import DefinitionError
from catalogue.hub import open_hub
from catalogue.meta.models import Dataset
from catalogue.settings import Settings
from harvesters.catalogue_definitions import load_catalogues
from harvesters.catalogue_sources import CatalogueSpec
from tests.harvesters.catalogue_server import TREES_CSV, catalogue_server
from tests.harvesters.test_ckan_source import Portal, package


def write(root: Path, name: str, doc: object) -> None:
    (root / "catalogues").mkdir(parents=True, exist_ok=True)
    (root / "catalogues" / f"{name}.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")


def test_definitions_load_as_catalogue_specs(tmp_path: Path) -> None:
    write(tmp_path, "govdata", {"name": "govdata", "type": "ckan", "url": "https://ckan.govdata.example",
                                "options": {"organization": "stadt-musterstadt", "tags": ["Umwelt"], "rows": 500,
                                            "prefix": "gd-", "licenses": {"odc-odbl": "http://dcat-ap.de/def/licenses/cc-by/4.0"}}})
    write(tmp_path, "land", {"name": "land", "type": "dcat", "url": "https://daten.land.example/catalog.ttl",
                             "options": {"rdf_format": "turtle", "publisher": "stadtverwaltung"}})

    assert load_catalogues(tmp_path) == [
        CatalogueSpec("govdata", "ckan", "https://ckan.govdata.example", {
            "organization": "stadt-musterstadt", "tags": ["Umwelt"], "rows": 500, "prefix": "gd-",
            "licenses": {"odc-odbl": "http://dcat-ap.de/def/licenses/cc-by/4.0"}}),
        CatalogueSpec("land", "dcat", "https://daten.land.example/catalog.ttl",
                      {"rdf_format": "turtle", "publisher": "stadtverwaltung"})]
    assert load_catalogues(tmp_path / "nothing-here") == []


def test_every_problem_in_every_definition_is_listed(tmp_path: Path) -> None:
    write(tmp_path, "alpha", {"name": "alpha-other", "type": "ckan", "url": "https://x.example"})
    write(tmp_path, "beta", {"name": "beta", "type": "ckan", "url": "https://x.example", "options": {"max_pages": 3}})
    write(tmp_path, "gamma", {"name": "gamma", "type": "ftp", "url": "ftp://x.example", "options": {"colour": "red"}})

    with pytest.raises(DefinitionError) as caught:
        load_catalogues(tmp_path)

    assert caught.value.details["problems"] == [
        "catalogues/alpha.yaml: name 'alpha-other' must equal the file name 'alpha'.",
        "catalogues/beta.yaml: option(s) max_pages do not apply to a ckan source.",
        "catalogues/gamma.yaml, at options: Additional properties are not allowed ('colour' was unexpected)",
        "catalogues/gamma.yaml, at type: 'ftp' is not one of ['ckan', 'dcat']",
        "catalogues/gamma.yaml, at url: 'ftp://x.example' does not match '^https?://'",
    ]


def test_harvest_catalogue_command_harvests_a_ckan_portal(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    open_hub(Settings(data_dir=data_dir)).close()
    with catalogue_server() as server:
        portal = Portal(server)
        server.files["/data/baeume.csv"] = ("text/csv", TREES_CSV)
        portal.packages = [package(server, "baumkataster", "/data/baeume.csv", "CSV"),
                           package(server, "kaputt", "/data/missing.csv", "CSV")]
        write(tmp_path / "defs", "govdata", {"name": "govdata", "type": "ckan", "url": server.url})

        result = CliRunner().invoke(app, ["harvest-catalogue", "--definitions-dir", str(tmp_path / "defs"),
                                          "--data-dir", str(data_dir)])

    assert result.exit_code == 1, result.output  # one dataset failed
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]
    assert lines[0].startswith("published  baumkataster: published version 1 (2 rows;")
    assert lines[1].startswith("failed  Source 'kaputt' answered HTTP 404")
    assert lines[-1] == "govdata: 2 datasets listed; 1 published, 1 failed"
    hub = open_hub(Settings(data_dir=data_dir))
    try:
        with hub.sessions() as session:
            assert session.scalars(select(Dataset.name)).all() == ["baumkataster"]
    finally:
        hub.close()


def test_the_examples_in_datasets_readme_are_valid_definitions(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "datasets" / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Catalogue sources", 1)[1].split("\n## ", 1)[0]
    examples = [yaml.safe_load(block.split("```", 1)[0]) for block in section.split("```yaml\n")[1:]]
    for doc in examples:
        write(tmp_path, doc["name"], doc)

    assert [(c.name, c.type) for c in load_catalogues(tmp_path)] == [("govdata-musterstadt", "ckan"),
                                                                     ("land-opendata", "dcat")]
