"""The HTTP API in process over the harvested demo city: whole bodies, read-back exports, one error envelope."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import struct
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
import yaml

from api.app import create_app
from api.feed_server import FeedServer
from catalogue.query.exports import format_names
from catalogue.hub import Hub
from catalogue.query.packages import readable_descriptor
from catalogue.registry import load_registry
from harvesters.runner import harvest_source

pytestmark = pytest.mark.anyio

API = "/api/v1"
ROWS = {"car-parks": 6, "city-districts": 6, "egovernment-services": 16, "groundwater-levels": 150,
        "parking-occupancy": 576, "waste-bin-fill-levels": 40}
DCAT = "http://dcat-ap.de/def/licenses/"
LICENCES = {  # IRI -> short name, title, human-readable URL
    f"{DCAT}dl-by-de/2.0": ("dl-de/by-2-0", "Datenlizenz Deutschland – Namensnennung – Version 2.0",
                            "https://www.govdata.de/dl-de/by-2-0"),
    f"{DCAT}dl-zero-de/2.0": ("dl-de/zero-2-0", "Datenlizenz Deutschland – Zero – Version 2.0",
                              "https://www.govdata.de/dl-de/zero-2-0"),
    f"{DCAT}cc-by/4.0": ("CC-BY-4.0", "Creative Commons Namensnennung – 4.0 International (CC BY 4.0)",
                         "https://creativecommons.org/licenses/by/4.0/"),
}
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00")
SHA = re.compile(r"[0-9a-f]{64}")
GEOMETRY = ("geojson", "geopoint")
IMMUTABLE = "public, max-age=31536000, immutable"


def scrub(value: Any) -> Any:
    """``value`` with every ISO 8601 UTC timestamp replaced by "<ts>" (the shape is the assertion)."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return "<ts>" if isinstance(value, str) and STAMP.fullmatch(value) else value


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error object after checking the status and that the body is exactly the envelope."""
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    assert set(body["error"]) in ({"code", "status", "message"}, {"code", "status", "message", "details"})
    assert body["error"]["status"] == status
    return body["error"]


def expected_dataset(definitions: Path, name: str) -> dict[str, Any]:
    """The API's view of a dataset, built from its definition files alone."""
    doc = yaml.safe_load((definitions / "definitions" / f"{name}.yaml").read_text(encoding="utf-8"))
    publishers = yaml.safe_load((definitions / "publishers.yaml").read_text(encoding="utf-8"))["publishers"]
    publisher = next(p for p in publishers if p["name"] == doc["publisher"])
    schema = json.loads((definitions / doc["schema"]).read_text(encoding="utf-8"))
    short, title, url = LICENCES[doc["license"]]
    return {
        "name": name, "title": doc["title"], "title_en": doc["title_en"], "description": doc["description"].strip(),
        "description_en": doc["description_en"].strip(), "keywords": doc["keywords"], "themes": doc["themes"],
        "license": {"iri": doc["license"], "short": short, "title": title, "url": url},
        "publisher": {"name": doc["publisher"], "title": publisher["title"]},
        "contact": doc["contact"], "update_frequency": doc["update_frequency"], "spatial": doc["spatial"],
        "temporal": doc["temporal"], "schema": schema, "primary_key": schema["primaryKey"],
        "geometry_fields": [f["name"] for f in schema["fields"] if f["type"] in GEOMETRY],
        "current_version": 1, "row_count": ROWS[name], "modified_at": "<ts>",
    }


def from_wkb(data: bytes) -> dict[str, Any]:
    """GeoJSON of a WKB point or polygon."""
    order = "<" if data[0] == 1 else ">"
    (kind,) = struct.unpack_from(order + "I", data, 1)
    if kind == 1:
        return {"type": "Point", "coordinates": list(struct.unpack_from(order + "2d", data, 5))}
    assert kind == 3, f"unexpected WKB geometry type {kind}"
    (count,), offset, rings = struct.unpack_from(order + "I", data, 5), 9, []
    for _ in range(count):
        (n,) = struct.unpack_from(order + "I", data, offset)
        flat = struct.unpack_from(order + f"{2 * n}d", data, offset + 4)
        rings.append([list(flat[i:i + 2]) for i in range(0, 2 * n, 2)])
        offset += 4 + 16 * n
    return {"type": "Polygon", "coordinates": rings}


