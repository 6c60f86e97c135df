"""HTTP conventions on every route: HEAD wherever GET is, CORS for public reads, Link headers for paging,
the OpenAPI description (error envelope, enums), one CSV rendering of values."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.anyio

ORIGIN = "https://app.example"


@pytest.mark.parametrize("path", [
    "/health", "/api/v1/datasets", "/api/v1/datasets/car-parks", "/api/v1/datasets/car-parks/versions",
    "/api/v1/datasets/car-parks/records?limit=2", "/api/v1/datasets/car-parks/facets",
    "/api/v1/datasets/car-parks/exports/csv", "/api/v1/datasets/car-parks/exports/parquet",
    "/api/v1/publishers", "/openapi.json", "/",
])
async def test_head_answers_as_get_without_a_body(api: httpx.AsyncClient, path: str) -> None:
    got = await api.get(path)
    head = await api.head(path)
    assert (got.status_code, head.status_code) == (200, 200)
    assert head.content == b""
    skip = {"date", "content-length", "x-cache", "ratelimit-remaining", "ratelimit-reset", "x-request-id"}  # one per request
    assert {k: v for k, v in head.headers.items() if k not in skip} == \
        {k: v for k, v in got.headers.items() if k not in skip}


async def test_head_of_a_missing_dataset_is_a_404(api: httpx.AsyncClient) -> None:
    head = await api.head("/api/v1/datasets/no-such-dataset")
    assert (head.status_code, head.content) == (404, b"")


async def test_anonymous_reads_get_cors_headers(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/datasets", headers={"Origin": ORIGIN})
    assert response.headers["access-control-allow-origin"] == "*"
    assert "Link" in response.headers["access-control-expose-headers"]
    assert "access-control-allow-credentials" not in response.headers


async def test_no_cors_headers_with_credentials(api: httpx.AsyncClient) -> None:
    for credentials in ({"Authorization": "Bearer x"}, {"Cookie": "session=x"}):
        response = await api.get("/api/v1/datasets", headers={"Origin": ORIGIN, **credentials})
        assert response.status_code in (200, 401)  # an unknown token is refused, a cookie ignored
        assert not [k for k in response.headers if k.startswith("access-control-")]


async def test_no_cors_headers_without_an_origin(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/datasets")
    assert not [k for k in response.headers if k.startswith("access-control-")]


async def test_preflight_of_a_read_is_answered(api: httpx.AsyncClient) -> None:
    response = await api.options("/api/v1/datasets/car-parks/records", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "Range, If-None-Match"})
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-methods"] == "GET, HEAD, POST"
    assert {"range", "if-none-match"} <= set(response.headers["access-control-allow-headers"].split(", "))
    assert response.headers["access-control-max-age"] == "600"


async def test_preflight_asking_for_credentials_is_refused(api: httpx.AsyncClient) -> None:
    response = await api.options("/api/v1/datasets", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "Authorization"})
    assert response.status_code == 403
    assert response.json() == {"error": {"code": "cors-refused", "status": 403, "message":
                               "Cross-origin request refused: the header(s) authorization may not be sent "
                               "cross-origin (only public reads are)."}}
    assert "access-control-allow-origin" not in response.headers
    delete = await api.options("/api/v1/datasets", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "DELETE"})
    assert delete.status_code == 403


async def test_configured_origins_are_echoed_and_others_refused(demo_hub) -> None:
    from api.app import create_app

    settings = demo_hub.settings.model_copy(update={"cors_origins": [ORIGIN]})
    app = create_app(settings, demo_hub)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as c:
            listed = await c.get("/api/v1/publishers", headers={"Origin": ORIGIN})
            other = await c.get("/api/v1/publishers", headers={"Origin": "https://evil.example"})
            preflight = await c.options("/api/v1/publishers", headers={
                "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    finally:
        app.state.query_engine.close()
        app.state.sql_pool.close()
    assert (listed.headers["access-control-allow-origin"], listed.headers["vary"]) == (ORIGIN, "Origin, Authorization")
    assert "access-control-allow-origin" not in other.headers
    assert preflight.status_code == 403


async def test_link_headers_page_the_dataset_list(api: httpx.AsyncClient) -> None:
    first = await api.get("/api/v1/datasets?limit=2")
    middle = await api.get("/api/v1/datasets?limit=2&offset=2")
    last = await api.get("/api/v1/datasets?limit=2&offset=4")
    base = "http://127.0.0.1:8000/api/v1/datasets"
    assert first.headers["link"] == f'<{base}?limit=2&offset=2>; rel="next"'
    assert middle.headers["link"] == f'<{base}?limit=2&offset=4>; rel="next", <{base}?limit=2&offset=0>; rel="prev"'
    assert last.headers["link"] == f'<{base}?limit=2&offset=2>; rel="prev"'
    assert last.json()["total_count"] == 6


async def test_link_headers_page_records(api: httpx.AsyncClient) -> None:
    first = await api.get("/api/v1/datasets/car-parks/records?limit=2")
    number = first.json()["version"]
    base = "http://127.0.0.1:8000/api/v1/datasets/car-parks/records"
    assert first.headers["link"] == f'<{first.json()["links"]["next"]}>; rel="next"'
    second = await api.get("/api/v1/datasets/car-parks/records?limit=2&offset=2")
    assert second.headers["link"] == (f'<{second.json()["links"]["next"]}>; rel="next", '
                                      f'<{base}?version={number}&offset=0&limit=2>; rel="prev"')


def _feature(lot: str, open_24h: bool, day: str, x: float) -> dict[str, object]:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [x, 53.5]},
            "properties": {"lot_id": lot, "open_24h": open_24h, "since": day}}


async def test_diff_csv_renders_values_as_the_csv_export(make_catalogue) -> None:
    """Booleans true/false, dates ISO, geometry WKT: the same cells in /diff?format=csv and /exports/csv."""
    import json

    from api.app import create_app
    from catalogue.ingest.pipeline import Delivery, ingest_delivery

    schema = {"fields": [{"name": "lot_id", "type": "string"}, {"name": "open_24h", "type": "boolean"},
                         {"name": "since", "type": "date"}, {"name": "geometry", "type": "geojson"}],
              "primaryKey": ["lot_id"]}
    def collection(*features: dict[str, object]) -> bytes:
        return json.dumps({"type": "FeatureCollection", "features": list(features)}).encode()
    hub = make_catalogue("lots", schema, collection(_feature("P1", True, "2026-01-02", 9.5)), "geojson")
    second = collection(_feature("P1", True, "2026-01-02", 9.5), _feature("P2", False, "2026-03-04", 10.25))
    assert ingest_delivery(hub, "lots", Delivery(second, "geojson", {}, "replace", {"source_url": "test"})).status \
        == "published"
    app = create_app(hub.settings, hub)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as c:
            diff = await c.get("/api/v1/datasets/lots/diff?from=1&to=2&format=csv")
            export = await c.get("/api/v1/datasets/lots/exports/csv?version=2&where=lot_id%3D'P2'")
    finally:
        app.state.query_engine.close()
        app.state.sql_pool.close()
    import csv

    assert list(csv.reader(diff.text.splitlines())) == [
        ["_change", "lot_id", "open_24h", "since", "geometry"], ["added", "P2", "false", "2026-03-04", "POINT (10.25 53.5)"]]
    assert list(csv.reader(export.text.lstrip("\ufeff").splitlines())) == [
        ["lot_id", "open_24h", "since", "geometry"], ["P2", "false", "2026-03-04", "POINT (10.25 53.5)"]]


async def test_openapi_documents_the_envelope_not_422_and_format_enums(api: httpx.AsyncClient) -> None:
    from api.openapi_ckan import is_ckan
    from catalogue.query.exports import format_names

    document = (await api.get("/openapi.json")).json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    declared = {f"{m} {p}": op["responses"]["422"]["description"] for p, ops in document["paths"].items()
                for m, op in ops.items() if "422" in op["responses"]}
    assert "post /api/v1/datasets/{name}/deliveries" in declared  # the push route does send one (its report)
    assert "Validation Error" not in declared.values()  # FastAPI's own, never sent
    assert all(m == "post" for m in (k.split()[0] for k in declared))
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    ckan_error = {"$ref": "#/components/schemas/CkanError"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "HTTPValidationError" not in str(responses.get("422")), (method, path)  # FastAPI's, never sent
            if is_ckan(operation):  # CKAN's envelope; 400 and 503 also the server's guards' (api/openapi_ckan.py)
                for status in ("400", "503"):
                    assert responses[status]["content"]["application/json"]["schema"] == {"oneOf": [envelope, ckan_error]}
                assert responses["404"]["content"]["application/json"]["schema"] == ckan_error, (method, path)
                continue
            assert responses["400"]["content"]["application/json"]["schema"] == envelope, (method, path)
            assert responses["503"]["content"]["application/json"]["schema"] == envelope, (method, path)
            if "{" in path:
                assert responses["404"]["content"]["application/json"]["schema"] == envelope, (method, path)
    export = document["paths"]["/api/v1/datasets/{name}/exports/{fmt}"]["get"]
    fmt = next(p for p in export["parameters"] if p["name"] == "fmt")
    app_registry = api._transport.app.state.hub.registry  # type: ignore[attr-defined]
    assert fmt["schema"]["enum"] == format_names(app_registry)
    diff = document["paths"]["/api/v1/datasets/{name}/diff"]["get"]
    assert next(p for p in diff["parameters"] if p["name"] == "format")["schema"]["enum"] == ["json", "csv"]
    example = document["paths"]["/api/v1/datasets/{name}"]["get"]["responses"]["404"]["content"]["application/json"]
    assert example["example"]["error"]["code"] == "dataset-not-found"


async def test_a_bad_parameter_is_the_documented_400(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/datasets?limit=0")
    assert response.status_code == 400
    assert set(response.json()) == {"error"} and response.json()["error"]["code"] == "invalid-parameter"


def test_head_through_the_real_server_ends_streamed_answers_early(demo_hub) -> None:
    """Under uvicorn, a HEAD of a streamed export gets the GET's headers and no body, and the connection
    stays usable (the rest of the stream is not computed, so nothing is written after the headers)."""
    from api.app import create_app
    from tests.api.live_server import threaded_server

    app = create_app(demo_hub.settings, demo_hub)
    with threaded_server(app) as (host, port), httpx.Client(base_url=f"http://{host}:{port}") as client:
        for path in ("/api/v1/datasets/parking-occupancy/exports/csv", "/api/v1/datasets/parking-occupancy/exports/ndjson",
                     "/api/v1/datasets/parking-occupancy/exports/parquet", "/health"):
            got, head = client.get(path), client.head(path)
            assert (got.status_code, head.status_code, head.content) == (200, 200, b""), path
            assert head.headers["content-type"] == got.headers["content-type"], path
            assert head.headers.get("etag") == got.headers.get("etag"), path
        assert client.get("/health").json()["status"] == "ok"  # the same connection, still in step


@pytest.mark.parametrize("path, real", [
    ("/api/v1/datasets", "/api/v1/datasets?limit=1"),
    ("/api/v1/datasets/{name}/records", "/api/v1/datasets/car-parks/records?limit=1&select=lot_id,capacity"),
    ("/api/v1/datasets/{name}/facets", "/api/v1/datasets/car-parks/facets?facet=operator"),
    ("/api/v1/datasets/{name}/versions", "/api/v1/datasets/car-parks/versions"),
])
async def test_documented_answers_have_the_real_answers_shape(api: httpx.AsyncClient, path: str, real: str) -> None:
    document = (await api.get("/openapi.json")).json()
    documented = document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
    answer = (await api.get(real)).json()
    assert list(documented["schema"]["properties"]) == list(answer) == list(documented["example"])
    assert set(documented["example"]["results"][0] if "results" in answer else {}) <= set(
        answer["results"][0] if "results" in answer else {})
