"""Per-client rate limiting (issue 12): RateLimit-* headers, 429 + Retry-After in the JSON envelope, off by default."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.ratelimit import TokenBuckets
from catalogue.hub import Hub

pytestmark = pytest.mark.anyio

ROUTE = "/api/v1/datasets"


@asynccontextmanager
async def serving(hub: Hub, **settings: Any) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """The app on ``hub`` with ``settings``; yields a factory of clients, each from its own address."""
    app = create_app(hub.settings.model_copy(update=settings), hub)
    clients: list[httpx.AsyncClient] = []

    def client(address: str = "198.51.100.7") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        clients.append(httpx.AsyncClient(transport=transport, base_url="http://hub.test"))
        return clients[-1]

    try:
        yield client
    finally:
        for c in clients:
            await c.aclose()
        app.state.query_engine.close()
        app.state.sql_pool.close()


def limit_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("ratelimit-") or k == "retry-after"}


async def test_over_the_limit_is_429_with_retry_after_in_the_envelope(demo_hub: Hub) -> None:
    async with serving(demo_hub, rate_limit_per_minute=3) as client:
        api = client()
        answers = [await api.get(ROUTE) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert [r.headers["ratelimit-remaining"] for r in answers] == ["2", "1", "0", "0"]
    assert {r.headers["ratelimit-limit"] for r in answers} == {"3"}
    assert {r.headers["ratelimit-policy"] for r in answers} == {"3;w=60"}
    refused = answers[3]
    wait = int(refused.headers["retry-after"])
    assert 1 <= wait <= 20  # one token comes back every 20 s at 3 a minute
    assert refused.json() == {"error": {
        "code": "rate-limited", "status": 429,
        "message": f"Too many requests from this client: at most 3 a minute. Try again in {wait} s.",
        "details": {"retry_after_s": wait},
    }}
    assert 40 < int(refused.headers["ratelimit-reset"]) <= 60  # until all three are back
    assert refused.headers["content-type"] == "application/json"
    assert refused.headers["x-content-type-options"] == "nosniff"  # the HTTP rules still apply to a 429


async def test_under_the_limit_answers_carry_the_headers(demo_hub: Hub) -> None:
    async with serving(demo_hub, rate_limit_per_minute=100) as client:
        response = await client().get(ROUTE)
        site = await client("198.51.100.8").get("/")
    assert response.status_code == 200
    assert limit_headers(response) == {"ratelimit-limit": "100", "ratelimit-remaining": "99",
                                       "ratelimit-reset": "1", "ratelimit-policy": "100;w=60"}
    assert site.status_code == 200 and site.headers["ratelimit-remaining"] == "99"


async def test_each_client_has_its_own_bucket_and_health_is_never_limited(demo_hub: Hub) -> None:
    async with serving(demo_hub, rate_limit_per_minute=1) as client:
        first, second = client("198.51.100.1"), client("198.51.100.2")
        assert [(await first.get(ROUTE)).status_code, (await first.get(ROUTE)).status_code] == [200, 429]
        assert (await second.get(ROUTE)).status_code == 200
        health = [await first.get("/health") for _ in range(3)]
    assert [h.status_code for h in health] == [200, 200, 200]
    assert limit_headers(health[0]) == {}


async def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(demo_hub: Hub) -> None:
    async with serving(demo_hub, rate_limit_per_minute=1) as client:
        api = client("198.51.100.9")  # not a trusted proxy: its forwarded-for header is no reason to count anew
        codes = [(await api.get(ROUTE, headers={"X-Forwarded-For": f"203.0.113.{i}"})).status_code for i in range(2)]
    assert codes == [200, 429]
    async with serving(demo_hub, rate_limit_per_minute=1, rate_limit_trusted_proxies=["10.0.0.0/8"]) as client:
        proxy = client("10.0.0.5")
        seen = [(await proxy.get(ROUTE, headers={"X-Forwarded-For": f"1.1.1.1, 203.0.113.{i}, 10.0.0.4"})).status_code
                for i in (1, 2, 1)]
    # The client is the right-most address no trusted proxy added; the left-most one a client may forge.
    assert seen == [200, 200, 429]


async def test_off_by_default_no_headers(demo_hub: Hub) -> None:
    assert demo_hub.settings.rate_limit_per_minute == 0
    async with serving(demo_hub) as client:
        api = client()
        answers = [await api.get(ROUTE) for _ in range(5)]
    assert [r.status_code for r in answers] == [200] * 5
    assert [limit_headers(r) for r in answers] == [{}] * 5


def test_the_bucket_refills_at_the_configured_rate() -> None:
    now = [1000.0]
    buckets = TokenBuckets(3, clock=lambda: now[0])
    assert [buckets.take("a").allowed for _ in range(4)] == [True, True, True, False]
    refused = buckets.take("a")
    assert (refused.allowed, refused.remaining, refused.retry_after_s, refused.reset_s) == (False, 0, 20, 60)
    now[0] += 20  # one token back
    assert [buckets.take("a").allowed for _ in range(2)] == [True, False]
    now[0] += 600  # never more than the burst
    assert [buckets.take("a").allowed for _ in range(4)] == [True, True, True, False]


def test_buckets_kept_are_bounded() -> None:
    buckets = TokenBuckets(1, clock=lambda: 0.0, max_clients=2)
    for key in ("a", "b", "c"):
        assert buckets.take(key).allowed
    assert list(buckets.buckets) == ["b", "c"]  # the least recently seen client was let go
    assert not buckets.take("c").allowed
