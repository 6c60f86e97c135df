"""DCAT catalogue harvests against a real local server serving DCAT-AP.de documents (fixtures/dcat_*).

The fixtures name https://daten.musterstadt.example; the server answers with its own base URL in
its place, so every dataset URI, distribution and Hydra link leads back to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from catalogue.hub import Hub
from catalogue.meta.models import Dataset, HarvestJob
from harvesters.catalogue_sources import CatalogueSpec, harvest_catalogue
from tests.harvesters.catalogue_server import (
    GAUGES, PLAYGROUNDS, TREES_CSV, CatalogueServer, catalogue_server, harvesting_hub, refusing_port, statuses,
    versions,
)

FIXTURES = Path(__file__).parent / "fixtures"
ORIGIN = "https://daten.musterstadt.example"
KINDS = {"ttl": "text/turtle", "rdf": "application/rdf+xml", "jsonld": "application/ld+json"}


class Catalogue:
    """The DCAT endpoint's state: its documents (fixture text, changeable) and the data files."""

    def __init__(self, server: CatalogueServer) -> None:
        self.server = server
        self.pages = {"1": (FIXTURES / "dcat_page1.ttl").read_text(encoding="utf-8"),
                      "2": (FIXTURES / "dcat_page2.ttl").read_text(encoding="utf-8")}
        server.routes["/catalog.ttl"] = lambda q: self.answer(self.pages[q.get("page", ["1"])[0]], "ttl")
        for name in ("dcat_catalog.rdf", "dcat_catalog.jsonld", "billion_laughs.rdf"):
            kind = name.rsplit(".", 1)[1]
            text = (FIXTURES / name).read_text(encoding="utf-8")
            server.routes["/" + name] = lambda q, text=text, kind=kind: self.answer(text, kind)
        server.files["/data/baeume.csv"] = ("text/csv", TREES_CSV)
        server.files["/data/spielplaetze.geojson"] = ("application/geo+json", json.dumps(PLAYGROUNDS).encode())
        server.files["/data/pegel.json"] = ("application/json", json.dumps(GAUGES).encode())

    def answer(self, text: str, kind: str) -> tuple[int, str, bytes]:
        return 200, KINDS[kind], text.replace(ORIGIN, self.server.url).encode()

    def serve(self, path: str, text: str, kind: str) -> None:
        self.server.routes[path] = lambda q: self.answer(text, kind)

    def data_requests(self) -> list[str]:
        return [p for p in self.server.paths() if p.startswith("/data/")]


@pytest.fixture
def endpoint() -> Iterator[Catalogue]:
    with catalogue_server() as server:
        yield Catalogue(server)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    with harvesting_hub(tmp_path) as hub:
        yield hub


def spec(endpoint: Catalogue, path: str = "/catalog.ttl?page=1", **options: Any) -> CatalogueSpec:
    return CatalogueSpec(name="musterstadt-dcat", type="dcat", url=endpoint.server.url + path, options=options)


def metadata(hub: Hub, name: str) -> tuple[Any, ...]:
    with hub.sessions() as session:
        ds = session.scalar(select(Dataset).where(Dataset.name == name))
        return ds.title, ds.description, ds.keywords, ds.license, ds.publisher.name, ds.publisher.title


def test_turtle_catalogue_over_two_hydra_pages(hub: Hub, endpoint: Catalogue) -> None:
    outcome = harvest_catalogue(hub, spec(endpoint))

    assert (outcome.status, statuses(outcome)) == ("finished", {
        "baumkataster": "published", "spielplaetze": "published", "pegelstaende": "published"})
    assert [e for e in endpoint.server.log if e.startswith("/catalog")] == ["/catalog.ttl?page=1",
                                                                            "/catalog.ttl?page=2"]
    assert versions(hub) == {"baumkataster": [(1, 2)], "pegelstaende": [(1, 2)], "spielplaetze": [(1, 2)]}
    assert metadata(hub, "baumkataster") == (
        "Baumkataster", "Alle Straßenbäume der Stadt mit Art, Pflanzjahr und Höhe.", ["Bäume", "Umwelt"],
        "http://dcat-ap.de/def/licenses/dl-by-de/2.0", "stadt-musterstadt", "Stadt Musterstadt")
    with hub.sessions() as session:
        trees = session.scalar(select(Dataset).where(Dataset.name == "baumkataster"))
        assert (trees.themes, trees.contact) == (["ENVI"], {"name": "Open-Data-Team",
                                                           "email": "opendata@musterstadt.example"})
    assert metadata(hub, "spielplaetze")[3] == "http://dcat-ap.de/def/licenses/cc-by/4.0"
    assert metadata(hub, "pegelstaende")[3:] == ("http://dcat-ap.de/def/licenses/dl-zero-de/2.0",
                                                 "wasserverband-musterstadt", "Wasserverband Musterstadt")
    assert "/data/baeume.pdf" not in endpoint.data_requests()  # the CSV distribution was chosen


