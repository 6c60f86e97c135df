"""The keyset cursor walks a 1,000,000-row, multi-part dataset to the end."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.app import create_app

# slow: building the million-row dataset takes half a minute; CI runs it, `-m "not slow"` skips it locally.
pytestmark = [pytest.mark.anyio, pytest.mark.slow]
ROWS = 1_000_000


@pytest.fixture
async def big(make_catalogue: Any) -> Any:
    schema = {"fields": [{"name": "id", "type": "integer"}, {"name": "sensor", "type": "string"},
                         {"name": "value", "type": "number"}], "primaryKey": ["id"]}
    lines = ["id,sensor,value"] + [f"{i},s{i % 7},{i / 10}" for i in range(ROWS)]
    hub = make_catalogue("big", schema, ("\n".join(lines) + "\n").encode(), part_max_rows=400_000)
    app = create_app(hub.settings, hub)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as c:
        yield c
    app.state.query_engine.close()


async def test_cursor_reaches_the_end_of_a_million_rows(big: httpx.AsyncClient) -> None:
    versions = (await big.get("/api/v1/datasets/big/versions")).json()
    assert [p["rows"] for p in versions["results"][0]["parts"]] == [400_000, 400_000, 200_000]
    first = (await big.get("/api/v1/datasets/big/records", params={"limit": 1000, "select": "id"})).json()
    assert first["total_count"] == ROWS
    expected_next, pages, url = 0, 0, first["links"]["next"]
    for row in first["results"]:
        assert row["id"] == expected_next
        expected_next += 1
    while url:
        page = (await big.get(url)).json()
        pages += 1
        ids = [r["id"] for r in page["results"]]
        assert ids == list(range(expected_next, expected_next + len(ids)))
        expected_next += len(ids)
        url = page["links"].get("next")
    assert expected_next == ROWS
    assert pages >= 999
    # The offset wall still holds for the same dataset.
    wall = await big.get("/api/v1/datasets/big/records", params={"offset": 10_000, "limit": 1})
    assert wall.status_code == 400


async def test_filtered_cursor_with_where(big: httpx.AsyncClient) -> None:
    url = "/api/v1/datasets/big/records?limit=1000&select=id&where=sensor = 's3' and id >= 990000"
    ids: list[int] = []
    while url:
        page = (await big.get(url)).json()
        ids += [r["id"] for r in page["results"]]
        url = page["links"].get("next")
    assert ids == [i for i in range(990_000, ROWS) if i % 7 == 3]
