"""The records and facets result cache: hits answer as computing would, keys follow versions, errors stay out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from catalogue.hub import Hub
from catalogue.query.result_cache import ResultCache

pytestmark = pytest.mark.anyio
API = "/api/v1/datasets"
PARKING = f"{API}/parking-occupancy"
WASTE = f"{API}/waste-bin-fill-levels"


@asynccontextmanager
async def serve(hub: Hub, **settings: Any) -> AsyncIterator[tuple[httpx.AsyncClient, ResultCache]]:
    """The app on ``hub`` with settings changed by ``settings``, in process, and its result cache."""
    app = create_app(hub.settings.model_copy(update=settings), hub)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as client:
        yield client, app.state.result_cache
    app.state.query_engine.close()
    app.state.sql_pool.close()


def _headers(r: httpx.Response) -> dict[str, str]:
    """The answer's headers but those that differ by design: the cache state and the request's own id."""
    return {k: v for k, v in r.headers.items() if k not in ("x-cache", "x-request-id")}


URLS = [
    f"{PARKING}/records?limit=7&where=lot_id = 'P01' and free > 100",
    f"{PARKING}/records?limit=5",  # links.next is a cursor
    f"{PARKING}/records?select=lot_id, count(*) as n&group_by=lot_id&order_by=lot_id&limit=2&offset=2",
    f"{WASTE}/records?refine=district:Altstadt&exclude=volume_litres:240&limit=3&version=1",
    f"{WASTE}/facets?facet=district&facet=volume_litres&where=fill_level_percent > 50",
    f"{WASTE}/facets",
]


async def test_a_repeated_request_is_a_hit_with_the_body_and_headers_computing_gives(demo_hub: Hub) -> None:
    async with serve(demo_hub) as (cached, cache), serve(demo_hub, result_cache_mb=0) as (uncached, off):
        for url in URLS:
            first, second = await cached.get(url), await cached.get(url)
            plain = [await uncached.get(url), await uncached.get(url)]
            assert [r.status_code for r in (first, second, *plain)] == [200] * 4, url
            assert [r.headers["x-cache"] for r in (first, second, *plain)] == ["miss", "hit", "miss", "miss"], url
            assert first.content == second.content == plain[0].content, url
            assert _headers(first) == _headers(second) == _headers(plain[0]), url
    assert (len(cache), len(off), off.held_bytes) == (len(URLS), 0, 0)


async def test_only_parameters_that_change_the_body_make_another_entry(api: httpx.AsyncClient) -> None:
    asked = [
        (f"{WASTE}/records?limit=10", "miss"),
        (f"{WASTE}/records?limit=10", "hit"),
        (f"{WASTE}/records?limit=10&version=1", "hit"),  # the current version, pinned: the same rows
        (f"{WASTE}/records?limit=11", "miss"),
        (f"{WASTE}/records?limit=10&offset=10", "miss"),
        (f"{WASTE}/records?limit=10&where=fill_level_percent > 50", "miss"),
        (f"{WASTE}/records?limit=10&order_by=fill_level_percent", "miss"),
        (f"{WASTE}/records?limit=10&select=district", "miss"),
        (f"{WASTE}/records?limit=10&refine=district:Altstadt&refine=volume_litres:240", "miss"),
        (f"{WASTE}/records?limit=10&refine=volume_litres:240&refine=district:Altstadt", "hit"),  # ANDed: same rows
        (f"{WASTE}/records?limit=10&exclude=district:Altstadt", "miss"),
        (f"{WASTE}/facets?facet=district", "miss"),
        (f"{WASTE}/facets?facet=district&limit=2", "miss"),
        (f"{WASTE}/facets?facet=district&facet=volume_litres", "miss"),
        (f"{WASTE}/facets?facet=volume_litres&facet=district", "miss"),  # facets come in the asked order
        (f"{WASTE}/facets?facet=district", "hit"),
        (f"{PARKING}/records?limit=10", "miss"),
    ]
    states = [(url, (await api.get(url)).headers.get("x-cache")) for url, _ in asked]
    assert states == asked


async def test_links_echo_each_request_even_on_a_hit(api: httpx.AsyncClient, demo_hub: Hub) -> None:
    first = (await api.get(f"{WASTE}/records", params=[("refine", "district:Altstadt"), ("limit", 2)])).json()
    swapped = await api.get(f"{WASTE}/records", params=[("limit", 2), ("refine", "district:Altstadt")],
                            headers={"Host": "other.test"})
    assert swapped.headers["x-cache"] == "hit"
    assert swapped.json()["results"] == first["results"]
    # Links start from the configured public URL, whatever Host the client sent (issue 13, item 13).
    public = demo_hub.settings.public_url
    assert (first["links"]["next"].split("?")[0], swapped.json()["links"]["next"].split("?")[0]) == (
        f"{public}{WASTE}/records", f"{public}{WASTE}/records")
    assert [httpx.URL(r["links"]["next"]).params["refine"] for r in (first, swapped.json())] == ["district:Altstadt"] * 2


async def test_a_new_version_is_served_at_once_and_the_old_one_stays_pinned(
    client: httpx.AsyncClient, harvested: Hub, feed_dir: Path
) -> None:
    from harvesters.runner import harvest_source

    url = f"{API}/groundwater-levels/records?limit=3&order_by=level_m_nn desc"
    v1 = [await client.get(url), await client.get(url)]
    feed = feed_dir / "feeds" / "groundwater-levels.json"
    rows = json.loads(feed.read_text(encoding="utf-8"))
    rows[0]["level_m_nn"] = 9.99
    feed.write_text(json.dumps(rows), encoding="utf-8")
    assert harvest_source(harvested, "groundwater-levels").version == 2

    v2 = [await client.get(url), await client.get(url)]
    pinned = await client.get(f"{url}&version=1")
    assert [(r.headers["x-dataset-version"], r.headers["x-cache"]) for r in (*v1, *v2, pinned)] == [
        ("1", "miss"), ("1", "hit"), ("2", "miss"), ("2", "hit"), ("1", "hit")]
    assert v2[0].json()["results"][0]["level_m_nn"] == 9.99
    assert v2[0].json()["results"][1:] == v1[0].json()["results"][:2]
    assert pinned.content == v1[0].content
    facets = f"{API}/groundwater-levels/facets"
    assert [(await client.get(f"{facets}?version={n}")).json()["version"] for n in (1, 2)] == [1, 2]


@pytest.mark.parametrize(
    ("url", "code"),
    [
        (f"{PARKING}/records?where=free >", "invalid-query"),
        (f"{PARKING}/records?limit=5000", "invalid-parameter"),
        (f"{PARKING}/records?cursor=nonsense", "invalid-parameter"),
        (f"{PARKING}/records?version=9", "version-not-found"),
        (f"{PARKING}/records?version=1&as_of=2026-11-20T00:00:00Z", "invalid-parameter"),
        (f"{API}/nope/records", "dataset-not-found"),
        (f"{PARKING}/facets?facet=location", "invalid-query"),
    ],
)
async def test_errors_are_never_kept(demo_hub: Hub, url: str, code: str) -> None:
    async with serve(demo_hub) as (client, cache):
        answers = [await client.get(url), await client.get(url)]
    assert [(r.json()["error"]["code"], "x-cache" in r.headers) for r in answers] == [(code, False)] * 2
    assert len(cache) == 0


async def test_a_query_past_its_deadline_is_not_kept(make_catalogue: Any) -> None:
    schema = {"fields": [{"name": "id", "type": "integer"}, {"name": "k", "type": "string"},
                         {"name": "v", "type": "number"}], "primaryKey": ["id"]}
    lines = ["id,k,v"] + [f"{i},k{i % 5000},{(i * 7919) % 100003 / 7}" for i in range(200_000)]
    hub = make_catalogue("slow", schema, ("\n".join(lines) + "\n").encode(), query_time_limit_ms=1)
    url = f"{API}/slow/records?select=k, median(v) as m, percentile(v, 90) as p&group_by=k&order_by=m desc"
    async with serve(hub) as (client, cache):
        answers = [await client.get(url), await client.get(url)]
    assert [r.json()["error"]["code"] for r in answers] == ["query-timeout"] * 2
    assert len(cache) == 0


async def test_the_byte_bound_evicts_the_least_recently_used_pages(make_catalogue: Any) -> None:
    schema = {"fields": [{"name": "id", "type": "integer"}, {"name": "note", "type": "string"}], "primaryKey": ["id"]}
    lines = ["id,note"] + [f"{i},{'n' * 120}" for i in range(10_000)]  # about 140 KB per page of 1,000
    hub = make_catalogue("wide", schema, ("\n".join(lines) + "\n").encode())
    pages = [f"{API}/wide/records?limit=1000&offset={n * 1000}" for n in range(10)]
    async with serve(hub, result_cache_mb=1) as (client, cache):
        filled = [(await client.get(url)).headers["x-cache"] for url in pages]
        again = [(await client.get(url)).headers["x-cache"] for url in (pages[9], pages[8], pages[0])]
        assert 0 < cache.held_bytes <= 1024 * 1024
        assert len(cache) < len(pages)
    assert filled == ["miss"] * 10
    assert again == ["hit", "hit", "miss"]


async def test_answers_carry_an_etag_and_a_client_holding_the_body_gets_a_bodiless_304(
    client: httpx.AsyncClient, harvested: Hub, feed_dir: Path
) -> None:
    from harvesters.runner import harvest_source

    records, facets = f"{API}/groundwater-levels/records?limit=3", f"{API}/groundwater-levels/facets"
    for url in (records, facets):
        first, again = await client.get(url), await client.get(url)
        tag = first.headers["etag"]
        assert again.headers["etag"] == tag and first.headers["cache-control"] == "public, no-cache"
        for held in (tag, f"W/{tag}", f'"other", {tag}', "*"):
            revalidated = await client.get(url, headers={"If-None-Match": held})
            assert (revalidated.status_code, revalidated.content, revalidated.headers["etag"]) == (304, b"", tag)
        assert (await client.get(url, headers={"If-None-Match": '"other"'})).content == first.content
    assert (await client.get(f"{records}&offset=1")).headers["etag"] != (await client.get(records)).headers["etag"]
    pinned = await client.get(f"{records}&version=1")
    assert pinned.headers["cache-control"] == "public, max-age=31536000, immutable"
    held = (await client.get(records)).headers["etag"]

    feed = feed_dir / "feeds" / "groundwater-levels.json"
    rows = json.loads(feed.read_text(encoding="utf-8"))
    rows[0]["level_m_nn"] = 9.99
    feed.write_text(json.dumps(rows), encoding="utf-8")
    assert harvest_source(harvested, "groundwater-levels").version == 2
    # The current version moved on: the copy held is stale, so the new body comes; version 1 still matches.
    fresh = await client.get(records, headers={"If-None-Match": held})
    assert (fresh.status_code, fresh.headers["x-dataset-version"]) == (200, "2") and fresh.headers["etag"] != held
    again = await client.get(f"{records}&version=1", headers={"If-None-Match": pinned.headers["etag"]})
    assert again.status_code == 304


def test_the_engine_keeps_resolved_versions_and_sees_a_new_one_at_once(harvested: Hub, feed_dir: Path) -> None:
    from sqlalchemy import event

    from catalogue.query.engine import QueryEngine
    from harvesters.runner import harvest_source

    engine, statements = QueryEngine(harvested), []

    def note(*args: Any) -> None:
        statements.append(args[2])

    event.listen(harvested.engine, "before_cursor_execute", note)
    try:
        first = engine.version("groundwater-levels")
        resolving = len(statements)
        assert engine.version("groundwater-levels") is first and engine.version("groundwater-levels", 1) is first
        # Kept: no ORM query at all (resolving a version and its identity are raw DBAPI queries, unseen here).
        assert len(statements) == resolving
        feed = feed_dir / "feeds" / "groundwater-levels.json"
        rows = json.loads(feed.read_text(encoding="utf-8"))
        rows[0]["level_m_nn"] = 9.99
        feed.write_text(json.dumps(rows), encoding="utf-8")
        assert harvest_source(harvested, "groundwater-levels").version == 2
        newer = engine.version("groundwater-levels")
        assert (newer.number, engine.version("groundwater-levels", 1)) == (2, first)
        assert newer.content_hash != first.content_hash and newer.uris != first.uris
    finally:
        event.remove(harvested.engine, "before_cursor_execute", note)
        engine.close()


async def test_identical_requests_in_flight_share_one_computation(demo_hub: Hub, monkeypatch: Any) -> None:
    import asyncio

    from api.routes import data

    runs = []
    real = data.run_records

    def counted(*args: Any, **kwargs: Any) -> Any:
        runs.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(data, "run_records", counted)
    url = f"{PARKING}/records?limit=9&order_by=free desc"
    app = create_app(demo_hub.settings, demo_hub)
    kept = app.state.kept_results
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as client, \
            serve(demo_hub, result_cache_mb=0) as (uncached, _):
        answers = await asyncio.gather(*(client.get(url) for _ in range(6)))
        assert len(runs) == 1 and sorted(r.headers["x-cache"] for r in answers) == ["hit"] * 5 + ["miss"]
        assert len({r.content for r in answers}) == 1 and answers[0].status_code == 200
        failing = await asyncio.gather(*(client.get(f"{PARKING}/records?where=nope > 1") for _ in range(3)))
        assert [r.status_code for r in failing] == [400] * 3
        runs.clear()
        await asyncio.gather(*(uncached.get(url) for _ in range(4)))  # the cache off: each request computes
        assert len(runs) == 4
    app.state.query_engine.close()
    app.state.sql_pool.close()
    assert not kept.in_flight
