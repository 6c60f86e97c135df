"""OGC API Features (Part 1 Core, GeoJSON), read with the real OWSLib client from the real server in a subprocess."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from owslib.ogcapi.features import Features

from api.app import create_app
from catalogue.hub import open_hub
from catalogue.settings import Settings

from tests.api.live_server import live_server
from tests.api.push_support import bearer, token
from tests.api.test_ckan_api import harvested_demo

PUBLIC = "http://hub.example"
COLLECTIONS = ["car-parks", "groundwater-levels", "parking-occupancy"]  # city-districts is made private
PRIVATE = "city-districts"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The harvested demo city, city-districts (of publisher stadtverwaltung) private."""
    return harvested_demo(tmp_path_factory.mktemp("ogc"), private=(PRIVATE,))


@pytest.fixture(scope="module")
def served(data_dir: Path) -> Iterator[str]:
    with live_server({"data_dir": str(data_dir), "public_url": "http://hub.example"},
                     data_dir.parent / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def features(served: str) -> Features:
    return Features(f"{served}/ogc")


def local(served: str, href: str) -> str:
    """A link of the hub (under its public URL) on the test server."""
    assert href.startswith(PUBLIC)
    return served + href.removeprefix(PUBLIC)


def test_landing_conformance_and_collections(features: Features) -> None:
    assert features.links == [
        {"href": f"{PUBLIC}/ogc", "rel": "self", "type": "application/json", "title": "This document"},
        {"href": f"{PUBLIC}/openapi.json", "rel": "service-desc", "type": "application/vnd.oai.openapi+json;version=3.0",
         "title": "The API description"},
        {"href": f"{PUBLIC}/ogc/conformance", "rel": "conformance", "type": "application/json",
         "title": "Conformance classes"},
        {"href": f"{PUBLIC}/ogc/collections", "rel": "data", "type": "application/json", "title": "Collections"}]
    assert features.conformance() == {"conformsTo": [
        "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
        "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
        "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
        "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
        "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
        "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
        "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
        "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
        "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
        "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions"]}
    # Only datasets with a geometry field are collections (not egovernment-services, nor waste bins with lon/lat).
    assert features.feature_collections() == COLLECTIONS
    car_parks = features.collection("car-parks")
    assert {k: v for k, v in car_parks.items() if k not in ("description", "links")} == {
        "id": "car-parks", "title": "Parkhäuser", "itemType": "feature",
        "keywords": ["Parken", "Parkhaus", "Verkehr", "Stellplätze", "Parkgebühren"],
        "crs": ["http://www.opengis.net/def/crs/OGC/1.3/CRS84"],
        "extent": {"spatial": {"bbox": [[9.9, 53.5, 10.1, 53.62]], "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"},
                   "temporal": {"interval": [["2026-11-01", None]],
                                "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"}}}
    assert [(link["rel"], link["type"]) for link in car_parks["links"]] == [
        ("self", "application/json"), ("items", "application/geo+json"),
        ("http://www.opengis.net/def/rel/ogc/1.0/queryables", "application/schema+json"), ("license", "text/html")]


def test_items_limit_and_next_links_walk_the_whole_collection(features: Features, served: str) -> None:
    page = features.collection_items("car-parks", limit=2)
    assert (page["type"], page["numberMatched"], page["numberReturned"]) == ("FeatureCollection", 6, 2)
    assert page["features"][0] == {
        "type": "Feature", "id": "P01", "geometry": {"type": "Point", "coordinates": [9.99712, 53.55324]},
        "properties": {"lot_id": "P01", "name": "Parkhaus Am Markt", "address": "Am Markt 5, Musterstadt",
                       "capacity": 420, "operator": "Stadtwerke Musterstadt GmbH", "open_24h": True,
                       "fee_per_hour_eur": 2.5}}
    seen = [f["id"] for f in page["features"]]
    while (following := [link for link in page["links"] if link["rel"] == "next"]):
        answer = httpx.get(local(served, following[0]["href"]))
        assert answer.headers["content-type"] == "application/geo+json"
        page = answer.json()
        seen += [f["id"] for f in page["features"]]
    assert seen == ["P01", "P02", "P03", "P04", "P05", "P06"]
    # A limit above the maximum is served as the maximum (Part 1, /req/core/fc-limit-response-1), not refused.
    assert features.collection_items("car-parks", limit=10**9)["numberReturned"] == 6


def test_items_bbox_datetime_and_property_filters(features: Features) -> None:
    near = features.collection_items("car-parks", bbox=[9.99, 53.55, 10.0, 53.56], limit=100)
    assert [f["id"] for f in near["features"]] == ["P01"]
    morning = features.collection_items("parking-occupancy", limit=100, lot_id="P02",
                                        datetime_="2026-11-20T08:00:00/2026-11-20T09:00:00")
    assert [f["properties"]["timestamp"] for f in morning["features"]] == [
        "2026-11-20T08:00:00", "2026-11-20T08:15:00", "2026-11-20T08:30:00", "2026-11-20T08:45:00",
        "2026-11-20T09:00:00"]
    assert morning["numberMatched"] == 5
    since = features.collection_items("parking-occupancy", limit=1, datetime_="2026-11-20T23:45:00/..")
    assert since["numberMatched"] == 6
    instant = features.collection_items("groundwater-levels", limit=100, datetime_="2026-11-03")
    assert {f["properties"]["date"] for f in instant["features"]} == {"2026-11-03"}
    assert instant["numberMatched"] == 5
    always_open = features.collection_items("car-parks", open_24h="true", limit=100)
    assert [f["id"] for f in always_open["features"]] == ["P01", "P02", "P03", "P06"]


def test_one_feature_by_id(features: Features) -> None:
    feature = features.collection_item("car-parks", "P02")
    assert (feature["id"], feature["properties"]["name"]) == ("P02", "Tiefgarage Schloßplatz")
    assert [link["rel"] for link in feature["links"]] == ["self", "collection"]
    composite = features.collection_item("parking-occupancy", "P01~2026-11-20T00:00:00")
    assert (composite["id"], composite["properties"]["occupied"]) == ("P01~2026-11-20T00:00:00", 25)


def test_refusals(served: str) -> None:
    def error(path: str, **params: str) -> tuple[int, str]:
        answer = httpx.get(f"{served}/ogc/{path}", params=params)
        return answer.status_code, answer.json()["error"]["code"]

    assert error("collections/egovernment-services") == (404, "not-found")
    assert error("collections/car-parks/items/P99") == (404, "not-found")
    assert error("collections/nope/items") == (404, "not-found")
    assert error("collections/car-parks/items", colour="red") == (400, "invalid-parameter")
    assert error("collections/car-parks/items", geometry="x") == (400, "invalid-parameter")
    assert error("collections/car-parks/items", bbox="1,2,3") == (400, "invalid-parameter")
    assert error("collections/car-parks/items", limit="0") == (400, "invalid-parameter")
    assert error("collections/car-parks/items", datetime="yesterday") == (400, "invalid-parameter")
    assert error("collections/parking-occupancy/items", datetime="2026-01-01/2026-01-02/x") == (400, "invalid-parameter")
    assert error("collections/car-parks/items", datetime="2026-01-01") == (400, "invalid-parameter")  # no time field
    # A private dataset is no collection, to an anonymous reader as to everyone.
    assert error("collections/city-districts") == (404, "not-found")
    assert error("collections/city-districts/items") == (404, "not-found")
    assert error("collections/city-districts/items/01") == (404, "not-found")
    assert error("collections/car-parks/items", **{"bbox-crs": "EPSG:25832"}) == (400, "invalid-parameter")
    assert error("conformance", f="html") == (400, "invalid-parameter")


def test_a_private_collection_is_shown_to_a_read_private_token_of_its_publisher(served: str, data_dir: Path) -> None:
    hub = open_hub(Settings(data_dir=data_dir))
    try:
        owner = token(hub, "stadtverwaltung", "read-private", name="ogc-owner")
        others = {"anonymous": None, "owner without read-private": token(hub, "stadtverwaltung", "push", name="ogc-push"),
                  "another publisher": token(hub, "stadtwerke", "read-private", name="ogc-other")}
    finally:
        hub.close()

    def get(path: str, plaintext: str | None, **params: str) -> httpx.Response:
        return httpx.get(f"{served}/ogc/{path}", params=params, headers=bearer(plaintext) if plaintext else {})

    def listed(plaintext: str | None) -> list[str]:
        return [c["id"] for c in get("collections", plaintext).json()["collections"]]

    items = get(f"collections/{PRIVATE}/items", owner, limit="1000")
    assert (items.status_code, items.headers["cache-control"]) == (200, "private, no-cache"), items.text
    features = items.json()["features"]
    assert len(features) == items.json()["numberMatched"] > 0
    first = features[0]
    paths = [f"collections/{PRIVATE}", f"collections/{PRIVATE}/queryables", f"collections/{PRIVATE}/items",
             f"collections/{PRIVATE}/items/{first['id']}"]
    assert listed(owner) == sorted([*COLLECTIONS, PRIVATE])
    assert [get(path, owner).status_code for path in paths] == [200] * len(paths)
    one = get(paths[-1], owner).json()
    assert {k: one[k] for k in ("id", "geometry", "properties")} == {k: first[k] for k in ("id", "geometry", "properties")}
    for who, plaintext in others.items():  # to anyone else, exactly a collection that does not exist
        assert listed(plaintext) == COLLECTIONS, who
        for path in paths:
            answer = get(path, plaintext)
            absent = get(path.replace(PRIVATE, "no-such-collection"), plaintext)
            assert (answer.status_code, answer.json()["error"]["code"]) == (404, "not-found"), (who, path)
            assert answer.json()["error"]["message"].replace(PRIVATE, "X") == absent.json()["error"][
                "message"].replace("no-such-collection", "X"), (who, path)


def test_queryables(features: Features) -> None:
    found = features.collection_queryables("parking-occupancy")
    properties = found.pop("properties")
    assert found == {"$schema": "https://json-schema.org/draft/2020-12/schema",
                     "$id": f"{PUBLIC}/ogc/collections/parking-occupancy/queryables", "type": "object",
                     "title": "Parkhausbelegung", "additionalProperties": False}
    assert [(n, p.get("type"), p.get("format")) for n, p in properties.items()] == [
        ("lot_id", "string", None), ("timestamp", "string", "date-time"), ("occupied", "integer", None),
        ("free", "integer", None), ("capacity", "integer", None), ("location", None, "geometry-point")]
    assert all(p["title"] for p in properties.values())


@pytest.mark.parametrize(("cql", "expected"), [
    ("capacity > 400", ["P01", "P03", "P06"]),
    ("capacity >= 400 AND open_24h = true", ["P01", "P03", "P06"]),
    ("NOT (open_24h = TRUE) OR lot_id = 'P01'", ["P01", "P04", "P05"]),
    ('"lot_id" <> \'P01\' AND 500 <= capacity', ["P03", "P06"]),
    ("name LIKE 'Park%'", ["P01", "P03", "P04", "P05"]),
    ("name NOT LIKE 'Parkhaus%' AND lot_id NOT IN ('P02')", ["P05", "P06"]),
    ("lot_id IN ('P02', 'P05')", ["P02", "P05"]),
    ("capacity BETWEEN 300 AND 420", ["P01", "P02", "P04"]),
    ("capacity NOT BETWEEN 300 AND 650", ["P05"]),
    ("address IS NULL", []),
    ("address IS NOT NULL AND fee_per_hour_eur < 1.5", ["P06"]),
    ("S_INTERSECTS(geometry, BBOX(9.99, 53.55, 10.0, 53.56))", ["P01"]),
    ("S_INTERSECTS(geometry, POINT(9.99712 53.55324))", ["P01"]),
    ("S_INTERSECTS(geometry, POLYGON((9.9 53.5, 10.0 53.5, 10.0 53.552, 9.9 53.552, 9.9 53.5)))", ["P03"]),
])
def test_cql2_text_filters(features: Features, cql: str, expected: list[str]) -> None:
    found = features.collection_items("car-parks", filter=cql, limit=100)
    assert [f["id"] for f in found["features"]] == expected


def test_cql2_dates_and_refusals(features: Features, served: str) -> None:
    found = features.collection_items("groundwater-levels", limit=100,
                                      filter="date = DATE('2026-11-03') AND gauge_id = 'GW-101'")
    assert [f["id"] for f in found["features"]] == ["GW-101~2026-11-03"]
    later = features.collection_items("parking-occupancy", limit=1,
                                      filter="timestamp >= TIMESTAMP('2026-11-20T23:45:00') AND lot_id = 'P01'")
    assert later["numberMatched"] == 1

    def refused(**params: str) -> str:
        answer = httpx.get(f"{served}/ogc/collections/car-parks/items", params=params)
        assert answer.status_code == 400, answer.text
        return str(answer.json()["error"]["message"])

    assert "'colour' is no property" in refused(filter="colour = 'red'")
    assert "T_AFTER() is not supported" in refused(filter="T_AFTER(capacity, 3)")
    assert "arithmetic" in refused(filter="capacity + 1 > 3")
    assert refused(filter="capacity >")
    assert refused(filter="capacity ; drop")
    assert "cql2-text" in refused(filter="capacity > 1", **{"filter-lang": "cql2-json"})
    assert "no geometry property" in refused(filter="S_INTERSECTS(capacity, BBOX(0, 0, 1, 1))")


@pytest.mark.anyio
async def test_a_collection_without_key_numbers_its_features_and_pages_by_offset(make_catalogue: Any) -> None:
    points = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [10 + i / 100, 53.5]},
         "properties": {"label": f"Punkt {i}"}} for i in range(7)]}
    schema = {"fields": [{"name": "label", "type": "string"}, {"name": "geometry", "type": "geojson"}]}
    hub = make_catalogue("punkte", schema, json.dumps(points).encode(), "geojson", max_offset_rows=5)
    app = create_app(hub.settings, hub)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as client:
            pages, url = [], "/ogc/collections/punkte/items?limit=2"
            while url:
                page = (await client.get(url)).json()
                pages.append([(f["id"], f["properties"]["label"]) for f in page["features"]])
                following = [link["href"] for link in page["links"] if link["rel"] == "next"]
                url = following[0].removeprefix(hub.settings.public_url) if following else ""
            # Offsets 0, 2, then a page shortened to end at the offset wall (5); no cursor past it.
            assert pages == [[(1, "Punkt 0"), (2, "Punkt 1")], [(3, "Punkt 2"), (4, "Punkt 3")], [(5, "Punkt 4")]]
            third = (await client.get("/ogc/collections/punkte/items/3")).json()
            assert (third["id"], third["properties"]) == (3, {"label": "Punkt 2"})
            assert (await client.get("/ogc/collections/punkte/items/0")).status_code == 404
            refused = await client.get("/ogc/collections/punkte/items", params={"cursor": "x"})
            assert (refused.status_code, refused.json()["error"]["details"]) == (400, {"parameter": "cursor"})
            assert "no key" in refused.json()["error"]["message"]
    finally:
        app.state.query_engine.close()
        app.state.sql_pool.close()
