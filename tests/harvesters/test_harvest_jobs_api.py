"""``GET /api/v1/harvest/jobs``: every run with its outcome, filtered and paged; no credential is ever shown.

A real source on a loopback port is harvested (published, unchanged, quarantined, failed); the API runs in
process on that catalogue.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app
from catalogue.hub import Hub
from catalogue.meta.models import HarvestSource
from harvesters.runner import harvest_source

pytestmark = pytest.mark.anyio

NAME = "pegel"
SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "stand", "type": "number"}], "primaryKey": ["id"]}
SECRET = "s3cr3t-token"


@pytest.fixture
def harvested(file_server: Any, source_catalogue: Callable[..., Hub]) -> tuple[Hub, list[Any]]:
    """Four runs of one source: published, unchanged, quarantined, failed (the last from a URL with credentials)."""
    server, files = file_server
    url = server.url.replace("http://", "http://amt:geheim@") + f"p.csv?access_token={SECRET}&stand=1"
    hub = source_catalogue(NAME, SCHEMA, {"type": "http-file", "url": url, "format": "csv"})
    outcomes = []
    files["p.csv"] = b"id,stand\n1,2.5\n2,3.0\n"
    outcomes.append(harvest_source(hub, NAME))
    outcomes.append(harvest_source(hub, NAME))
    files["p.csv"] = b"id,stand\n1,hoch\n"
    outcomes.append(harvest_source(hub, NAME))
    del files["p.csv"]
    outcomes.append(harvest_source(hub, NAME))
    assert [o.status for o in outcomes] == ["published", "unchanged", "quarantined", "failed"]
    return hub, outcomes


@pytest.fixture
async def api(harvested: tuple[Hub, list[Any]]) -> AsyncIterator[httpx.AsyncClient]:
    hub = harvested[0]
    app = create_app(hub.settings, hub)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as client:
        yield client
    app.state.query_engine.close()
    app.state.sql_pool.close()


async def test_jobs_are_listed_newest_first_with_outcome_timings_rows_and_errors(
        api: httpx.AsyncClient, harvested: tuple[Hub, list[Any]]) -> None:
    hub, outcomes = harvested
    answer = await api.get("/api/v1/harvest/jobs")
    assert answer.status_code == 200
    body = answer.json()
    assert (body["total_count"], body["limit"], body["offset"]) == (4, 50, 0)
    jobs = body["results"]
    assert [j["id"] for j in jobs] == [o.job_id for o in reversed(outcomes)]
    assert [(j["status"], j["dataset"], j["source"]) for j in jobs] == [
        ("failed", NAME, NAME), ("quarantined", NAME, NAME), ("unchanged", NAME, NAME), ("published", NAME, NAME)]
    published = jobs[3]
    assert (published["version"], published["rows"], published["rows_added"], published["rows_changed"],
            published["rows_removed"], published["errors"]) == (1, 2, 2, 0, 0, [])
    assert published["bytes_received"] == len(b"id,stand\n1,2.5\n2,3.0\n")
    assert published["duration_s"] >= 0 and published["finished_at"] >= published["started_at"]
    quarantined = jobs[1]
    assert quarantined["has_report"] is True
    assert [{k: e[k] for k in ("type", "row", "field", "cell")} for e in quarantined["errors"]] == [
        {"type": "type-error", "row": 2, "field": "stand", "cell": "hoch"}]
    failed = jobs[0]
    assert (failed["error_code"], failed["errors"][0]["type"]) == ("source-unreachable", "source-unreachable")
    assert "answered HTTP 404" in failed["message"]


async def test_no_credential_of_the_source_url_is_shown_anywhere(api: httpx.AsyncClient) -> None:
    shown = [(await api.get(path)).text for path in (
        "/api/v1/harvest/jobs", f"/api/v1/datasets/{NAME}/deliveries", f"/api/v1/datasets/{NAME}/versions",
        f"/api/v1/datasets/{NAME}/versions/1")]
    for text in shown:
        assert SECRET not in text and "geheim" not in text
    assert "access_token=***&stand=1" in shown[0] and "http://***@127.0.0.1:" in shown[0]
    assert "access_token=***" in shown[2]  # the version's provenance names its source, redacted


@pytest.mark.parametrize("query, statuses", [
    ("status=failed", ["failed"]),
    ("status=published", ["published"]),
    (f"dataset={NAME}&status=unchanged", ["unchanged"]),
    ("dataset=other", []),
])
async def test_jobs_are_filtered_by_status_and_dataset(api: httpx.AsyncClient, query: str, statuses: list[str]) -> None:
    body = (await api.get(f"/api/v1/harvest/jobs?{query}")).json()
    assert ([j["status"] for j in body["results"]], body["total_count"]) == (statuses, len(statuses))


async def test_jobs_are_paged_with_links(api: httpx.AsyncClient, harvested: tuple[Hub, list[Any]]) -> None:
    public = harvested[0].settings.public_url.rstrip("/")
    first = await api.get("/api/v1/harvest/jobs?limit=3")
    assert [j["status"] for j in first.json()["results"]] == ["failed", "quarantined", "unchanged"]
    assert first.headers["Link"] == f'<{public}/api/v1/harvest/jobs?limit=3&offset=3>; rel="next"'
    second = await api.get("/api/v1/harvest/jobs?limit=3&offset=3")
    assert [j["status"] for j in second.json()["results"]] == ["published"]
    assert second.headers["Link"] == f'<{public}/api/v1/harvest/jobs?limit=3&offset=0>; rel="prev"'


async def test_an_unknown_status_is_a_400_naming_the_statuses(api: httpx.AsyncClient) -> None:
    answer = await api.get("/api/v1/harvest/jobs?status=done")
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid-parameter"
    assert error["details"] == {"parameter": "status",
                                "statuses": ["queued", "running", "published", "unchanged", "quarantined", "failed",
                                             "withdrawn", "finished"]}


def test_the_source_keeps_its_url_with_credentials_for_harvesting(harvested: tuple[Hub, list[Any]]) -> None:
    hub = harvested[0]
    with hub.sessions() as session:
        assert SECRET in session.scalar(select(HarvestSource.url).where(HarvestSource.name == NAME))
