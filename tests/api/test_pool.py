"""The database pool under pressure (issue 12, defect 2).

Before the fix, 16 downloads that the client stopped reading each held a pooled connection until their
response was sent (the pool holds 5 + 10), the version lookup of /records then waited for the pool on
the event loop, and /health and /records answered 500 after 30 s. Now no route holds a connection
while its response is sent, /health and the version lookup never use the pool, and a request that finds
the pool exhausted answers 503 database-busy with Retry-After at once.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection

from api.app import create_app
from catalogue.hub import Hub, open_hub
from catalogue.meta.db import POOL_TIMEOUT_S
from tests.api.live_server import generated_catalogue, live_server
from tests.conftest import pg_schema

GENERATED = "/api/v1/datasets/generated"
pytestmark = pytest.mark.anyio
BOUND_S = 10  # an upper bound, well above any answer here and far below the old 30-second pool wait


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("pool")
    with live_server(generated_catalogue(root, 100_000), root / "server.log") as url:
        yield url


def stalled_download(url: str, path: str) -> socket.socket:
    """A download whose client reads the status line and then nothing more (a tiny receive window)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(BOUND_S)
    sock.connect((host, int(port)))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: hub.test\r\n\r\n".encode())
    assert sock.recv(12) == b"HTTP/1.1 200"  # the route has returned; its body is being sent
    return sock


def test_sixteen_unread_downloads_leave_health_and_records_answering(server: str) -> None:
    paths = [f"{GENERATED}/exports/csv", f"{GENERATED}/exports/ndjson", f"{GENERATED}/diff?from=1&format=csv",
             f"{GENERATED}/versions/1/datapackage.json"]
    stalled = [stalled_download(server, f"{GENERATED}/exports/csv?where=id%20%3E%20{i}") for i in range(16)]
    try:
        with httpx.Client(base_url=server, timeout=BOUND_S) as client:
            answers = {path: client.get(path) for path in [
                "/health", f"{GENERATED}/records?limit=2&select=id", f"{GENERATED}/records?where=id = 7&select=id",
                "/api/v1/datasets?limit=1", f"{GENERATED}/versions", f"{GENERATED}/facets?facet=district",
                *paths[2:]]}
        assert {path: r.status_code for path, r in answers.items()} == dict.fromkeys(answers, 200)
        assert answers["/health"].json() == {"status": "ok", "datasets": 1}
        assert [r["id"] for r in answers[f"{GENERATED}/records?where=id = 7&select=id"].json()["results"]] == [7]
        # 16 more unread downloads of other kinds, each holding no connection either.
        stalled += [stalled_download(server, paths[i % 2]) for i in range(16)]
        assert httpx.get(f"{server}{GENERATED}/records?limit=1&select=id&order_by=id desc", timeout=BOUND_S).json()[
            "results"] == [{"id": 99_999}]
    finally:
        for sock in stalled:
            sock.close()


@pytest.fixture
async def exhausted(demo_hub: Hub) -> AsyncIterator[tuple[httpx.AsyncClient, list[Connection]]]:
    """The app on its own hub (its own pool), and a way to take every pooled connection."""
    hub = open_hub(demo_hub.settings)
    app = create_app(hub.settings, hub)
    taken: list[Connection] = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as client:
        yield client, taken
    for connection in taken:
        connection.close()
    app.state.query_engine.close()
    app.state.sql_pool.close()
    hub.close()


async def test_an_exhausted_pool_answers_503_with_retry_after(
        exhausted: tuple[httpx.AsyncClient, list[Connection]]) -> None:
    client, taken = exhausted
    records = "/api/v1/datasets/parking-occupancy/records?limit=3"
    assert (await client.get(records)).status_code == 200  # computed once, so the next one is kept
    hub: Hub = client._transport.app.state.hub  # type: ignore[attr-defined]
    pool: Any = hub.engine.pool
    taken += [hub.engine.connect() for _ in range(pool.size() + pool._max_overflow)]
    busy = await client.get("/api/v1/datasets")
    assert (busy.status_code, busy.headers["retry-after"], busy.json()) == (503, "1", {"error": {
        "code": "database-busy", "status": 503,
        "message": "The catalogue database is busy with other requests; try again in a moment."}})
    # The health check needs no pooled connection; on SQLite a kept records page neither (the version's
    # identity is read on the loop's own connection), on a database server it waits for the pool like any read.
    assert (await client.get("/health")).json() == {"status": "ok", "datasets": 6}
    kept = await client.get(records)
    if hub.engine.dialect.name == "sqlite":
        assert (kept.status_code, kept.headers.get("x-cache")) == (200, "hit"), kept.text
    else:
        assert (kept.status_code, kept.headers.get("retry-after")) == (503, "1"), kept.text
    for connection in taken:
        connection.close()
    taken.clear()
    assert (await client.get("/api/v1/datasets")).status_code == 200
    assert POOL_TIMEOUT_S <= 5  # a waiting request gives up quickly (SQLAlchemy's default was 30 s)


@pytest.fixture(params=["sqlite", "postgresql"])
def pool_hub(request: pytest.FixtureRequest, make_catalogue: Any) -> Iterator[Hub]:
    """A one-dataset catalogue on SQLite, or in a throwaway schema of the machine's PostgreSQL."""
    schema_doc = {"fields": [{"name": "id", "type": "integer"}], "primaryKey": ["id"]}
    if request.param == "sqlite":
        yield make_catalogue("ids", schema_doc, b"id\n1\n2\n")
        return
    with pg_schema("pool") as overrides:
        yield make_catalogue("ids", schema_doc, b"id\n1\n2\n", **overrides)


async def test_loop_reads_answer_as_the_pool_does_and_health_without_it(pool_hub: Hub) -> None:
    from catalogue.meta.loop_reads import LoopReads
    from catalogue.meta.metadata import get_version_identity

    reads = LoopReads(pool_hub.engine)
    try:
        expected = get_version_identity(pool_hub.engine, "ids")
        assert expected is not None and expected[0] == 1
        assert await reads.identity("ids", None) == await reads.identity("ids", 1) == expected
        assert await reads.identity("ids", 2) is None and await reads.identity("nope", None) is None
        pool: Any = pool_hub.engine.pool
        taken = [pool_hub.engine.connect() for _ in range(pool.size() + pool._max_overflow)]
        try:
            assert await reads.dataset_count() == 1  # the health check needs no pooled connection
        finally:
            for connection in taken:
                connection.close()
    finally:
        reads.close()