def from_wkt(text: str) -> dict[str, Any]:
    """GeoJSON of a WKT point or polygon."""
    kind, _, rest = text.partition(" ")
    if kind == "POINT":
        return {"type": "Point", "coordinates": [float(v) for v in rest.strip("()").split()]}
    assert kind == "POLYGON", text
    rings = re.findall(r"\(([^()]+)\)", rest)
    return {"type": "Polygon", "coordinates": [[[float(v) for v in p.split()] for p in r.split(",")] for r in rings]}


CSV_TYPES = {"integer": int, "number": float, "boolean": {"true": True, "false": False}.__getitem__,
             "geojson": from_wkt, "geopoint": from_wkt}


def from_parquet(value: Any) -> Any:
    if isinstance(value, bytes):
        return from_wkb(value)
    if hasattr(value, "hour"):
        return value.strftime("%Y-%m-%dT%H:%M:%S")
    return value.isoformat() if hasattr(value, "isoformat") else value


async def all_records(client: httpx.AsyncClient, name: str, version: int | None = None) -> list[dict[str, Any]]:
    query = f"&version={version}" if version else ""
    response = await client.get(f"{API}/datasets/{name}/records?limit=1000{query}")
    assert response.status_code == 200 and response.json()["links"] == {}
    return response.json()["results"]


