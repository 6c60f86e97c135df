"""A private dataset exists only for its publisher's read-private tokens: every route of the OpenAPI document,
listings and counts, SQL and the static site; to anyone else it is exactly a dataset that does not exist."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from catalogue.hub import Hub
from catalogue.meta.models import Dataset
from catalogue.sitegen.builder import build_site
from tests.api.push_support import bearer, push_hub, serving, token

SECRET, MISSING = "secret-meters", "no-such-dataset"
# Values for path and required query parameters of the dataset routes (a new required one must be added here).
VALUES = {"number": "1", "job_id": "1", "fmt": "csv", "file_name": "x.parquet", "identifier": "1", "from": "1", "extension": "jsonld"}
# Routes without a dataset in their path, and what the walk does with them: each is checked below.
NOT_DATASET_ROUTES = {
    "/api/v1/datasets", "/api/v1/publishers", "/api/v1/publishers/{name}", "/api/v1/sql", "/api/v1/tokens",
    "/api/v1/tokens/{token_id}", "/health", "/api/action/{name}", "/api/3/action/{name}",
    "/datastore/dump/{resource_id}", "/ogc", "/ogc/conformance", "/ogc/collections", "/ogc/collections/{name}",
    "/ogc/collections/{name}/items", "/ogc/collections/{name}/items/{identifier}", "/catalog.{extension}",
    "/api/v1/harvest/jobs", "/ready", "/metrics",
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with push_hub(tmp_path_factory.mktemp("private")) as hub:
        yield hub


@pytest.fixture(scope="module")
def base(hub: Hub) -> Iterator[str]:
    with serving(hub) as url:
        owner = bearer(token(hub, "stadtwerke", "push"))
        pushed = httpx.post(f"{url}/api/v1/datasets/{SECRET}/deliveries", content=b"id,name,value\n7,Geheim,8.5\n",
                            headers={**owner, "Content-Type": "text/csv"})
        assert pushed.status_code == 201 and pushed.json()["delivery"] == 1, pushed.text  # job 1 is the secret's
        yield url


@pytest.fixture(scope="module")
def owner(hub: Hub) -> dict[str, str]:
    return bearer(token(hub, "stadtwerke", "read-private", "push"))


@pytest.fixture(scope="module")
def strangers(hub: Hub) -> list[dict[str, str]]:
    """Everyone else: anonymous, another publisher's read-private token, the owner's token without read-private
    (the last, which may still deliver to its publisher's dataset, comes last: writes skip it)."""
    return [{}, bearer(token(hub, "testamt", "read-private", "push", "admin")), bearer(token(hub, "stadtwerke", "push"))]


def _dataset_requests(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """(method, path template, required query) of every operation with a dataset in its path."""
    found = []
    for path, operations in spec["paths"].items():
        if path in NOT_DATASET_ROUTES or path.startswith("/ogc/"):  # OGC API: public only (compared below)
            continue
        assert "/datasets/{name}" in path, f"{path}: a new route; say here how private datasets stay hidden on it"
        for method, operation in operations.items():
            query = {}
            for parameter in operation.get("parameters", []):
                if parameter["name"] != "name" and parameter.get("required"):
                    assert parameter["name"] in VALUES, f"{method} {path}: give a value for {parameter['name']}"
                    if parameter["in"] == "query":
                        query[parameter["name"]] = VALUES[parameter["name"]]
            found.append((method.upper(), path, query))
    return found


def _call(base: str, method: str, template: str, name: str, query: dict[str, str],
          headers: dict[str, str]) -> tuple[int, str]:
    path = re.sub(r"\{(\w+)\}", lambda m: name if m.group(1) == "name" else VALUES[m.group(1)], template)
    with httpx.stream(method, f"{base}{path}", params=query, headers={**headers, "Content-Type": "text/csv"},
                      content=b"id,name,value\n1,X,1\n" if method == "POST" else None, timeout=30) as answer:
        if "text/event-stream" in answer.headers.get("content-type", ""):
            return answer.status_code, ""  # a live stream: its status says enough
        return answer.status_code, answer.read().decode(errors="replace")


def test_every_dataset_route_of_the_openapi_document_hides_a_private_dataset(
    base: str, owner: dict[str, str], strangers: list[dict[str, str]]
) -> None:
    spec = httpx.get(f"{base}/openapi.json").json()
    requests = _dataset_requests(spec)
    assert len(requests) >= 15 and ("POST", "/api/v1/datasets/{name}/deliveries", {}) in requests
    for method, template, query in requests:
        for headers in strangers if method in ("GET", "HEAD") else strangers[:-1]:
            status, body = _call(base, method, template, SECRET, query, headers)
            missing_status, missing_body = _call(base, method, template, MISSING, query, headers)
            assert (status, body.replace(SECRET, "?")) == (missing_status, missing_body.replace(MISSING, "?")), \
                f"{method} {template} tells a private dataset from a missing one"
            assert status == 404 and '"dataset-not-found"' in body, f"{method} {template}: {status} {body[:200]}"
        status, body = _call(base, method, template, SECRET, query, owner)
        assert '"dataset-not-found"' not in body, f"{method} {template} hides the dataset from its publisher"


def _names(answer: httpx.Response) -> set[str]:
    return {d["name"] for d in answer.json()["results"]}


def test_listings_search_counts_and_publishers_show_it_to_its_publisher_only(
    base: str, owner: dict[str, str], strangers: list[dict[str, str]]
) -> None:
    api = f"{base}/api/v1"
    for headers in strangers:
        listed = httpx.get(f"{api}/datasets", headers=headers)
        assert SECRET not in _names(listed) and listed.json()["total_count"] == 3
        searched = httpx.get(f"{api}/datasets", params={"q": "Zähler"}, headers=headers)
        assert SECRET not in _names(searched) and searched.json()["total_count"] == 3
        counts = {p["name"]: p["dataset_count"] for p in httpx.get(f"{api}/publishers", headers=headers).json()["results"]}
        assert counts == {"stadtwerke": 2, "testamt": 1}
        assert SECRET not in httpx.get(f"{api}/publishers/stadtwerke", headers=headers).json()["datasets"]
        assert httpx.get(f"{base}/health", headers=headers).json()["datasets"] == 3
        for action in ("package_list", "package_search", "current_package_list_with_resources"):
            assert SECRET not in httpx.get(f"{base}/api/3/action/{action}", headers=headers).text
        shown = httpx.get(f"{base}/api/3/action/package_show", params={"id": SECRET}, headers=headers)
        assert shown.status_code == 404
        assert SECRET not in httpx.get(f"{base}/catalog.ttl", headers=headers).text  # the DCAT catalogue feed
        assert SECRET not in httpx.get(f"{api}/harvest/jobs", headers=headers).text
        assert SECRET not in httpx.get(f"{base}/ogc/collections", headers=headers).text
        for path in ("/ogc/collections/{}", "/ogc/collections/{}/items", "/ogc/collections/{}/items/7",
                     "/ogc/collections/{}/queryables"):
            hidden, missing = (httpx.get(base + path.format(n), headers=headers) for n in (SECRET, MISSING))
            assert (hidden.status_code, hidden.text.replace(SECRET, "?")) == (404, missing.text.replace(MISSING, "?"))
    assert SECRET in _names(httpx.get(f"{api}/datasets", headers=owner))
    assert SECRET in _names(httpx.get(f"{api}/datasets", params={"q": "Zähler"}, headers=owner))
    counts = {p["name"]: p["dataset_count"] for p in httpx.get(f"{api}/publishers", headers=owner).json()["results"]}
    assert counts == {"stadtwerke": 3, "testamt": 1}
    assert SECRET in httpx.get(f"{api}/publishers/stadtwerke", headers=owner).json()["datasets"]
    assert SECRET in httpx.get(f"{api}/harvest/jobs", headers=owner).text


def test_sql_knows_a_private_dataset_only_as_its_publisher(base: str, owner: dict[str, str],
                                                           strangers: list[dict[str, str]]) -> None:
    def ask(name: str, headers: dict[str, str]) -> httpx.Response:
        return httpx.get(f"{base}/api/v1/sql", params={"sql": f'SELECT count(*) AS n FROM "{name}"'}, headers=headers)

    for headers in strangers:
        hidden, missing = ask(SECRET, headers), ask(MISSING, headers)
        assert hidden.status_code == missing.status_code == 400
        assert hidden.text.replace(SECRET, "?") == missing.text.replace(MISSING, "?")
        assert hidden.json()["error"]["code"] == "sql-unknown-table"
        assert ask("secret_meters", headers).json()["error"]["code"] == "sql-unknown-table"  # nor its alias
    seen = ask(SECRET, owner)
    assert (seen.status_code, seen.json()["rows"]) == (200, [[1]]), seen.text


def _site_text(site: Path) -> str:
    """Every built file's name and text (binary files decoded leniently: names inside zips show)."""
    files = [p for p in site.rglob("*") if p.is_file() and "vendor" not in p.parts]
    return "\n".join([str(p.relative_to(site)) for p in files]
                     + [p.read_text(errors="replace") for p in files if p.stat().st_size < 5_000_000])


def test_the_static_site_never_holds_a_private_dataset(hub: Hub) -> None:
    build_site(hub)
    text = _site_text(hub.settings.site_dir)
    assert "meters" in text and SECRET not in text and "Geheim" not in text
    with hub.sessions.begin() as session:  # the same dataset made public is built: the check above can fail
        session.execute(update(Dataset).where(Dataset.name == SECRET).values(private=False))
    try:
        build_site(hub)
        assert SECRET in _site_text(hub.settings.site_dir)
    finally:
        with hub.sessions.begin() as session:
            session.execute(update(Dataset).where(Dataset.name == SECRET).values(private=True))
        build_site(hub)
    assert SECRET not in _site_text(hub.settings.site_dir)


def test_an_answer_to_a_token_is_never_kept_by_a_shared_cache(base: str, owner: dict[str, str]) -> None:
    api = f"{base}/api/v1"
    for path in (f"/datasets/{SECRET}/records", "/datasets", "/datasets/meters/records?version=1"):
        assert httpx.get(f"{api}{path}", headers=owner).headers["Cache-Control"] == "private, no-cache"
    assert httpx.get(f"{api}/datasets/meters/records?version=1").headers["Cache-Control"].startswith("public")


def _vary(answer: httpx.Response) -> set[str]:
    return {v.strip().lower() for line in answer.headers.get_list("vary") for v in line.split(",")}


def test_every_route_of_the_openapi_document_varies_with_authorization(base: str, owner: dict[str, str]) -> None:
    """A shared cache keys every answer on Authorization: each operation, anonymous and with a token (a bogus one
    for writes, which change nothing then), says ``Vary: Authorization``; an answer to a token is private."""
    spec = httpx.get(f"{base}/openapi.json").json()
    walked = 0
    for template, operations in spec["paths"].items():
        path = re.sub(r"\{(\w+)\}", lambda m: SECRET if m.group(1) == "name" else VALUES.get(m.group(1), "1"), template)
        for method, operation in operations.items():
            query = {p["name"]: VALUES.get(p["name"], "1") for p in operation.get("parameters", [])
                     if p["in"] == "query" and p.get("required")}
            reads = method.upper() in ("GET", "HEAD")
            for headers in ({}, owner if reads else {"Authorization": "Bearer udt_not-a-token"}):
                with httpx.stream(method.upper(), f"{base}{path}", params=query, headers=headers, timeout=30,
                                  content=None if reads else b"") as answer:
                    assert "authorization" in _vary(answer), f"{method} {template} ({answer.status_code}): " \
                        f"Vary is {answer.headers.get_list('vary')}"
                    if headers:
                        assert answer.headers["cache-control"] == "private, no-cache", f"{method} {template}"
                walked += 1
    assert walked >= 2 * 30  # 37 operations when written


def test_vary_keeps_the_values_of_the_route_and_of_cors(base: str) -> None:
    """Content negotiation's Accept and a listed origin's Origin stay beside Authorization (none is dropped)."""
    negotiated = httpx.get(f"{base}/api/v1/datasets/meters", headers={"Accept": "text/turtle"})
    assert negotiated.status_code == 200 and _vary(negotiated) == {"accept", "authorization"}
