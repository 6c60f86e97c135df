"""DCAT-AP.de 3.0: the catalogue and each dataset in Turtle, JSON-LD and RDF/XML, validated with pyshacl
against the official shapes (DCAT-AP 3.0.0 and DCAT-AP.de 3.0, copied to tests/data/shapes) plus the
vocabulary subset the hub ships."""

from __future__ import annotations

from pathlib import Path

import httpx
import pyshacl
import pytest
from rdflib import Graph, Literal, URIRef
from rdflib.compare import isomorphic
from rdflib.namespace import DCTERMS, RDF, SH

from catalogue.meta.dcat import DCAT, HYDRA, vocabulary_graph

pytestmark = pytest.mark.anyio

SHAPES = Path(__file__).parents[1] / "data" / "shapes"
BASE = "http://127.0.0.1:8000"
DEMO = ["car-parks", "city-districts", "egovernment-services", "groundwater-levels", "parking-occupancy",
        "waste-bin-fill-levels"]
SYNTAXES = {"ttl": ("text/turtle", "turtle"), "jsonld": ("application/ld+json", "json-ld"),
            "rdf": ("application/rdf+xml", "xml")}


@pytest.fixture(scope="module")
def shapes() -> Graph:
    graph = Graph()
    for path in sorted(SHAPES.glob("*.ttl")):
        graph.parse(path, format="turtle")
    assert len(graph) > 1000  # the official files, not an empty folder
    return graph


def violations(data: Graph, shapes: Graph, severity: URIRef = SH.Violation) -> list[str]:
    """Every sh:Violation (or ``severity``) of ``data`` (with the shipped vocabulary triples) against the shapes."""
    _, report, _ = pyshacl.validate(data + vocabulary_graph(), shacl_graph=shapes, inference="none")
    return sorted(f"{report.value(r, SH.focusNode)} {report.value(r, SH.resultPath)}: {report.value(r, SH.resultMessage)}"
                  for r in report.subjects(RDF.type, SH.ValidationResult)
                  if report.value(r, SH.resultSeverity) == severity)


async def fetched(api: httpx.AsyncClient, path: str, syntax: str = "turtle", **headers: str) -> Graph:
    response = await api.get(path, headers=headers)
    assert response.status_code == 200, response.text
    return Graph().parse(data=response.content, format=syntax)


async def test_the_catalogue_conforms_with_zero_violations(api: httpx.AsyncClient, shapes: Graph) -> None:
    graph = await fetched(api, "/catalog.ttl")
    assert violations(graph, shapes) == []
    catalog = URIRef(f"{BASE}/catalog")
    assert sorted(str(d) for d in graph.objects(catalog, DCAT.dataset)) == [f"{BASE}/api/v1/datasets/{n}" for n in DEMO]


async def test_the_official_shapes_do_catch_labels_outside_the_vocabularies(api: httpx.AsyncClient,
                                                                            shapes: Graph) -> None:
    graph = await fetched(api, "/catalog.ttl")
    assert violations(graph, shapes, SH.Warning) == []
    dist = URIRef(f"{BASE}/api/v1/datasets/car-parks/versions/1/distributions/csv")
    graph.set((dist, DCTERMS.format, URIRef("http://example.org/formats/csv")))
    graph.set((dist, DCTERMS.license, URIRef("http://example.org/my-own-licence")))
    found, warned = violations(graph, shapes), violations(graph, shapes, SH.Warning)
    assert len(found) == 1 and "dcterms:format MUSS" in found[0] and "example.org/formats/csv" in found[0]
    assert len(warned) == 1 and "dcterms:license SOLL" in warned[0] and "my-own-licence" in warned[0]


async def test_every_dataset_has_publisher_contact_and_every_distribution_a_licence(api: httpx.AsyncClient) -> None:
    graph = await fetched(api, "/catalog.ttl")
    datasets = set(graph.subjects(RDF.type, DCAT.Dataset))
    assert len(datasets) >= 2 * len(DEMO)  # each dataset and at least one version of it
    for node in datasets:
        assert graph.value(node, DCTERMS.publisher) is not None, node
        assert graph.value(node, DCAT.contactPoint) is not None, node
        assert graph.value(node, DCTERMS.language) == URIRef("http://publications.europa.eu/resource/authority/language/DEU")
    for dist in graph.subjects(RDF.type, DCAT.Distribution):
        assert str(graph.value(dist, DCTERMS.license)).startswith("http://dcat-ap.de/def/licenses/"), dist
        assert str(graph.value(dist, DCTERMS.format)).startswith(
            "http://publications.europa.eu/resource/authority/file-type/"), dist
    car_parks = URIRef(f"{BASE}/api/v1/datasets/car-parks")
    assert list(graph.objects(car_parks, DCAT.theme)) == [
        URIRef("http://publications.europa.eu/resource/authority/data-theme/TRAN")]
    assert graph.value(car_parks, DCTERMS.accrualPeriodicity) == URIRef(
        "http://publications.europa.eu/resource/authority/frequency/IRREG")
    assert list(graph.objects(car_parks, DCAT.hasVersion)) == [URIRef(f"{car_parks}/versions/1")]
    assert graph.value(URIRef(f"{car_parks}/versions/1"), DCAT.version) == Literal("1")


async def test_the_catalogue_is_published_by_the_configured_publisher(demo_hub) -> None:
    from catalogue.meta.dcat import catalog_publisher

    with demo_hub.sessions() as session:
        default = catalog_publisher(session, demo_hub.settings)
        named = catalog_publisher(session, demo_hub.settings.model_copy(update={"dcat_catalog_publisher": "stadtwerke"}))
        unknown = catalog_publisher(session, demo_hub.settings.model_copy(update={"dcat_catalog_publisher": "nobody"}))
        found = (default.name, named.name, unknown.name)
    assert found == ("stadtverwaltung", "stadtwerke", "abfallwirtschaft")  # unknown: the first by name


