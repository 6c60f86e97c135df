"""Catalogue source definitions (catalogues/*.yaml) and `urbandata harvest-catalogue` on a real CKAN server."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from api.cli import app
from catalogue.errors import DefinitionError
from catalogue.hub import open_hub
from catalogue.ingest import jobs
from catalogue.meta.models import Dataset, HarvestJob
from catalogue.settings import Settings
from harvesters.catalogue_definitions import load_catalogues
from harvesters.catalogue_sources import CatalogueSpec, catalogue_due
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


URL_HINT = "give an http(s) URL: a CKAN portal's base URL (without /api/3), or a DCAT catalogue's first page."
SCHEDULE_FORMS = ("is neither an interval (a number and s, m, h, d or w: 15m, 6h, 1d) nor a cron expression of five "
                  "fields (*/15 * * * *).")


def test_every_problem_in_every_definition_is_listed(tmp_path: Path) -> None:
    write(tmp_path, "alpha", {"name": "alpha-other", "type": "ckan", "url": "https://x.example"})
    write(tmp_path, "beta", {"name": "beta", "type": "ckan", "url": "https://x.example", "options": {"max_pages": 3}})
    write(tmp_path, "gamma", {"name": "gamma", "type": "ftp", "url": "ftp://x.example", "options": {"colour": "red"}})

    with pytest.raises(DefinitionError) as caught:
        load_catalogues(tmp_path)

    keys = "prefix, publisher, licenses, formats, csv, organization, tags, rows, rdf_format, max_pages"
    assert caught.value.details["problems"] == [
        "catalogues/alpha.yaml, at name: 'alpha-other' must equal the file name 'alpha'; rename the file or the "
        "catalogue source.",
        "catalogues/beta.yaml, at options/max_pages: the option does not apply to a ckan source; remove it (it is an "
        "option of dcat sources).",
        f"catalogues/gamma.yaml, at options: unknown key 'colour'; remove it or use one of the keys allowed here: {keys}.",
        "catalogues/gamma.yaml, at type: 'ftp' is not one of ckan, dcat; use one of these.",
        f"catalogues/gamma.yaml, at url: 'ftp://x.example' is no http(s) URL (its scheme is 'ftp'); {URL_HINT}",
    ]


def test_unknown_keys_bad_urls_missing_keys_options_and_schedules_are_named_with_how_to_fix(tmp_path: Path) -> None:
    write(tmp_path, "alpha", {"name": "alpha", "type": "ckan", "urll": "https://x.example", "schedule": "dienstags",
                              "options": {"csv": {"delimitr": ";"}, "publisher": "nobody",
                                          "licenses": {"odc-odbl": "http://example.org/odbl"}}})
    write(tmp_path, "beta", {"name": "beta", "type": "dcat", "url": "https://daten example.org/catalog.ttl",
                             "options": {"rdf_format": "ttl", "rows": 5000}})
    write(tmp_path, "gamma", {"name": "gamma", "type": "dcat", "url": "https://daten.example.org:99999/c.ttl",
                              "schedule": "0 3 * * *"})
    write(tmp_path, "delta", ["name", "delta"])
    write(tmp_path, "fine", {"name": "fine", "type": "ckan", "url": "https://ckan.example.org", "schedule": "1d",
                             "options": {"publisher": "amt"}})

    with pytest.raises(DefinitionError) as caught:
        load_catalogues(tmp_path, publishers={"amt"})

    assert caught.value.details["problems"] == [
        "catalogues/alpha.yaml, at (top level): the key 'url' is missing; add it: where the catalogue is, an http(s) "
        "URL: a CKAN portal's base URL (without /api/3), or a DCAT catalogue's first page.",
        "catalogues/alpha.yaml, at (top level): unknown key 'urll' (did you mean 'url'?); remove it or use one of the "
        "keys allowed here: name, type, url, schedule, options.",
        "catalogues/alpha.yaml, at options/csv: unknown key 'delimitr' (did you mean 'delimiter'?); remove it or use "
        "one of the keys allowed here: delimiter, encoding, quote_char, newlines_in_values.",
        "catalogues/alpha.yaml, at options/publisher: 'nobody' is not in publishers.yaml; add it there or name one "
        "of: amt.",
        "catalogues/alpha.yaml, at options/licenses/odc-odbl: 'http://example.org/odbl' is not one of the hub's "
        "licences; map it to one of: http://dcat-ap.de/def/licenses/cc-by/4.0, http://dcat-ap.de/def/licenses/cc-zero, "
        "http://dcat-ap.de/def/licenses/dl-by-de/2.0, http://dcat-ap.de/def/licenses/dl-zero-de/2.0.",
        f"catalogues/alpha.yaml, at schedule: The schedule 'dienstags' {SCHEDULE_FORMS}",
        "catalogues/beta.yaml, at options/rdf_format: 'ttl' is not one of turtle, xml, json-ld; use one of these.",
        "catalogues/beta.yaml, at options/rows: 5000 is greater than the maximum of 1000; it must be (ckan) packages "
        "per page, 1 to 1000.",
        f"catalogues/beta.yaml, at url: 'https://daten example.org/catalog.ttl' holds spaces; {URL_HINT}",
        "catalogues/beta.yaml, at options/rows: the option does not apply to a dcat source; remove it (it is an "
        "option of ckan sources).",
        "catalogues/delta.yaml: it must be a mapping of keys (name, type, url, schedule, options), not a list; see "
        "datasets/README.md, 'Catalogue sources'.",
        "catalogues/gamma.yaml, at url: 'https://daten.example.org:99999/c.ttl' is no URL (Port out of range "
        f"0-65535); {URL_HINT}",
    ]


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _publishers(root: Path) -> None:
    (root / "definitions").mkdir(parents=True, exist_ok=True)
    (root / "publishers.yaml").write_text("publishers: [{name: amt, title: Amt}]\n", encoding="utf-8")


def test_validate_checks_the_catalogue_definitions_and_fails_naming_file_and_key(tmp_path: Path) -> None:
    _publishers(tmp_path)
    write(tmp_path, "govdata", {"name": "govdata", "type": "ckan", "url": "https://ckan.example.org",
                                "schedule": "every tuesday", "options": {"publisher": "stadtwerke", "row": 5}})

    result = _cli("validate", "--definitions", str(tmp_path))

    assert (result.exit_code, result.stdout) == (1, "")
    message = " ".join(result.stderr.split())
    assert message.startswith("error [invalid-definition] 3 problem(s) in the catalogue definitions: - ")
    assert "catalogues/govdata.yaml, at options: unknown key 'row' (did you mean 'rows'?)" in message
    assert ("catalogues/govdata.yaml, at options/publisher: 'stadtwerke' is not in publishers.yaml; add it there or "
            "name one of: amt.") in message
    assert f"catalogues/govdata.yaml, at schedule: The schedule 'every tuesday' {SCHEDULE_FORMS}" in message


def test_validate_reports_dataset_and_catalogue_problems_in_one_round(tmp_path: Path) -> None:
    _publishers(tmp_path)
    (tmp_path / "definitions" / "odd.yaml").write_text("name: other\n", encoding="utf-8")
    write(tmp_path, "govdata", {"name": "govdata", "type": "ckan"})

    result = _cli("validate", "--definitions", str(tmp_path))

    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "problem(s) in the dataset definitions: - definitions/odd.yaml" in message
    assert "error [invalid-definition] 1 problem(s) in the catalogue definitions: - catalogues/govdata.yaml, at " \
           "(top level): the key 'url' is missing; add it" in message


def test_validate_lists_valid_catalogue_definitions(tmp_path: Path) -> None:
    demo = Path(__file__).parents[2] / "datasets"
    root = tmp_path / "defs"
    shutil.copytree(demo, root)
    write(root, "govdata", {"name": "govdata", "type": "ckan", "url": "https://amt:geheim@ckan.example.org",
                            "schedule": "0 3 * * *", "options": {"publisher": "stadtwerke"}})

    result = _cli("validate", "--definitions", str(root))

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "  ok  catalogue govdata  (ckan, https://***@ckan.example.org)" in lines  # no credentials shown
    assert lines[-1] == "1 catalogue source definitions are valid."


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
    assert re.fullmatch(r"govdata: 2 datasets listed; 1 published, 1 failed \(job \d+: 1 created, 1 failed\)",
                        lines[-1]), lines[-1]
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


def test_harvest_catalogue_due_runs_only_the_scheduled_catalogues_whose_time_has_come(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    open_hub(Settings(data_dir=data_dir, harvest_allowed_hosts=["127.0.0.1"])).close()
    with catalogue_server() as server:
        portal = Portal(server)
        server.files["/data/baeume.csv"] = ("text/csv", TREES_CSV)
        portal.packages = [package(server, "baumkataster", "/data/baeume.csv", "CSV")]
        write(tmp_path / "defs", "daily", {"name": "daily", "type": "ckan", "url": server.url, "schedule": "1d"})
        write(tmp_path / "defs", "manual", {"name": "manual", "type": "ckan", "url": server.url,
                                            "options": {"prefix": "m-"}})
        due = ["harvest-catalogue", "--due", "--definitions-dir", str(tmp_path / "defs"), "--data-dir", str(data_dir)]

        first = CliRunner().invoke(app, due)
        second = CliRunner().invoke(app, due)

    assert first.exit_code == 0, first.output
    assert re.search(r"^daily: 1 datasets listed; 1 published \(job \d+: 1 created\)$", first.stdout, re.M), first.stdout
    assert "manual" not in first.stdout  # no schedule: harvested on request only
    assert (second.exit_code, second.stdout.strip()) == (0, "No catalogue source is due.")
    hub = open_hub(Settings(data_dir=data_dir))
    try:
        with hub.sessions() as session:
            runs = session.execute(select(HarvestJob.catalogue, HarvestJob.started_at)
                                   .where(HarvestJob.catalogue.is_not(None))).all()
        assert [name for name, _ in runs] == ["daily"]
        daily = CatalogueSpec("daily", "ckan", "https://x.example", schedule="1d")
        assert catalogue_due(hub, daily, now=runs[0][1] + timedelta(hours=23)) is False
        assert catalogue_due(hub, daily, now=runs[0][1] + timedelta(days=1)) is True
        assert catalogue_due(hub, CatalogueSpec("daily", "ckan", "https://x.example"), now=runs[0][1]
                             + timedelta(days=9)) is False  # without a schedule never due
        jobs.start_catalogue(hub, "daily")  # a run going on (another process): not due until it ends
        assert catalogue_due(hub, daily, now=runs[0][1] + timedelta(days=2)) is False
    finally:
        hub.close()


def test_harvest_catalogue_exits_1_when_a_dataset_is_quarantined(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    open_hub(Settings(data_dir=data_dir)).close()
    with catalogue_server() as server:
        portal = Portal(server)
        server.files["/data/baeume.csv"] = ("text/csv", TREES_CSV)
        portal.packages = [package(server, "baumkataster", "/data/baeume.csv", "CSV")]
        write(tmp_path / "defs", "govdata", {"name": "govdata", "type": "ckan", "url": server.url})
        command = ["harvest-catalogue", "--definitions-dir", str(tmp_path / "defs"), "--data-dir", str(data_dir)]
        first = CliRunner().invoke(app, command)
        portal.packages[0]["metadata_modified"] = "2026-12-01T08:00:00.000000"
        server.files["/data/baeume.csv"] = ("text/csv", TREES_CSV.replace(b"1990", b"alt"))  # pflanzjahr: integer
        second = CliRunner().invoke(app, command)

    assert first.exit_code == 0, first.output
    assert second.exit_code == 1, second.output
    assert re.search(r"quarantined \(job \d+: 1 failed\)$", second.stdout.strip()), second.stdout
