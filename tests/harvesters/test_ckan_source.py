"""CKAN portal harvests against a real local server answering package_search as GovData's CKAN does.

The packages are copies of a real-world-shaped package (fixtures/ckan_package_search.json) with
their own names, organisations, tags and resources; the server pages them by rows/start and
filters them by the organisation and tag filter query, as CKAN's Solr does.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from catalogue.hub import Hub, open_hub
from catalogue.meta.models import Dataset, HarvestJob, HarvestSource
from catalogue.settings import Settings
from harvesters.catalogue_sources import CatalogueSpec, harvest_catalogue
from harvesters.ckan import search_filter
from tests.harvesters.catalogue_server import (
    GAUGES, PLAYGROUNDS, TREES_CSV, CatalogueServer, catalogue_server, harvesting_hub, refusing_port, statuses,
    versions,
)

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "ckan_package_search.json").read_text(encoding="utf-8"))
TEMPLATE = FIXTURE["result"]["results"][0]

def package(server: CatalogueServer, name: str, path: str, fmt: str, *, org: str = "stadt-musterstadt",
            tags: tuple[str, ...] = ("Umwelt",), license_id: str = "http://dcat-ap.de/def/licenses/dl-by-de/2.0",
            modified: str = "2026-11-20T09:30:01.551092") -> dict[str, Any]:
    """A copy of the real-world package with its own name, organisation, tags and data resource."""
    doc = copy.deepcopy(TEMPLATE)
    doc.update(id=f"id-{name}", name=name, title=f"Titel {name}", metadata_modified=modified, license_id=license_id)
    doc["organization"] = {**doc["organization"], "name": org, "title": f"Organisation {org}"}
    doc["tags"] = [{"display_name": t, "id": t, "name": t, "state": "active", "vocabulary_id": None} for t in tags]
    doc["resources"][1].update(url=f"{server.url}{path}", format=fmt)
    return doc


class Portal:
    """The CKAN portal's state: its packages (in order) and the resource files."""

    def __init__(self, server: CatalogueServer) -> None:
        self.server = server
        self.packages: list[dict[str, Any]] = []
        self.broken = False
        server.routes["/api/3/action/package_search"] = self.package_search

    def package_search(self, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        if self.broken:
            return 200, "application/json", b'{"help": "x", "success": true, "result": {"count": 3, "resul'
        rows, start = int(query["rows"][0]), int(query["start"][0])
        chosen = [p for p in sorted(self.packages, key=lambda p: p["name"]) if _matches(p, query.get("fq", [""])[0])]
        result = {**FIXTURE["result"], "count": len(chosen), "results": chosen[start:start + rows]}
        return 200, "application/json", json.dumps({**FIXTURE, "result": result}).encode()

    def data_requests(self) -> list[str]:
        return [p for p in self.server.paths() if p.startswith("/data/")]


def _matches(pkg: dict[str, Any], fq: str) -> bool:
    orgs = re.findall(r'organization:"([^"]+)"', fq)
    tags = re.findall(r'tags:"([^"]+)"', fq)
    names = {t["name"] for t in pkg["tags"]}
    return (not orgs or pkg["organization"]["name"] in orgs) and all(t in names for t in tags)


def serve_portal(server: Any) -> Portal:
    """A CKAN portal on ``server`` serving the three resources' files (trees, playgrounds, gauges), no packages yet."""
    portal = Portal(server)
    server.files["/data/baeume.csv"] = ("text/csv", TREES_CSV)
    server.files["/data/spielplaetze.geojson"] = ("application/geo+json", json.dumps(PLAYGROUNDS).encode())
    server.files["/data/pegel.json"] = ("application/json", json.dumps(GAUGES).encode())
    return portal


@pytest.fixture
def portal() -> Iterator[Portal]:
    with catalogue_server() as server:
        portal = serve_portal(server)
        portal.packages = [
            package(server, "baumkataster", "/data/baeume.csv", "CSV"),
            package(server, "spielplaetze", "/data/spielplaetze.geojson", "GeoJSON", tags=("Freizeit",)),
            package(server, "pegelstaende", "/data/pegel.json", "JSON", org="wasserverband"),
        ]
        yield portal


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    with harvesting_hub(tmp_path) as hub:
        yield hub


def spec(portal: Portal, **options: Any) -> CatalogueSpec:
    return CatalogueSpec(name="govdata", type="ckan", url=portal.server.url, options={"rows": 2, **options})


def test_first_run_publishes_every_package_with_its_metadata(hub: Hub, portal: Portal) -> None:
    outcome = harvest_catalogue(hub, spec(portal))

    assert (outcome.status, statuses(outcome)) == ("finished", {
        "baumkataster": "published", "pegelstaende": "published", "spielplaetze": "published"})
    assert versions(hub) == {"baumkataster": [(1, 2)], "pegelstaende": [(1, 2)], "spielplaetze": [(1, 2)]}
    with hub.sessions() as session:
        trees = session.scalar(select(Dataset).where(Dataset.name == "baumkataster"))
        assert (trees.title, trees.description, trees.keywords, trees.license, trees.publisher.name,
                trees.publisher.title, trees.private) == (
            "Titel baumkataster", TEMPLATE["notes"], ["Umwelt"], "http://dcat-ap.de/def/licenses/dl-by-de/2.0",
            "stadt-musterstadt", "Organisation stadt-musterstadt", False)
        assert (trees.themes, trees.contact) == (["ENVI"], {"name": "Open-Data-Team",
                                                           "email": "opendata@musterstadt.example"})
        # Types inferred from the data; the German dialect (";", cp1252) sniffed.
        assert trees.table_schema == {"fields": [{"name": "baum_id", "type": "string"}, {"name": "art", "type": "string"},
                                                 {"name": "pflanzjahr", "type": "integer"},
                                                 {"name": "hoehe_m", "type": "number"}], "missingValues": [""]}
        source = session.scalar(select(HarvestSource).where(HarvestSource.name == "baumkataster"))
        assert (source.type, source.format, source.options) == ("ckan", "csv", {
            "delimiter": ";", "encoding": "cp1252", "catalogue": "govdata", "remote_id": "id-baumkataster",
            "marker": "2026-11-20T09:30:01.551092"})
        jobs = session.execute(select(HarvestJob.status, HarvestJob.parent_id).where(
            HarvestJob.catalogue.is_(None))).all()
    # One job per dataset, each a part of the run's own job (tests/harvesters/test_catalogue_jobs.py).
    assert sorted(jobs) == [("published", outcome.job_id)] * 3
    # Paged by rows=2: two listing requests; each new resource read twice (schema inference, ingest).
    listing = [e for e in portal.server.log if "package_search" in e]
    assert [re.search(r"start=(\d+)", e).group(1) for e in listing] == ["0", "2"]
    assert sorted(portal.data_requests()) == sorted(["/data/baeume.csv", "/data/pegel.json",
                                                     "/data/spielplaetze.geojson"] * 2)


def test_unchanged_rerun_fetches_no_data_and_makes_no_version(hub: Hub, portal: Portal) -> None:
    harvest_catalogue(hub, spec(portal))
    before, portal.server.log[:] = versions(hub), []

    outcome = harvest_catalogue(hub, spec(portal))

    assert statuses(outcome) == {"baumkataster": "skipped", "pegelstaende": "skipped", "spielplaetze": "skipped"}
    assert portal.data_requests() == []
    assert versions(hub) == before


def test_changed_package_alone_is_fetched_and_gets_version_2(hub: Hub, portal: Portal) -> None:
    harvest_catalogue(hub, spec(portal))
    portal.server.log[:] = []
    portal.server.files["/data/pegel.json"] = ("application/json", json.dumps(GAUGES + [
        {"pegel": "P3", "datum": "2026-11-02", "stand_m": 0.5}]).encode())
    portal.packages[2]["metadata_modified"] = "2026-12-01T10:00:00.000000"
    portal.packages[2]["title"] = "Pegelstände neu"

    outcome = harvest_catalogue(hub, spec(portal))

    assert statuses(outcome) == {"baumkataster": "skipped", "pegelstaende": "published", "spielplaetze": "skipped"}
    assert portal.data_requests() == ["/data/pegel.json"]
    assert versions(hub)["pegelstaende"] == [(1, 2), (2, 3)]
    with hub.sessions() as session:
        assert session.scalar(select(Dataset.title).where(Dataset.name == "pegelstaende")) == "Pegelstände neu"


def test_deleted_package_is_withdrawn_explicitly_and_returns_when_listed_again(hub: Hub, portal: Portal) -> None:
    harvest_catalogue(hub, spec(portal))
    gone = portal.packages.pop(1)

    outcome = harvest_catalogue(hub, spec(portal))

    assert statuses(outcome) == {"baumkataster": "skipped", "pegelstaende": "skipped", "spielplaetze": "withdrawn"}
    with hub.sessions() as session:
        dataset = session.scalar(select(Dataset).where(Dataset.name == "spielplaetze"))
        job = session.scalars(select(HarvestJob).where(HarvestJob.dataset_id == dataset.id)
                              .order_by(HarvestJob.id.desc())).first()
        assert (dataset.private, job.status, job.message) == (True, "withdrawn", (
            "spielplaetze: withdrawn, the dataset 'id-spielplaetze' is no longer listed by catalogue 'govdata'; "
            "it is hidden from the public catalogue, its versions are kept"))
    assert versions(hub)["spielplaetze"] == [(1, 2)]
    assert statuses(harvest_catalogue(hub, spec(portal)))["spielplaetze"] == "skipped"  # withdrawn once

    portal.packages.append(gone)
    assert statuses(harvest_catalogue(hub, spec(portal)))["spielplaetze"] == "unchanged"
    with hub.sessions() as session:
        assert session.scalar(select(Dataset.private).where(Dataset.name == "spielplaetze")) is False


def test_filters_by_organisation_and_tags(hub: Hub, portal: Portal) -> None:
    assert search_filter({"organization": ["stadt-musterstadt", "x"], "tags": ["Umwelt"]}) == (
        '(organization:"stadt-musterstadt" OR organization:"x") AND tags:"Umwelt"')

    outcome = harvest_catalogue(hub, spec(portal, organization="stadt-musterstadt", tags=["Umwelt"]))

    assert statuses(outcome) == {"baumkataster": "published"}


def test_one_bad_package_does_not_stop_the_others(hub: Hub, portal: Portal) -> None:
    portal.packages[1]["resources"][1]["url"] = f"{portal.server.url}/data/missing.geojson"  # 404
    portal.packages[2]["license_id"] = "odc-odbl"  # not in our vocabulary

    outcome = harvest_catalogue(hub, spec(portal))

    assert {d.dataset: (d.status, d.error_code) for d in outcome.datasets} == {
        "baumkataster": ("published", None), "spielplaetze": ("failed", "source-unreachable"),
        "pegelstaende": ("failed", "invalid-definition")}
    assert "odc-odbl" in next(d.message for d in outcome.datasets if d.dataset == "pegelstaende")
    assert versions(hub) == {"baumkataster": [(1, 2)]}


def test_broken_resource_on_a_changed_run_keeps_the_current_version_and_is_retried(hub: Hub, portal: Portal) -> None:
    harvest_catalogue(hub, spec(portal))
    portal.packages[0]["metadata_modified"] = "2026-12-02T00:00:00"
    portal.server.files["/data/baeume.csv"] = ("text/csv", b"baum_id;art;pflanzjahr;hoehe_m\nB1;Linde;neunzehn;1\n")

    first = harvest_catalogue(hub, spec(portal))
    again = harvest_catalogue(hub, spec(portal))

    assert statuses(first)["baumkataster"] == statuses(again)["baumkataster"] == "quarantined"
    assert versions(hub)["baumkataster"] == [(1, 2)]


@pytest.mark.parametrize("breakage", ["unreachable", "malformed", "truncated", "not-ckan"])
def test_broken_portal_fails_the_run_and_changes_nothing(hub: Hub, portal: Portal, breakage: str) -> None:
    harvest_catalogue(hub, spec(portal))
    before = versions(hub)
    url = portal.server.url
    if breakage == "malformed":
        portal.broken = True
    elif breakage == "truncated":
        portal.server.truncated.add("/api/3/action/package_search")
    elif breakage == "not-ckan":
        portal.server.routes["/api/3/action/package_search"] = lambda q: (200, "application/json", b'{"success": false, '
                                                                          b'"error": {"message": "Not found"}}')
    with refusing_port() as port:
        if breakage == "unreachable":
            url = f"http://127.0.0.1:{port}"
        outcome = harvest_catalogue(hub, CatalogueSpec(name="govdata", type="ckan", url=url, options={"rows": 2}))

    expected = {"unreachable": "source-unreachable", "malformed": "malformed-feed", "truncated": "malformed-feed",
                "not-ckan": "malformed-feed"}[breakage]
    assert (outcome.status, outcome.error_code, outcome.datasets) == ("failed", expected, [])
    assert versions(hub) == before
    with hub.sessions() as session:  # nothing withdrawn
        assert session.scalars(select(Dataset.private)).all() == [False] * 3


def test_a_package_without_id_is_reported_and_withdraws_nothing(hub: Hub, portal: Portal) -> None:
    harvest_catalogue(hub, spec(portal))
    del portal.packages[1]["id"]  # spielplaetze: no id, so it cannot be matched with ours

    outcome = harvest_catalogue(hub, spec(portal))

    assert {d.dataset: (d.status, d.error_code) for d in outcome.datasets} == {
        "baumkataster": ("skipped", None), "spielplaetze": ("failed", "malformed-feed"),
        "pegelstaende": ("skipped", None)}
    with hub.sessions() as session:
        assert session.scalars(select(Dataset.private)).all() == [False] * 3


def test_two_packages_with_one_local_name_harvest_only_the_first(hub: Hub, portal: Portal) -> None:
    twin = copy.deepcopy(portal.packages[0])
    twin.update(id="id-other-baumkataster", name="Baumkataster")  # the same name here once lower-cased
    portal.packages.append(twin)

    outcome = harvest_catalogue(hub, spec(portal))

    assert [(d.dataset, d.status, d.error_code) for d in outcome.datasets if d.dataset == "baumkataster"] == [
        ("baumkataster", "published", None), ("baumkataster", "failed", "invalid-definition")]
    assert versions(hub)["baumkataster"] == [(1, 2)]


def test_a_portal_inside_the_network_is_refused_unless_allow_listed(tmp_path: Path, portal: Portal) -> None:
    hub = open_hub(Settings(data_dir=tmp_path / "strict", harvest_allowed_hosts=[]))
    try:
        outcome = harvest_catalogue(hub, spec(portal))
    finally:
        hub.close()

    assert (outcome.status, outcome.error_code, outcome.datasets) == ("failed", "source-address-refused", [])
    assert "resolves to 127.0.0.1, a loopback address" in outcome.message
    assert portal.server.log == []


def test_an_oversized_listing_page_and_a_redirect_loop_fail_the_run(tmp_path: Path, portal: Portal) -> None:
    hub = open_hub(Settings(data_dir=tmp_path / "small", harvest_allowed_hosts=["127.0.0.1"], harvest_max_bytes=2000))
    try:
        oversized = harvest_catalogue(hub, spec(portal))
        portal.server.redirects["/api/3/action/package_search"] = "/api/3/action/package_search?again=1"
        looping = harvest_catalogue(hub, spec(portal))
        with hub.sessions() as session:
            assert session.scalars(select(Dataset.name)).all() == []
    finally:
        hub.close()

    assert (oversized.status, oversized.error_code, looping.status, looping.error_code) == (
        "failed", "feed-too-large", "failed", "too-many-redirects")


def test_outcomes_never_show_credentials_of_resource_urls(hub: Hub, portal: Portal) -> None:
    secret_url = portal.server.url.replace("http://", "http://harvester:geheim@") + "/data/missing.csv?apikey=abc123"
    portal.packages[0]["resources"][1]["url"] = secret_url

    outcome = harvest_catalogue(hub, spec(portal))

    failed = next(d for d in outcome.datasets if d.dataset == "baumkataster")
    assert failed.status == "failed"
    assert "geheim" not in failed.message and "abc123" not in failed.message
    assert "***@127.0.0.1" in failed.message and "apikey=***" in failed.message


def test_a_harvested_dataset_is_an_ordinary_source_of_the_runner(hub: Hub, portal: Portal) -> None:
    from harvesters.runner import harvest_source

    harvest_catalogue(hub, spec(portal))
    portal.server.files["/data/baeume.csv"] = ("text/csv", TREES_CSV + b"B3;Ahorn;2015;4.0\n")

    outcome = harvest_source(hub, "baumkataster")  # as `urbandata harvest baumkataster` or a schedule runs it

    assert (outcome.status, outcome.version) == ("published", 2)
    assert versions(hub)["baumkataster"] == [(1, 2), (2, 3)]
