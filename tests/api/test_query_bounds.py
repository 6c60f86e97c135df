"""Deeply nested ODSQL on every route that reads it: a 400 naming the parameter, and the connection lives on.

Issue 13, item 2: 50 nested parentheses in ``where`` or 40 ``abs(`` in
``select`` used to end in a RecursionError (500), and on a kept-alive
connection the next request was reset.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from api.app import create_app
from catalogue.hub import Hub
from catalogue.query.odsql import MAX_NESTING

DATASET = "/api/v1/datasets/parking-occupancy"
ROUTES = [f"{DATASET}/records", f"{DATASET}/facets", f"{DATASET}/exports/csv", f"{DATASET}/exports/xlsx"]


def deep(parameter: str, depth: int) -> str:
    """A value of ``parameter`` nested ``depth`` levels deep."""
    if parameter == "where":
        return "(" * depth + "free > 1" + ")" * depth
    if parameter == "where-not":
        return "not " * depth + "free > 1"
    if parameter in ("refine", "exclude"):  # values, never parsed: the depth must not matter
        return "lot_id:" + "(" * depth + "P01" + ")" * depth
    return "abs(" * depth + "free" + ")" * depth  # select, group_by, order_by


@pytest.fixture(scope="module")
def server(demo_hub: Hub) -> Iterator[tuple[str, int]]:
    """The real app under uvicorn in a background thread, on a free loopback port: (host, port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    app = create_app(demo_hub.settings, demo_hub)
    runner = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_keep_alive=60))
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not runner.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start within 30 s"
        time.sleep(0.05)
    yield "127.0.0.1", sock.getsockname()[1]
    runner.should_exit = True
    thread.join(timeout=30)
    sock.close()
    app.state.query_engine.close()
    app.state.sql_pool.close()


def get(connection: http.client.HTTPConnection, path: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """One GET on ``connection``, which must still be the same socket afterwards (kept alive, not reset)."""
    from urllib.parse import urlencode

    before = connection.sock
    connection.request("GET", f"{path}?{urlencode(params)}" if params else path)
    response = connection.getresponse()
    body = response.read()
    assert before is None or connection.sock is before, "the server closed the kept-alive connection"
    assert response.getheader("connection", "").lower() != "close"
    if response.getheader("content-type", "").startswith("application/json") and response.status >= 400:
        return response.status, json.loads(body)
    return response.status, {}


@pytest.mark.parametrize("route", ROUTES)
def test_every_parameter_at_every_depth_on_one_connection(server: tuple[str, int], route: str) -> None:
    connection = http.client.HTTPConnection(*server, timeout=60)
    try:
        for parameter in ("select", "where", "where-not", "group_by", "order_by", "refine", "exclude"):
            name = parameter.split("-")[0]
            for depth in (2, MAX_NESTING + 1, 40, 50, 100, 1000):
                params = {name: deep(parameter, depth)}
                if name == "group_by":
                    params["select"] = "count(*) as n"
                status, body = get(connection, route, params)
                assert status < 500, (route, parameter, depth, body)
                if name in ("refine", "exclude") or depth <= MAX_NESTING:
                    # refine/exclude values are bound, never parsed; shallow clauses either work or fail
                    # for their own reasons (abs() of a group, facets without select) but not for depth
                    if status == 400:
                        assert "nested" not in body["error"]["message"], body
                    continue
                error = body["error"]
                if route.endswith("/facets") and name in ("select", "group_by", "order_by"):
                    continue  # facets read only the filters; the others are ignored or refused by name
                assert (status, error["code"], error["details"]["parameter"]) == (400, "invalid-query", name), body
                assert f"at most {MAX_NESTING}" in error["message"] or "characters long" in error["message"], body
            # The same connection still answers a plain request.
            assert get(connection, f"{DATASET}/records", {"limit": "1"})[0] == 200
    finally:
        connection.close()