def read_export(fmt: str, content: bytes, schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of an export, read with the format's own reader and typed as the records API types them."""
    if fmt == "json":
        return json.loads(content)
    if fmt == "ndjson":
        return [json.loads(line) for line in content.decode().splitlines()]
    if fmt == "geojson":
        collection = json.loads(content)
        assert collection["type"] == "FeatureCollection"
        geom = next(f["name"] for f in schema["fields"] if f["type"] in GEOMETRY)
        return [{**f["properties"], geom: f["geometry"]} for f in collection["features"] if f["type"] == "Feature"]
    if fmt == "csv":
        kinds = {f["name"]: f["type"] for f in schema["fields"]}
        reader = csv.DictReader(io.StringIO(content.decode("utf-8")))
        assert reader.fieldnames == list(kinds)
        return [{k: CSV_TYPES.get(kinds[k], str)(v) if v else None for k, v in row.items()} for row in reader]
    table = pq.read_table(io.BytesIO(content))
    return [{k: from_parquet(v) for k, v in row.items()} for row in table.to_pylist()]


def publish_second_car_parks_version(hub: Hub, feed_dir: Path) -> None:
    """Change one car park's capacity in the served feed and harvest again: version 2."""
    feed = feed_dir / "feeds" / "car-parks.geojson"
    feed.write_text(feed.read_text(encoding="utf-8").replace('"capacity": 420', '"capacity": 421'), encoding="utf-8")
    assert harvest_source(hub, "car-parks").status == "published"


async def test_health(api: httpx.AsyncClient) -> None:
    response = await api.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok", "datasets": 6})


async def test_datasets_lists_all_six_with_their_definitions(api: httpx.AsyncClient, demo_hub: Hub) -> None:
    expected = [expected_dataset(demo_hub.settings.definitions_dir, name) for name in sorted(ROWS)]
    body = scrub((await api.get(f"{API}/datasets")).json())
    assert body == {"total_count": 6, "limit": 100, "offset": 0, "results": expected}
    assert scrub((await api.get(f"{API}/datasets/car-parks")).json()) == expected[0]


@pytest.mark.parametrize(("query", "names"), [
    ("limit=2", ["car-parks", "city-districts"]),
    ("limit=2&offset=4", ["parking-occupancy", "waste-bin-fill-levels"]),
    ("offset=5", ["waste-bin-fill-levels"]),
    ("offset=6", []),
    ("publisher=stadtwerke", ["car-parks", "parking-occupancy"]),
    ("publisher=stadtverwaltung&limit=1&offset=1", ["egovernment-services"]),
    ("publisher=nobody", []),
])
async def test_datasets_pages_and_filters(api: httpx.AsyncClient, query: str, names: list[str]) -> None:
    body = (await api.get(f"{API}/datasets?{query}")).json()
    params = dict(p.split("=") for p in query.split("&"))
    total = {"stadtwerke": 2, "stadtverwaltung": 2, "nobody": 0}.get(params.get("publisher", ""), 6)
    assert {k: v for k, v in body.items() if k != "results"} == {
        "total_count": total, "limit": int(params.get("limit", 100)), "offset": int(params.get("offset", 0))}
    assert [d["name"] for d in body["results"]] == names


async def test_versions_version_and_datapackage(
    client: httpx.AsyncClient, feed_server: FeedServer, feed_dir: Path
) -> None:
    listed = (await client.get(f"{API}/datasets/car-parks/versions")).json()
    version = listed["results"][0]
    part = version["parts"][0]
    assert SHA.fullmatch(version["sha256"]) and SHA.fullmatch(part["sha256"])
    feed = (feed_dir / "feeds" / "car-parks.geojson").read_bytes()
    expected = {
        "number": 1, "created_at": "<ts>", "row_count": 6, "bytes": part["bytes"], "sha256": version["sha256"],
        "parts": [{"path": f"parts/{part['sha256']}.parquet", "sha256": part["sha256"], "rows": 6,
                   "bytes": part["bytes"]}],
        "changes": {"added": 6, "removed": 0, "changed": 0, "compared_by": "primary key", "schema_changed": False},
        "provenance": {"source": "car-parks", "source_url": f"{feed_server.url}feeds/car-parks.geojson", "etag": None,
                       # the feed server's Last-Modified, sent back as If-Modified-Since by the next harvest
                       "last_modified": formatdate((feed_dir / "feeds" / "car-parks.geojson").stat().st_mtime,
                                                   usegmt=True),
                       "received_at": "<ts>", "delivery_sha256": hashlib.sha256(feed).hexdigest(),
                       "delivery_bytes": len(feed), "mode": "replace", "harvest_job": 1},
    }
    assert scrub(listed) == {"dataset": "car-parks", "total_count": 1, "results": [expected]}

    one = (await client.get(f"{API}/datasets/car-parks/versions/1")).json()
    descriptor = one.pop("datapackage")
    assert one == {"dataset": "car-parks", **version}
    dataset = (await client.get(f"{API}/datasets/car-parks")).json()
    schema_hash = descriptor["urbandata"]["provenance"].pop("schema_hash")
    assert SHA.fullmatch(schema_hash)
    assert descriptor["created"] == version["created_at"]
    assert scrub(descriptor) == {
        "profile": "data-package", "name": "car-parks", "title": "Parkhäuser", "description": dataset["description"],
        "id": f"http://127.0.0.1:8000{API}/datasets/car-parks/versions/1", "version": "1", "created": "<ts>",
        "keywords": dataset["keywords"],
        "licenses": [{"name": "dl-de/by-2-0", "path": dataset["license"]["iri"], "title": dataset["license"]["title"]}],
        "contributors": [{"title": "Stadtwerke Musterstadt GmbH", "role": "publisher"}],
        "resources": [{"name": "car-parks", "profile": "tabular-data-resource", "path": [expected["parts"][0]["path"]],
                       "format": "parquet", "mediatype": "application/vnd.apache.parquet", "bytes": part["bytes"],
                       "schema": dataset["schema"]}],
        "urbandata": {"version": 1, "rows": 6, "bytes": part["bytes"], "sha256": version["sha256"],
                      "parts": expected["parts"], "provenance": expected["provenance"], "changes": expected["changes"]},
    }
    raw = await client.get(f"{API}/datasets/car-parks/versions/1/datapackage.json")
    assert raw.headers["content-type"] == "application/json"
    assert raw.headers["cache-control"] == IMMUTABLE
    # Served for Frictionless: one Parquet resource per part, each part under parts/ beside it.
    assert raw.json() == readable_descriptor({**descriptor, "urbandata": {**descriptor["urbandata"], "provenance": {
        **descriptor["urbandata"]["provenance"], "schema_hash": schema_hash}}})
    assert raw.json()["resources"][0]["path"] == expected["parts"][0]["path"]
    # Content addressing holds end to end: the one-part Parquet download hashes to its part's name.
    parquet = await client.get(f"{API}/datasets/car-parks/exports/parquet?version=1")
    assert hashlib.sha256(parquet.content).hexdigest() == part["sha256"]


async def test_records_page_and_links(api: httpx.AsyncClient, demo_hub: Hub) -> None:
    feeds = demo_hub.settings.definitions_dir / "feeds"
    features = json.loads((feeds / "car-parks.geojson").read_text(encoding="utf-8"))["features"]
    rows = [{**f["properties"], "geometry": f["geometry"]} for f in features]
    response = await api.get(f"{API}/datasets/car-parks/records?limit=4")
    assert response.headers["x-dataset-version"] == "1"
    body = response.json()
    nxt = httpx.URL(body.pop("links").pop("next"))
    assert body == {"dataset": "car-parks", "version": 1, "limit": 4, "offset": 0, "total_count": 6,
                    "results": rows[:4]}
    # The next link is opaque (offset or keyset cursor) but pins the version and keeps the page size.
    assert str(nxt.copy_with(query=None)) == f"{demo_hub.settings.public_url}{API}/datasets/car-parks/records"
    assert (nxt.params["version"], nxt.params["limit"]) == ("1", "4")
    last = (await api.get(nxt)).json()
    assert (last["version"], last["results"], last["links"]) == (1, rows[4:], {})


async def test_records_follow_next_to_the_end(api: httpx.AsyncClient, demo_hub: Hub) -> None:
    text = (demo_hub.settings.definitions_dir / "feeds" / "parking-occupancy.csv").read_text(encoding="utf-8")
    feed = [{**r, "occupied": int(r["occupied"]), "free": int(r["free"]), "capacity": int(r["capacity"]),
             "location": {"type": "Point", "coordinates": [float(v) for v in r["location"].split(",")]}}
            for r in csv.DictReader(io.StringIO(text))]
    url, pages, seen = f"{API}/datasets/parking-occupancy/records?limit=250", [], []
    while url:
        body = (await api.get(url)).json()
        pages.append(len(body["results"]))
        seen += body["results"]
        url = body["links"].get("next")
    assert pages == [250, 250, 76]
    assert seen == sorted(feed, key=lambda r: (r["lot_id"], r["timestamp"]))
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", r["timestamp"]) for r in seen)


async def test_records_limit_zero_counts_without_a_next_link(api: httpx.AsyncClient) -> None:
    body = (await api.get(f"{API}/datasets/car-parks/records?limit=0")).json()
    assert body == {"dataset": "car-parks", "version": 1, "total_count": 6, "limit": 0, "offset": 0, "results": [],
                    "links": {}}


async def test_exports_of_each_version_read_back_equal_its_records(
    client: httpx.AsyncClient, harvested: Hub, feed_dir: Path
) -> None:
    publish_second_car_parks_version(harvested, feed_dir)
    for name in sorted(ROWS):
        schema = (await client.get(f"{API}/datasets/{name}")).json()["schema"]
        geometry = [f["name"] for f in schema["fields"] if f["type"] in GEOMETRY]
        for version in (1, 2) if name == "car-parks" else (1,):
            records = await all_records(client, name, version)
            assert len(records) == ROWS[name]
            for fmt in ("csv", "json", "ndjson", "geojson", "parquet"):
                response = await client.get(f"{API}/datasets/{name}/exports/{fmt}?version={version}")
                if fmt == "geojson" and not geometry:
                    assert error_of(response, 400)["code"] == "invalid-parameter"
                    continue
                assert response.status_code == 200, response.text
                headers = ("x-dataset-version", "cache-control", "content-disposition")
                assert tuple(response.headers[h] for h in headers) == (str(version), IMMUTABLE,
                                                                      f'attachment; filename="{name}-v{version}.{fmt}"')
                assert read_export(fmt, response.content, schema) == records, (name, version, fmt)
                if fmt == "parquet" and geometry:
                    geo = json.loads(pq.read_schema(io.BytesIO(response.content)).metadata[b"geo"])
                    assert geo["primary_column"] == geometry[0]
    v1, v2 = await all_records(client, "car-parks", 1), await all_records(client, "car-parks", 2)
    assert [r["capacity"] for r in v1] == [420, 310, 650, 380, 220, 500]
    assert v2 == [{**v1[0], "capacity": 421}] + v1[1:]


async def test_a_second_delivery_adds_a_version(client: httpx.AsyncClient, harvested: Hub, feed_dir: Path) -> None:
    publish_second_car_parks_version(harvested, feed_dir)
    dataset = (await client.get(f"{API}/datasets/car-parks")).json()
    assert (dataset["current_version"], dataset["row_count"]) == (2, 6)
    listed = (await client.get(f"{API}/datasets/car-parks/versions")).json()
    assert [(v["number"], v["changes"]) for v in listed["results"]] == [
        (2, {"added": 0, "removed": 0, "changed": 1, "compared_by": "primary key", "schema_changed": False}),
        (1, {"added": 6, "removed": 0, "changed": 0, "compared_by": "primary key", "schema_changed": False})]
    unpinned = await client.get(f"{API}/datasets/car-parks/exports/csv")
    assert (unpinned.headers["x-dataset-version"], unpinned.headers["cache-control"]) == ("2", "public, max-age=60")
    deliveries = scrub((await client.get(f"{API}/datasets/car-parks/deliveries")).json())
    job = {"status": "published", "error_code": None, "started_at": "<ts>", "finished_at": "<ts>", "rows": 6,
           "has_report": True, "bytes_received": len((feed_dir / "feeds" / "car-parks.geojson").read_bytes())}
    assert deliveries == {"dataset": "car-parks", "results": [
        {"id": 7, "message": "version 2", "version": 2, **job}, {"id": 1, "message": "version 1", "version": 1, **job}]}


async def test_delivery_report_is_a_valid_frictionless_report(api: httpx.AsyncClient) -> None:
    (job,) = (await api.get(f"{API}/datasets/car-parks/deliveries")).json()["results"]
    report = (await api.get(f"{API}/datasets/car-parks/deliveries/{job['id']}/report")).json()
    place = (await api.get(f"{API}/datasets/car-parks/versions/1")).json()["provenance"]["source_url"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/feeds/car-parks\.geojson", place)
    (task,) = report["tasks"]
    assert report["stats"].pop("seconds") >= 0 and task["stats"].pop("seconds") >= 0
    labels = ["lot_id", "name", "address", "capacity", "operator", "open_24h", "fee_per_hour_eur", "geometry"]
    assert report == {"valid": True, "stats": {"tasks": 1, "errors": 0, "warnings": 0}, "warnings": [], "errors": [],
                      "tasks": [{"name": "car-parks", "type": "table", "valid": True,
                                 "place": place, "labels": labels,
                                 "stats": {"errors": 0, "warnings": 0, "rows": 6, "fields": 8},
                                 "warnings": [], "errors": []}]}


async def test_publishers(api: httpx.AsyncClient, demo_hub: Hub) -> None:
    text = (demo_hub.settings.definitions_dir / "publishers.yaml").read_text(encoding="utf-8")
    defined = yaml.safe_load(text)["publishers"]
    counts = {"abfallwirtschaft": 1, "stadtverwaltung": 2, "stadtwerke": 2, "wasserverband": 1}
    body = (await api.get(f"{API}/publishers")).json()
    assert body == {"total_count": 4, "results": [{**p, "dataset_count": counts[p["name"]]}
                                                  for p in sorted(defined, key=lambda p: p["name"])]}
    one = (await api.get(f"{API}/publishers/stadtverwaltung")).json()
    assert one == {**next(p for p in defined if p["name"] == "stadtverwaltung"),
                   "datasets": ["city-districts", "egovernment-services"]}


async def test_openapi_lists_every_route(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    data = f"{API}/datasets/{{name}}"
    assert {"/health", f"{API}/datasets", data, f"{data}/versions", f"{data}/versions/{{number}}",
            f"{data}/versions/{{number}}/datapackage.json", f"{data}/records", f"{data}/exports/{{fmt}}",
            f"{data}/deliveries", f"{data}/deliveries/{{job_id}}/report", f"{API}/publishers",
            f"{API}/publishers/{{name}}"} <= set(spec["paths"])
    # Route docstrings are the OpenAPI descriptions; the catch-all stays out of the spec.
    assert all(op.get("description") for ops in spec["paths"].values() for op in ops.values())
    assert not [path for path in spec["paths"] if "{rest" in path]
    assert spec["info"]["title"] == "urbandata API"


NO_DATASET = {"code": "dataset-not-found", "status": 404,
              "message": "There is no dataset named 'nope'. The list of datasets is at /api/v1/datasets."}
NO_VERSION = {"code": "version-not-found", "status": 404,
              "message": "Dataset 'car-parks' has no version 9. Versions 1 to 1 exist."}
NOT_INT = "Input should be a valid integer, unable to parse string as an integer"
AT_LEAST = "Input should be greater than or equal to"


def _bad(message: str, **details: Any) -> dict[str, Any]:
    return {"code": "invalid-parameter", "status": 400, "message": message, **({"details": details} if details else {})}


def _invalid(parameter: str, problem: str, value: str) -> dict[str, Any]:
    problems = [{"parameter": parameter, "problem": problem, "input": value}]
    return _bad(f"Invalid value for {parameter}: {problem}.", problems=problems)


@pytest.mark.parametrize(("path", "error"), [
    ("/datasets/nope", NO_DATASET),
    ("/datasets/nope/records", NO_DATASET),
    ("/datasets/nope/versions", NO_DATASET),
    ("/datasets/car-parks/versions/9", NO_VERSION),
    ("/datasets/car-parks/records?version=9", NO_VERSION),
    ("/datasets/car-parks/exports/csv?version=9", NO_VERSION),
    ("/publishers/nope", {"code": "publisher-not-found", "status": 404,
                          "message": "There is no publisher named 'nope'."}),
    ("/datasets/car-parks/deliveries/99/report",
     {"code": "not-found", "status": 404,
      "message": "Dataset 'car-parks' has no delivery 99 with a validation report."}),
    ("/nope", {"code": "not-found", "status": 404, "message": "Nothing at /api/v1/nope. The API starts at "
               "/api/v1/datasets; its description is at /openapi.json."}),
    ("/datasets/car-parks/records?version=abc", _invalid("query.version", NOT_INT, "abc")),
    ("/datasets/car-parks/versions/abc", _invalid("path.number", NOT_INT, "abc")),
    ("/datasets/car-parks/records?limit=-1", _invalid("query.limit", f"{AT_LEAST} 0", "-1")),
    ("/datasets?limit=0", _invalid("query.limit", f"{AT_LEAST} 1", "0")),
    ("/datasets/car-parks/versions/0", _bad("Version numbers start at 1; got 0.")),
    ("/datasets/car-parks/records?limit=1001", _bad(
        "limit=1001 is above the maximum of 1000 rows per page. Page with offset or cursor, or use /exports for the "
        "whole dataset.", parameter="limit", maximum=1000)),
    ("/datasets/car-parks/exports/xml",
     _bad(f"Unknown export format 'xml'. Use one of: {', '.join(format_names(load_registry()))}.")),
    ("/datasets/egovernment-services/exports/geojson", _bad(
        "Dataset 'egovernment-services' has no geometry field, so it has no GeoJSON export; use csv or json.")),
])
async def test_errors_share_one_envelope(api: httpx.AsyncClient, path: str, error: dict[str, Any]) -> None:
    response = await api.get(API + path)
    assert error_of(response, error["status"]) == error


async def test_wrong_method_on_an_api_route_is_405(api: httpx.AsyncClient) -> None:
    """A method no route of the path takes is a 405 naming the ones it does (POST /datasets creates a dataset)."""
    for method, path in (("DELETE", f"{API}/datasets"), ("PUT", f"{API}/publishers"),
                         ("POST", f"{API}/datasets/car-parks/records")):
        response = await api.request(method, path)
        assert error_of(response, 405)["code"] == "method-not-allowed", (method, path)
        assert "GET" in response.headers["allow"], (method, path, response.headers)


async def test_unknown_site_path_gets_the_html_404_page(api: httpx.AsyncClient, demo_hub: Hub) -> None:
    response = await api.get("/no-such-page.html")
    assert (response.status_code, response.headers["content-type"]) == (404, "text/html; charset=utf-8")
    assert response.text == (demo_hub.settings.site_dir / "404.html").read_text(encoding="utf-8")
    assert '<html lang="de">' in response.text


async def test_unknown_english_path_gets_the_english_404_page(api: httpx.AsyncClient) -> None:
    response = await api.get("/en/no-such-page.html")
    assert (response.status_code, '<html lang="en">' in response.text) == (404, True)


async def test_a_dataset_without_a_version(hub: Hub) -> None:
    app = create_app(hub.settings, hub)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as client:
        dataset = scrub((await client.get(f"{API}/datasets/car-parks")).json())
        records = await client.get(f"{API}/datasets/car-parks/records")
        versions = (await client.get(f"{API}/datasets/car-parks/versions")).json()
        deliveries = (await client.get(f"{API}/datasets/car-parks/deliveries")).json()
    app.state.query_engine.close()
    unpublished = {"current_version": None, "row_count": None, "modified_at": None}
    assert dataset == {**expected_dataset(hub.settings.definitions_dir, "car-parks"), **unpublished}
    assert error_of(records, 404) == {"code": "version-not-found", "status": 404,
                                      "message": "Dataset 'car-parks' has no published version yet."}
    assert (versions, deliveries) == ({"dataset": "car-parks", "total_count": 0, "results": []},
                                      {"dataset": "car-parks", "results": []})
