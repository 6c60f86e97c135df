"""Pushes on a PostgreSQL catalogue: concurrent pushes on one base (advisory lock), Idempotency-Key claims racing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from catalogue.hub import Hub
from tests.api.push_support import bearer, push_hub, serving_api, token
from tests.conftest import pg_schema

CSV = {"Content-Type": "text/csv"}


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    with pg_schema("push") as database:
        with push_hub(tmp_path, **database) as hub:
            yield hub


@pytest.fixture
def api(hub: Hub) -> Iterator[str]:
    with serving_api(hub) as url:
        yield url


def _race(count: int, send: object) -> list[httpx.Response]:
    answers: list[httpx.Response] = []
    start = threading.Barrier(count)

    def run(i: int) -> None:
        start.wait()
        answers.append(send(i))  # type: ignore[operator]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_concurrent_pushes_on_one_base_one_wins_and_racing_keys_publish_once(hub: Hub, api: str) -> None:
    pusher = {**bearer(token(hub, "stadtwerke", "push")), **CSV}
    url = f"{api}/datasets/meters/deliveries"
    based = _race(3, lambda i: httpx.post(url, content=f"id,name,value\n1,Nord,{i + 10}\n".encode(),
                                          headers={**pusher, "If-Match": '"1"'}, timeout=60))
    assert sorted(a.status_code for a in based) == [201, 409, 409], [a.text for a in based]
    assert all(a.json()["error"]["details"]["current_version"] == 2 for a in based if a.status_code == 409)
    keyed = _race(3, lambda i: httpx.post(url, content=b"id,name,value\n1,Nord,99\n",
                                          headers={**pusher, "Idempotency-Key": "same-key"}, timeout=60))
    statuses = sorted(a.status_code for a in keyed)
    # One ingests; the others either get its answer again or are told it is still in progress.
    assert statuses.count(201) >= 1 and set(statuses) <= {201, 409}, [a.text for a in keyed]
    assert all(a.json()["error"]["code"] == "delivery-in-progress" for a in keyed if a.status_code == 409)
    replay = httpx.post(url, content=b"id,name,value\n1,Nord,99\n", headers={**pusher, "Idempotency-Key": "same-key"})
    assert (replay.status_code, replay.json()["version"]) == (201, 3)
    assert len(httpx.get(f"{api}/datasets/meters/versions").json()["results"]) == 3
