"""GET /datasets/{name}/latest on a real uvicorn server: the latest row per entity, with the records parameters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.app import create_app
from catalogue.hub import Hub
from catalogue.ingest.pipeline import Delivery, ingest_delivery
from tests.api.live_server import threaded_server

API = "/api/v1/datasets"
PARKING = f"{API}/parking-occupancy"


@pytest.fixture(scope="module")
def server(demo_hub: Hub) -> Iterator[httpx.Client]:
    app = create_app(demo_hub.settings, demo_hub)
    with threaded_server(app) as (host, port), httpx.Client(base_url=f"http://{host}:{port}", timeout=30) as client:
        yield client
    app.state.query_engine.close()
    app.state.sql_pool.close()


def newest_rows(client: httpx.Client, where: str = "true") -> list[dict[str, Any]]:
    """Each lot's newest row, found the slow way: the newest time per lot, then that row, through records."""
    groups = client.get(f"{PARKING}/records", params={
        "select": "lot_id, max(timestamp) as t", "group_by": "lot_id", "order_by": "lot_id", "where": where}).json()
    rows = []
    for group in groups["results"]:
        found = client.get(f"{PARKING}/records", params={
            "where": f"lot_id = '{group['lot_id']}' and timestamp = '{group['t']}'"}).json()
        assert found["total_count"] == 1, found
        rows.append(found["results"][0])
    return rows


def test_latest_is_the_newest_row_of_each_entity(server: httpx.Client) -> None:
    answer = server.get(f"{PARKING}/latest")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = newest_rows(server)
    assert len(expected) == 6
    assert body == {"dataset": "parking-occupancy", "version": body["version"], "total_count": 6, "limit": 100,
                    "offset": 0, "results": expected, "links": {}}
    assert answer.headers["x-dataset-version"] == str(body["version"])
    assert "location" in body["results"][0] and body["results"][0]["location"]["type"] == "Point"


def test_latest_takes_the_records_parameters(server: httpx.Client) -> None:
    everything = server.get(f"{PARKING}/latest").json()["results"]
    filtered = server.get(f"{PARKING}/latest", params={"where": "free > 100", "order_by": "free desc"}).json()
    wanted = sorted((r for r in everything if r["free"] > 100), key=lambda r: -r["free"])
    assert filtered["results"] == wanted and filtered["total_count"] == len(wanted)
    picked = server.get(f"{PARKING}/latest", params={"select": "lot_id, free", "refine": "lot_id:P02"}).json()
    p02 = next(r for r in everything if r["lot_id"] == "P02")
    assert picked["results"] == [{"lot_id": "P02", "free": p02["free"]}]
    first = server.get(f"{PARKING}/latest", params={"limit": 4, "order_by": "lot_id"}).json()
    assert [r["lot_id"] for r in first["results"]] == ["P01", "P02", "P03", "P04"]
    assert first["links"]["next"].endswith("offset=4&limit=4") or "offset=4" in first["links"]["next"]


def test_a_dataset_without_an_entity_time_key_is_a_404_saying_why(server: httpx.Client) -> None:
    answer = server.get(f"{API}/car-parks/latest")
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["code"] == "no-live-values"
    assert error["details"] == {"dataset": "car-parks", "primary_key": ["lot_id"]}
    assert "entity followed by a date or datetime field" in error["message"]


@pytest.mark.parametrize(("url", "status", "code"), [
    (f"{API}/no-such-dataset/latest", 404, "dataset-not-found"),
    (f"{PARKING}/latest?where=nonsense >", 400, "invalid-query"),
    (f"{PARKING}/latest?where=missing_field = 1", 400, "invalid-query"),
    (f"{PARKING}/latest?version=999", 404, "version-not-found"),
    (f"{PARKING}/latest?wehre=free > 1", 400, "invalid-parameter"),
])
def test_bad_latest_requests_are_clear_errors(server: httpx.Client, url: str, status: int, code: str) -> None:
    answer = server.get(url)
    assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), answer.text


def test_latest_follows_each_new_version_and_keeps_old_ones(make_catalogue: Any) -> None:
    schema = {"fields": [{"name": "sensor", "type": "string"}, {"name": "at", "type": "datetime"},
                         {"name": "value", "type": "number"}], "primaryKey": ["sensor", "at"]}
    hub: Hub = make_catalogue("readings", schema, b"sensor,at,value\na,2026-12-01T00:00:00,1\nb,2026-12-01T00:00:00,2\n")
    app = create_app(hub.settings, hub)
    try:
        with threaded_server(app) as (host, port), httpx.Client(base_url=f"http://{host}:{port}") as client:
            url = f"{API}/readings/latest"
            assert [r["value"] for r in client.get(url).json()["results"]] == [1, 2]
            more = b"sensor,at,value\na,2026-12-01T00:10:00,3\nc,2026-12-01T00:05:00,4\n"
            result = ingest_delivery(hub, "readings", Delivery(more, "csv", {}, "append", {"source_url": "t"}))
            assert result.status == "published"
            now = client.get(url)
            assert (now.json()["version"], [r["value"] for r in now.json()["results"]]) == (2, [3, 2, 4])
            assert [r["value"] for r in client.get(url, params={"version": 1}).json()["results"]] == [1, 2]
    finally:
        app.state.query_engine.close()
        app.state.sql_pool.close()
