"""The items route reads a small bbox from the parts' by-space copies (catalogue.query.by_space) and answers as the
parts do: walked along its next links, a bbox answers the same pages of features, numbers and page sizes as the
same box given as a CQL2 filter, which the parts answer."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from catalogue.query import by_space
from tests.conftest import in_process_client

SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "name", "type": "string"},
                     {"name": "geometry", "type": "geojson"}], "primaryKey": ["id"]}
BOXES = [(9.95, 53.5, 9.97, 53.52), (9.82, 53.41, 9.9, 53.47), (11.0, 54.0, 11.1, 54.1)]  # the last one meets none


def _points(n: int = 3000) -> bytes:
    pick = random.Random(5)
    return json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": i, "name": f"P{i}"}, "geometry": {
            "type": "Point", "coordinates": [round(pick.uniform(9.8, 10.2), 5), round(pick.uniform(53.4, 53.7), 5)]}}
        for i in range(1, n + 1)]}).encode()


async def _walk(client: Any, public_url: str, url: str) -> list[tuple[list[Any], int, int]]:
    """(features, numberMatched, numberReturned) of every page along the next links from ``url``."""
    pages = []
    while url:
        answer = await client.get(url)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        pages.append((page["features"], page["numberMatched"], page["numberReturned"]))
        following = [link["href"] for link in page["links"] if link["rel"] == "next"]
        url = following[0].removeprefix(public_url) if following else ""
    return pages


@pytest.mark.anyio
@pytest.mark.parametrize("box", BOXES)
async def test_a_small_bbox_answers_as_the_parts_do(make_catalogue: Any, box: tuple[float, ...]) -> None:
    hub = make_catalogue("punkte", SCHEMA, _points(), "geojson", part_max_rows=1000)
    by_space.forget()
    west, south, east, north = box
    async for client in in_process_client(hub):
        base = "/ogc/collections/punkte/items?limit=25"
        # The box as bbox (read from the copies), then as a CQL2 filter (read from the parts).
        moved = await _walk(client, hub.settings.public_url, f"{base}&bbox={west},{south},{east},{north}")
        plain = await _walk(client, hub.settings.public_url,
                            f"{base}&filter=S_INTERSECTS(geometry, BBOX({west}, {south}, {east}, {north}))")
        assert moved == plain
        assert sum(len(features) for features, _, _ in moved) == moved[0][1]
    assert len(list(hub.storage.list_keys("datasets/punkte/by-space"))) == 3  # one copy per part: the box read them
