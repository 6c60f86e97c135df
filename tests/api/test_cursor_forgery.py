"""Only a cursor we issued is accepted: forged, mutated, replayed elsewhere, it is a 400 (issue 13, item 4)."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from tests.api.live_server import threaded_server
from catalogue.hub import Hub
from catalogue.query.cursors import PART_STRIDE, SECRET_FILE, cursor_scope, decode_cursor, encode_cursor
from catalogue.errors import InvalidParameter

RECORDS = "/api/v1/datasets/parking-occupancy/records"
INVALID = {"code": "invalid-parameter", "status": 400,
           "message": "The cursor is not valid; start again without 'cursor' and follow links.next.",
           "details": {"parameter": "cursor"}}


@pytest.fixture(scope="module")
def base_url(demo_hub: Hub) -> Iterator[str]:
    """The real app under uvicorn in a background thread, on a free loopback port."""
    app = create_app(demo_hub.settings, demo_hub)
    with threaded_server(app) as (host, port):
        yield f"http://{host}:{port}"
    app.state.query_engine.close()
    app.state.sql_pool.close()


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def issued(client: httpx.Client) -> dict[str, Any]:
    """A first page, the cursor it issued and the page that cursor leads to."""
    first = client.get(RECORDS, params={"limit": 7})
    assert first.status_code == 200
    version = first.json()["version"]
    cursor = dict(httpx.URL(first.json()["links"]["next"]).params)["cursor"]
    following = client.get(RECORDS, params={"limit": 7, "cursor": cursor, "version": version})
    assert following.status_code == 200
    by_offset = client.get(RECORDS, params={"limit": 7, "offset": 7, "version": version})
    assert following.json()["results"] == by_offset.json()["results"] != []
    return {"cursor": cursor, "version": version, "rows": following.json()["results"]}


def unsigned(payload: Any) -> str:
    """A cursor as the old code made them: base64 of JSON, no signature."""
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def refused(client: httpx.Client, cursor: str, version: int, **params: Any) -> None:
    response = client.get(RECORDS, params={"limit": 7, "cursor": cursor, "version": version, **params})
    assert response.status_code == 400, (cursor[:80], response.status_code, response.text[:300])
    error = response.json()["error"]
    if len(cursor) > 16_384:  # the API's bound on any parameter's length answers first
        assert (error["code"], error["details"]) == (INVALID["code"], INVALID["details"])
    else:
        assert error == INVALID


def test_forged_cursors_from_the_report_are_refused(client: httpx.Client, issued: dict[str, Any]) -> None:
    version = issued["version"]
    forged = [
        unsigned('{"v":%d,"k":1e400}' % version),
        unsigned('{"v":Infinity,"k":1}'),
        unsigned({"v": version, "k": -1}),
        unsigned({"v": version, "k": -PART_STRIDE}),  # a negative part index
        unsigned({"v": version, "k": 10 * PART_STRIDE}),  # a part past the end
        unsigned({"v": version, "k": 2**63}),
        unsigned({"v": version, "k": 8}),  # a real position, but not signed
        unsigned("[" * 20_000 + "]" * 20_000),
        unsigned("[" * 5_000 + "]" * 5_000) + "." + issued["cursor"].split(".")[1],
        unsigned({"v": version, "k": 7, "x": 1}),
        unsigned({"v": True, "k": 7}),
        issued["cursor"] + "A" * 5000,
        "." * 100, "....", "x.y", "🙂." + issued["cursor"].split(".")[1],
    ]
    for cursor in forged:
        refused(client, cursor, version)


def test_a_cursor_holds_only_where_it_was_issued(client: httpx.Client, issued: dict[str, Any]) -> None:
    cursor, version = issued["cursor"], issued["version"]
    refused(client, cursor, version, where="free > 10")  # another filter
    refused(client, cursor, version, refine="lot_id:P01")
    other = client.get("/api/v1/datasets/waste-bin-fill-levels/records",
                       params={"limit": 7, "cursor": cursor, "version": version})
    assert (other.status_code, other.json()) == (400, {"error": INVALID})  # another dataset
    if version > 1:
        refused(client, cursor, version - 1)
    # The same cursor where it was issued: the same rows again.
    again = client.get(RECORDS, params={"limit": 7, "cursor": cursor, "version": version})
    assert again.status_code == 200 and again.json()["results"] == issued["rows"]


MUTATIONS = st.one_of(
    st.tuples(st.just("replace"), st.integers(min_value=0), st.characters(codec="utf-8")),
    st.tuples(st.just("insert"), st.integers(min_value=0), st.text(min_size=1, max_size=5)),
    st.tuples(st.just("delete"), st.integers(min_value=0), st.integers(min_value=1, max_value=10)),
    st.tuples(st.just("append"), st.just(0), st.text(min_size=1, max_size=50)),
    st.tuples(st.just("truncate"), st.integers(min_value=0), st.just("")),
    st.tuples(st.just("swapcase"), st.integers(min_value=0), st.just("")),
)


def mutate(token: str, kind: str, where: int, what: Any) -> str:
    at = where % (len(token) + 1)
    if kind == "replace":
        return token[:at] + what + token[at + 1:]
    if kind == "insert":
        return token[:at] + what + token[at:]
    if kind == "delete":
        return token[:at] + token[at + what:]
    if kind == "append":
        return token + what
    if kind == "truncate":
        return token[:at]
    return token[:at] + token[at:at + 1].swapcase() + token[at + 1:]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(MUTATIONS, min_size=1, max_size=3))
def test_every_mutation_of_a_valid_cursor_is_refused(
    client: httpx.Client, issued: dict[str, Any], mutations: list[tuple[str, int, Any]]
) -> None:
    token = issued["cursor"]
    for mutation in mutations:
        token = mutate(token, *mutation)
    response = client.get(RECORDS, params={"limit": 7, "cursor": token, "version": issued["version"]})
    assert response.status_code < 500, response.text
    if token == issued["cursor"] or not token:  # no cursor at all is a first page
        assert response.status_code == 200
        return
    assert (response.status_code, response.json()) == (400, {"error": INVALID}), token


@settings(max_examples=200, deadline=None)
@given(version=st.integers(), key=st.integers(), scope=st.binary(max_size=20))
def test_only_the_signing_scope_and_secret_decode(version: int, key: int, scope: bytes) -> None:
    """Signed with another secret or scope, nothing decodes; signed right, every field is range-checked."""
    mine, theirs = b"s" * 32, b"t" * 32
    token = encode_cursor(version, key, scope=scope, secret=mine)
    for secret, bound in ((theirs, scope), (mine, scope + b"x")):
        with pytest.raises(InvalidParameter):
            decode_cursor(token, version=version, parts=3, scope=bound, secret=secret)
    if 0 <= key < 3 * PART_STRIDE:
        assert decode_cursor(token, version=version, parts=3, scope=scope, secret=mine) == key
    else:
        with pytest.raises(InvalidParameter):
            decode_cursor(token, version=version, parts=3, scope=scope, secret=mine)


def test_the_secret_is_made_once_private_and_shared_by_every_app(make_catalogue: Any, tmp_path: Path) -> None:
    import asyncio

    schema = {"fields": [{"name": "id", "type": "integer"}], "primaryKey": ["id"]}
    hub = make_catalogue("few", schema, ("id\n" + "".join(f"{i}\n" for i in range(30))).encode())
    secret_file = hub.settings.data_dir / SECRET_FILE

    async def page(params: dict[str, Any]) -> dict[str, Any]:
        app = create_app(hub.settings, hub)  # a fresh app each time, as another process would be
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as c:
                response = await c.get("/api/v1/datasets/few/records", params=params)
                assert response.status_code == 200, response.text
                return dict(response.json())
        finally:
            app.state.query_engine.close()
            app.state.sql_pool.close()

    first = asyncio.run(page({"limit": 10}))
    mode = stat.S_IMODE(os.stat(secret_file).st_mode)
    assert mode == 0o600 and len(bytes.fromhex(secret_file.read_text())) == 32
    made = secret_file.read_bytes()
    cursor = dict(httpx.URL(first["links"]["next"]).params)["cursor"]
    second = asyncio.run(page({"limit": 10, "cursor": cursor, "version": first["version"]}))
    assert [r["id"] for r in second["results"]] == list(range(10, 20))
    assert secret_file.read_bytes() == made
    scope = cursor_scope([], None, [], [])
    assert decode_cursor(encode_cursor(1, 0, scope=scope, secret=made), version=1, parts=1, scope=scope,
                         secret=made) == 0


def test_a_configured_secret_signs_cursors_on_every_server(demo_hub: Hub, tmp_path: Path) -> None:
    """Servers given one cursor_secret accept each other's cursors, whatever their data directories."""
    import asyncio

    from pydantic import SecretStr

    from catalogue.hub import open_hub
    from catalogue.query.cursors import settings_secret
    from catalogue.settings import Settings

    shared = "k" * 40
    elsewhere = Settings(data_dir=tmp_path / "elsewhere", cursor_secret=shared)
    assert settings_secret(elsewhere) == shared.encode() and not (tmp_path / "elsewhere" / SECRET_FILE).exists()
    assert settings_secret(demo_hub.settings) != shared.encode()  # the data directory's own, by default
    with pytest.raises(ValueError, match="at least 32"):
        Settings(data_dir=tmp_path, cursor_secret="short")
    configured = demo_hub.settings.model_copy(update={"cursor_secret": SecretStr(shared)})
    hubs = [open_hub(configured), open_hub(configured)]

    async def walk() -> None:
        apps = [create_app(h.settings, h) for h in (*hubs, demo_hub)]
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://hub.test") for a in apps]
        try:
            first = (await clients[0].get(RECORDS, params={"limit": 5})).json()
            cursor = dict(httpx.URL(first["links"]["next"]).params)["cursor"]
            params = {"limit": 5, "cursor": cursor, "version": first["version"]}
            assert (await clients[1].get(RECORDS, params=params)).status_code == 200
            refused_there = await clients[2].get(RECORDS, params=params)
            assert (refused_there.status_code, refused_there.json()) == (400, {"error": INVALID})
        finally:
            for client, app in zip(clients, apps):
                await client.aclose()
                app.state.query_engine.close()
                app.state.sql_pool.close()

    try:
        asyncio.run(walk())
    finally:
        for hub in hubs:
            hub.close()


def test_a_data_directory_that_cannot_hold_the_secret_still_pages(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No secret can be written: cursors hold in this process, and the log names the setting that fixes it."""
    from catalogue.query.cursors import PROCESS_SECRET, installation_secret

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # the data directory cannot be made below a file, even by root
    with caplog.at_level("WARNING", logger="urbandata.cursors"):
        assert installation_secret(blocker / "var") == PROCESS_SECRET
    assert "URBANDATA_CURSOR_SECRET" in caplog.text