def test_hydra_next_of_the_current_vocabulary_is_followed(hub: Hub, endpoint: Catalogue) -> None:
    endpoint.pages["1"] = endpoint.pages["1"].replace("hydra:nextPage", "hydra:next")

    outcome = harvest_catalogue(hub, spec(endpoint))

    assert set(statuses(outcome)) == {"baumkataster", "spielplaetze", "pegelstaende"}
    assert "/catalog.ttl?page=2" in endpoint.server.log


def test_versions_are_not_datasets_and_an_iri_identifier_names_by_its_last_segment(hub: Hub,
                                                                                   endpoint: Catalogue) -> None:
    # DCAT 3 types a version as dcat:Dataset too (the hub's own /catalog.ttl does); DCAT-AP.de
    # catalogues often give the dataset's IRI as its dct:identifier (the hub's own does).
    trees = f"{ORIGIN}/dataset/baumkataster"
    versions_ttl = "".join(
        f'<{trees}/versions/{n}> a dcat:Dataset ; dct:title "Baumkataster (Version {n})"@de ;{link} '
        f"dcat:distribution <{trees}/csv> .\n" for n, link in ((1, f" dcat:isVersionOf <{trees}> ;"), (2, "")))
    endpoint.pages["1"] = endpoint.pages["1"].replace(
        'dct:identifier "baumkataster" ;', f'dct:identifier "{trees}" ; dcat:hasVersion <{trees}/versions/2> ;'
    ) + versions_ttl

    outcome = harvest_catalogue(hub, spec(endpoint))

    assert (outcome.status, statuses(outcome)) == ("finished", {
        "baumkataster": "published", "spielplaetze": "published", "pegelstaende": "published"})
    assert sorted(versions(hub)) == ["baumkataster", "pegelstaende", "spielplaetze"]


@pytest.mark.parametrize("path", ["/dcat_catalog.rdf", "/dcat_catalog.jsonld"])
def test_rdf_xml_and_json_ld_catalogues(hub: Hub, endpoint: Catalogue, path: str) -> None:
    outcome = harvest_catalogue(hub, spec(endpoint, path))

    assert statuses(outcome) == {"baumkataster": "published"}
    assert metadata(hub, "baumkataster") == (
        "Baumkataster", "Alle Straßenbäume der Stadt mit Art, Pflanzjahr und Höhe.", ["Bäume", "Umwelt"],
        "http://dcat-ap.de/def/licenses/dl-by-de/2.0", "stadt-musterstadt", "Stadt Musterstadt")
    assert versions(hub) == {"baumkataster": [(1, 2)]}


def test_unchanged_rerun_fetches_no_data(hub: Hub, endpoint: Catalogue) -> None:
    harvest_catalogue(hub, spec(endpoint))
    before, endpoint.server.log[:] = versions(hub), []

    outcome = harvest_catalogue(hub, spec(endpoint))

    assert set(statuses(outcome).values()) == {"skipped"}
    assert endpoint.data_requests() == []
    assert versions(hub) == before


def test_changed_dataset_alone_is_fetched(hub: Hub, endpoint: Catalogue) -> None:
    harvest_catalogue(hub, spec(endpoint))
    endpoint.server.log[:] = []
    endpoint.pages["2"] = endpoint.pages["2"].replace("2026-11-01T06:00:00", "2026-12-01T06:00:00")
    endpoint.server.files["/data/pegel.json"] = ("application/json", json.dumps(GAUGES[:1]).encode())

    outcome = harvest_catalogue(hub, spec(endpoint))

    assert statuses(outcome) == {"baumkataster": "skipped", "spielplaetze": "skipped", "pegelstaende": "published"}
    assert endpoint.data_requests() == ["/data/pegel.json"]
    assert versions(hub)["pegelstaende"] == [(1, 2), (2, 1)]