@pytest.mark.parametrize("extension", ["jsonld", "rdf"])
async def test_the_three_syntaxes_hold_the_same_graph(api: httpx.AsyncClient, extension: str) -> None:
    media_type, syntax = SYNTAXES[extension]
    response = await api.get(f"/catalog.{extension}")
    assert response.headers["content-type"].startswith(media_type)
    turtle = await fetched(api, "/catalog.ttl")
    other = Graph().parse(data=response.content, format=syntax)
    for graph in (turtle, other):  # the paging view is named for the document's own URL
        for view in [s for s in graph.subjects(RDF.type, HYDRA.PartialCollectionView)]:
            graph.remove((view, None, None))
    assert len(turtle) > 500 and isomorphic(other, turtle)  # the hand-written Turtle says what rdflib's writers do


@pytest.mark.parametrize("extension", ["ttl", "jsonld", "rdf"])
async def test_a_dataset_by_extension_and_by_content_negotiation(api: httpx.AsyncClient, shapes: Graph,
                                                                  extension: str) -> None:
    media_type, syntax = SYNTAXES[extension]
    by_extension = await fetched(api, f"/api/v1/datasets/parking-occupancy.{extension}", syntax)
    negotiated = await api.get("/api/v1/datasets/parking-occupancy", headers={"Accept": f"{media_type}, */*;q=0.1"})
    assert negotiated.headers["content-type"].startswith(media_type)
    assert negotiated.headers["vary"] == "Accept, Authorization"
    assert len(Graph().parse(data=negotiated.content, format=syntax)) == len(by_extension)
    assert violations(by_extension, shapes) == []


async def test_the_dataset_url_answers_json_by_default(api: httpx.AsyncClient) -> None:
    for accept in ("application/json", "text/html,application/xhtml+xml,*/*;q=0.8", "*/*"):
        response = await api.get("/api/v1/datasets/car-parks", headers={"Accept": accept})
        assert (response.headers["content-type"], response.json()["name"]) == ("application/json", "car-parks")
        assert response.headers["vary"] == "Accept, Authorization"


async def test_unknown_dataset_and_extension(api: httpx.AsyncClient) -> None:
    missing = await api.get("/api/v1/datasets/no-such-dataset.ttl")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "dataset-not-found")
    wrong = await api.get("/catalog.n3")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (400, "invalid-parameter")


async def test_hydra_pages_the_catalogue(demo_hub) -> None:
    from api.app import create_app
    from catalogue.hub import open_hub

    hub = open_hub(demo_hub.settings.model_copy(update={"dcat_page_size": 4}))
    app = create_app(hub.settings, hub)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as c:
            first = Graph().parse(data=(await c.get("/catalog.ttl")).content, format="turtle")
            second = Graph().parse(data=(await c.get("/catalog.ttl?page=2")).content, format="turtle")
            past = await c.get("/catalog.ttl?page=3")
    finally:
        app.state.query_engine.close()
        app.state.sql_pool.close()
        hub.close()
    view1, view2 = URIRef(f"{BASE}/catalog.ttl?page=1"), URIRef(f"{BASE}/catalog.ttl?page=2")
    assert (first.value(view1, HYDRA.next), first.value(view1, HYDRA.previous)) == (view2, None)
    assert (second.value(view2, HYDRA.next), second.value(view2, HYDRA.previous)) == (None, view1)
    assert second.value(view2, HYDRA.totalItems).toPython() == 6
    assert len(list(first.objects(URIRef(f"{BASE}/catalog"), DCAT.dataset))) == 4
    assert len(list(second.objects(URIRef(f"{BASE}/catalog"), DCAT.dataset))) == 2
    assert past.status_code == 404


async def test_private_datasets_never_appear(make_catalogue) -> None:
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from api.app import create_app
    from catalogue.meta.models import Dataset

    schema = {"fields": [{"name": "id", "type": "integer"}]}
    make_catalogue("open-one", schema, b"id\n1\n")
    hub = make_catalogue("hidden-one", schema, b"id\n2\n")
    with Session(hub.engine) as session, session.begin():
        session.execute(update(Dataset).where(Dataset.name == "hidden-one").values(private=True))
    app = create_app(hub.settings, hub)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as c:
            catalogue = await c.get("/catalog.ttl")
            one = await c.get("/api/v1/datasets/hidden-one.ttl")
            negotiated = await c.get("/api/v1/datasets/hidden-one", headers={"Accept": "text/turtle"})
    finally:
        app.state.query_engine.close()
        app.state.sql_pool.close()
    graph = Graph().parse(data=catalogue.content, format="turtle")
    assert [str(d) for d in graph.objects(URIRef(f"{BASE}/catalog"), DCAT.dataset)] == [f"{BASE}/api/v1/datasets/open-one"]
    assert "hidden-one" not in catalogue.text
    assert (one.status_code, negotiated.status_code) == (404, 404)


async def test_a_harvester_holding_the_document_gets_a_304(api: httpx.AsyncClient) -> None:
    first = await api.get("/catalog.ttl")
    again = await api.get("/catalog.ttl", headers={"If-None-Match": first.headers["etag"]})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", first.headers["etag"])
    other = await api.get("/api/v1/datasets/car-parks.jsonld", headers={"If-None-Match": first.headers["etag"]})
    assert other.status_code == 200 and other.headers["etag"] != first.headers["etag"]
