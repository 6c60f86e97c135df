"""An admin token sets up a new dataset through the API (checked like datasets/definitions), then pushes to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from catalogue.hub import Hub
from tests.api.push_support import LICENSE, bearer, push_hub, serving_api, token

DEFINITION = {
    "name": "charging-points", "title": "Ladesäulen", "description": "Ladesäulen der Stadtwerke.",
    "license": LICENSE, "keywords": ["Elektromobilität"], "update_frequency": "DAILY",
    "schema": {"fields": [{"name": "id", "type": "integer"}, {"name": "free", "type": "integer",
                                                                "constraints": {"minimum": 0}}],
               "primaryKey": ["id"]},
}


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    with push_hub(tmp_path) as hub:
        yield hub


@pytest.fixture
def api(hub: Hub) -> Iterator[str]:
    with serving_api(hub) as url:
        yield url


def test_an_admin_token_creates_a_dataset_that_then_takes_pushes(hub: Hub, api: str) -> None:
    admin = bearer(token(hub, "stadtwerke", "admin"))
    made = httpx.post(f"{api}/datasets", json=DEFINITION, headers=admin)
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["name"], body["publisher"]["name"], body["current_version"], body["private"]) == (
        "charging-points", "stadtwerke", None, False)
    assert body["primary_key"] == ["id"] and made.headers["Location"].endswith("/datasets/charging-points")
    assert httpx.get(f"{api}/datasets/charging-points").json()["title"] == "Ladesäulen"
    pusher = {**bearer(token(hub, "stadtwerke", "push")), "Content-Type": "text/csv"}
    first = httpx.post(f"{api}/datasets/charging-points/deliveries", content=b"id,free\n1,2\n2,0\n",
                       headers={**pusher, "If-Match": '"0"'})
    assert (first.status_code, first.json()["version"]) == (201, 1), first.text
    invalid = httpx.post(f"{api}/datasets/charging-points/deliveries", content=b"id,free\n1,-3\n", headers=pusher)
    assert invalid.status_code == 422 and invalid.json()["error"]["details"]["errors"][0]["field"] == "free"
    again = httpx.post(f"{api}/datasets", json=DEFINITION, headers=admin)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "dataset-exists")


def test_a_bad_definition_lists_every_problem_and_creates_nothing(hub: Hub, api: str) -> None:
    admin = bearer(token(hub, "stadtwerke", "admin"))
    bad = {**DEFINITION, "name": "Bad Name", "license": "http://example.org/mine",
           "schema": {"fields": [{"name": "id", "type": "integr"}]}, "colour": "red"}
    answer = httpx.post(f"{api}/datasets", json=bad, headers=admin)
    assert (answer.status_code, answer.json()["error"]["code"]) == (422, "invalid-definition")
    problems = " | ".join(answer.json()["error"]["details"]["problems"])
    for expected in ("name", "Unknown licence", "integr", "colour"):
        assert expected in problems, problems
    assert httpx.get(f"{api}/datasets/Bad Name").status_code == 404
    sourced = httpx.post(f"{api}/datasets", json={**DEFINITION, "schema": "schemas/x.json"}, headers=admin)
    assert sourced.status_code == 422 and "Table Schema itself" in sourced.text


def test_only_an_admin_token_of_the_publisher_creates_or_hides_its_datasets(hub: Hub, api: str) -> None:
    pusher = bearer(token(hub, "stadtwerke", "push"))
    refused = httpx.post(f"{api}/datasets", json=DEFINITION, headers=pusher)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "missing-scope")
    other = bearer(token(hub, "testamt", "admin"))
    foreign = httpx.post(f"{api}/datasets", json={**DEFINITION, "publisher": "stadtwerke"}, headers=other)
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (403, "wrong-publisher")
    assert httpx.patch(f"{api}/datasets/meters", json={"private": True}, headers=other).status_code == 403
    admin = bearer(token(hub, "stadtwerke", "admin"))
    hidden = httpx.patch(f"{api}/datasets/meters", json={"private": True}, headers=admin)
    assert (hidden.status_code, hidden.json()["private"]) == (200, True), hidden.text
    assert httpx.get(f"{api}/datasets/meters").status_code == 404
    reader = bearer(token(hub, "stadtwerke", "read-private"))
    assert httpx.get(f"{api}/datasets/meters", headers=reader).status_code == 200
    private_new = httpx.post(f"{api}/datasets", json={**DEFINITION, "name": "hidden-points", "private": True},
                             headers=admin)
    assert private_new.status_code == 201 and httpx.get(f"{api}/datasets/hidden-points").status_code == 404