def test_dataset_gone_from_the_catalogue_is_withdrawn(hub: Hub, endpoint: Catalogue) -> None:
    harvest_catalogue(hub, spec(endpoint))
    start = endpoint.pages["2"].index("<https://daten.musterstadt.example/dataset/pegelstaende> a dcat:Dataset")
    endpoint.pages["2"] = endpoint.pages["2"][:start]

    outcome = harvest_catalogue(hub, spec(endpoint))

    assert statuses(outcome)["pegelstaende"] == "withdrawn"
    with hub.sessions() as session:
        dataset = session.scalar(select(Dataset).where(Dataset.name == "pegelstaende"))
        statuses_of_jobs = session.scalars(select(HarvestJob.status).where(HarvestJob.dataset_id == dataset.id)
                                           .order_by(HarvestJob.id)).all()
        assert (dataset.private, statuses_of_jobs) == (True, ["published", "withdrawn"])
    assert versions(hub)["pegelstaende"] == [(1, 2)]


def test_one_bad_dataset_does_not_stop_the_others(hub: Hub, endpoint: Catalogue) -> None:
    del endpoint.server.files["/data/spielplaetze.geojson"]

    outcome = harvest_catalogue(hub, spec(endpoint))

    assert {d.dataset: (d.status, d.error_code) for d in outcome.datasets} == {
        "baumkataster": ("published", None), "spielplaetze": ("failed", "source-unreachable"),
        "pegelstaende": ("published", None)}


XXE = """<?xml version="1.0"?>
<!DOCTYPE rdf:RDF [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:dct="http://purl.org/dc/terms/">
  <rdf:Description rdf:about="https://daten.musterstadt.example/x"><dct:title>&xxe;</dct:title></rdf:Description>
</rdf:RDF>"""
REMOTE_CONTEXT = '{"@context": "https://daten.musterstadt.example/context.jsonld", "@id": "x", "dct:title": "y"}'
LOOP = """@prefix hydra: <http://www.w3.org/ns/hydra/core#> .
<https://daten.musterstadt.example/catalog.ttl?page=2> hydra:next <https://daten.musterstadt.example/catalog.ttl?page=1> .
"""


@pytest.mark.parametrize("breakage", ["entity-bomb", "external-entity", "remote-context", "malformed-turtle",
                                      "truncated", "unreachable", "paging-loop"])
def test_broken_catalogue_fails_the_run_and_changes_nothing(hub: Hub, endpoint: Catalogue, breakage: str) -> None:
    harvest_catalogue(hub, spec(endpoint))
    before = versions(hub)
    path = {"entity-bomb": "/billion_laughs.rdf", "external-entity": "/xxe.rdf",
            "remote-context": "/remote.jsonld"}.get(breakage, "/catalog.ttl?page=1")
    endpoint.serve("/xxe.rdf", XXE, "rdf")
    endpoint.serve("/remote.jsonld", REMOTE_CONTEXT, "jsonld")
    if breakage == "malformed-turtle":
        endpoint.pages["2"] = endpoint.pages["2"].replace(" ;\n", " ;;; <\n", 1)
    elif breakage == "truncated":
        endpoint.server.truncated.add("/catalog.ttl")
    elif breakage == "paging-loop":
        endpoint.pages["2"] += LOOP
    with refusing_port() as port:
        catalogue = spec(endpoint, path)
        if breakage == "unreachable":
            catalogue = CatalogueSpec(name=catalogue.name, type="dcat", url=f"http://127.0.0.1:{port}/catalog.ttl")
        outcome = harvest_catalogue(hub, catalogue)

    assert (outcome.status, outcome.datasets) == ("failed", [])
    assert outcome.error_code == ("source-unreachable" if breakage == "unreachable" else "malformed-feed")
    expected_words = {"entity-bomb": "declares a DTD or entities (DTDForbidden)",
                      "external-entity": "declares a DTD or entities (DTDForbidden)",
                      "remote-context": "names the remote JSON-LD context", "malformed-turtle": "is not valid turtle",
                      "truncated": "broke off its answer", "unreachable": "cannot be reached",
                      "paging-loop": "Hydra paging returns to"}[breakage]
    assert expected_words in outcome.message
    assert versions(hub) == before
    with hub.sessions() as session:
        assert session.scalars(select(Dataset.private)).all() == [False] * 3
