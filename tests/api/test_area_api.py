"""GET /api/v1/datasets?bbox=: the catalogue's area search over HTTP (the kernel is tested in test_area_search.py)."""

from __future__ import annotations

import httpx
import pytest

from tests.api.test_datapackage_serving import DEMO_DATASETS
from tests.api.test_routes import error_of

pytestmark = pytest.mark.anyio


async def _names(api: httpx.AsyncClient, **params: str) -> tuple[int, list[str]]:
    response = await api.get("/api/v1/datasets", params=params)
    assert response.status_code == 200
    body = response.json()
    return body["total_count"], [d["name"] for d in body["results"]]


async def test_bbox_finds_the_datasets_whose_extent_meets_it(api: httpx.AsyncClient) -> None:
    # Every public demo dataset covers Hamburg (9.90,53.50,10.10,53.62); nothing covers Munich.
    assert await _names(api, bbox="9.95,53.55,10.0,53.6") == (len(DEMO_DATASETS), DEMO_DATASETS)
    assert await _names(api, bbox="10.10,53.62,10.2,53.7") == (len(DEMO_DATASETS), DEMO_DATASETS)  # a touching corner
    assert await _names(api, bbox="11.36,48.06,11.72,48.25") == (0, [])
    assert await _names(api, bbox="9.95,53.55,10.0,53.6", q="Parkhäuser") == (2, ["car-parks", "parking-occupancy"])
    assert await _names(api, bbox="11.36,48.06,11.72,48.25", q="Parkhäuser") == (0, [])


async def test_bbox_pages_keep_the_box_in_their_links(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/datasets", params={"bbox": "9.95,53.55,10.0,53.6", "limit": "2"})
    assert [d["name"] for d in response.json()["results"]] == DEMO_DATASETS[:2]
    assert "bbox=9.95%2C53.55%2C10.0%2C53.6" in response.headers["Link"] and "offset=2" in response.headers["Link"]


@pytest.mark.parametrize("bad", ["9.9,53.5,10.1", "west,south,east,north", "10.1,53.5,9.9,53.6", "0,0,0,91"])
async def test_a_bad_bbox_is_a_400_naming_the_parameter(api: httpx.AsyncClient, bad: str) -> None:
    error = error_of(await api.get("/api/v1/datasets", params={"bbox": bad}), 400)
    assert (error["code"], error["details"]) == ("invalid-parameter", {"parameter": "bbox"})
    assert error["message"].startswith("bbox")
