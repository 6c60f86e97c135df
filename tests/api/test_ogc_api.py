"""OGC API Features (Part 1 Core, GeoJSON), read with the real OWSLib client from the real server in a subprocess."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from owslib.ogcapi.features import Features

from tests.api.live_server import live_server
from tests.api.test_ckan_api import harvested_demo

PUBLIC = "http://hub.example"
COLLECTIONS = ["car-parks", "groundwater-levels", "parking-occupancy"]  # city-districts is made private


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("ogc")
    data_dir = harvested_demo(root, private=("city-districts",))
    with live_server({"data_dir": str(data_dir), "public_url": "http://hub.example"}, root / "server.log") as url:
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
        "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson"]}
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
        ("self", "application/json"), ("items", "application/geo+json"), ("license", "text/html")]


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
