"""A catalogue harvest is one job: counts, failures by source record, its datasets' jobs linked, shown everywhere.

Real CKAN and DCAT endpoints on loopback (tests/harvesters/catalogue_server.py); the jobs are read
from the catalogue database, from ``GET /api/v1/harvest/jobs`` (the app in process) and from the
built harvest status page.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from catalogue.hub import Hub, open_hub
from catalogue.ingest.gc import collect
from catalogue.meta.models import HarvestJob
from catalogue.settings import Settings
from catalogue.sitegen.builder import build_site
from harvesters.catalogue_sources import CatalogueSpec, harvest_catalogue
from tests.harvesters.catalogue_server import PLAYGROUNDS, TREES_CSV, catalogue_server, harvesting_hub
from tests.harvesters.test_ckan_source import Portal, package, serve_portal
from tests.conftest import in_process_client, pg_schema
from tests.harvesters.test_dcat_source import Catalogue

COUNTS = ("created", "updated", "unchanged", "withdrawn", "failed")


@pytest.fixture
def portal() -> Iterator[Portal]:
    """A CKAN portal of four packages: three good ones and one whose resource answers 404."""
    with catalogue_server() as server:
        portal = serve_portal(server)
        portal.packages = [
            package(server, "baumkataster", "/data/baeume.csv", "CSV"),
            package(server, "spielplaetze", "/data/spielplaetze.geojson", "GeoJSON"),
            package(server, "pegelstaende", "/data/pegel.json", "JSON"),
            package(server, "kaputt", "/data/fehlt.csv", "CSV"),
        ]
        yield portal


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    with harvesting_hub(tmp_path) as hub:
        yield hub


def ckan(portal: Portal) -> CatalogueSpec:
    return CatalogueSpec(name="govdata", type="ckan", url=portal.server.url, options={"rows": 3})


def job(hub: Hub, job_id: int | None) -> HarvestJob:
    assert job_id is not None
    with hub.sessions() as session:
        found = session.get(HarvestJob, job_id)
        assert found is not None
        return found


def children(hub: Hub, job_id: int | None) -> dict[str, tuple[str, int | None]]:
    """The dataset jobs of a catalogue run: dataset name → (status, bytes received)."""
    with hub.sessions() as session:
        rows = session.scalars(select(HarvestJob).where(HarvestJob.parent_id == job_id)).all()
        return {j.dataset.name: (j.status, j.bytes_received) for j in rows if j.dataset is not None}


def counts(**given: int) -> dict[str, int]:
    return {name: given.get(name, 0) for name in COUNTS}


def test_a_ckan_run_is_one_job_counting_its_datasets_with_each_failure_by_record(hub: Hub, portal: Portal) -> None:
    nameless = package(portal.server, "ohne-id", "/data/baeume.csv", "CSV")
    nameless["id"] = ""
    portal.packages.append(nameless)

    outcome = harvest_catalogue(hub, ckan(portal))

    run = job(hub, outcome.job_id)
    assert (run.catalogue, run.dataset_id, run.parent_id, run.status, run.error_code) == (
        "govdata", None, None, "finished", None)
    assert run.counts == counts(created=3, failed=2)
    assert run.message == outcome.message == "govdata: 5 datasets listed; 3 published, 2 failed"
    assert run.finished_at is not None and run.finished_at >= run.started_at
    # Each failure names the source record: CKAN's package id, or its name when it has no id.
    failures = run.errors or []
    assert [(e["record"], e["dataset"], e["type"]) for e in failures] == [
        ("id-kaputt", "kaputt", "source-unreachable"),
        ("ohne-id", "ohne-id", "malformed-feed"),
    ]
    assert "HTTP 404" in failures[0]["message"]
    assert "job" not in failures[0]  # it failed before a dataset (and its job) was made for it
    # The datasets' own jobs are the run's children; the run's bytes are theirs summed.
    jobs_of_run = children(hub, outcome.job_id)
    assert {name: status for name, (status, _) in jobs_of_run.items()} == {
        "baumkataster": "published", "spielplaetze": "published", "pegelstaende": "published"}
    assert run.bytes_received == sum(b or 0 for _, b in jobs_of_run.values()) > len(TREES_CSV)
    assert (run.rows_added, run.rows_changed, run.rows_removed) == (6, 0, 0)  # three first versions of two rows


def test_a_rerun_counts_updated_unchanged_withdrawn_and_quarantined(hub: Hub, portal: Portal) -> None:
    first = harvest_catalogue(hub, ckan(portal))
    trees, playgrounds = portal.packages[0], portal.packages[1]
    trees["metadata_modified"] = playgrounds["metadata_modified"] = "2026-12-01T08:00:00.000000"
    portal.server.files["/data/baeume.csv"] = ("text/csv", TREES_CSV + "B3;Eiche;2020;3.5\n".encode("cp1252"))
    broken = json.loads(json.dumps(PLAYGROUNDS))
    broken["features"][0]["properties"]["geraete"] = "viele"  # an integer field, as the first delivery had it
    portal.server.files["/data/spielplaetze.geojson"] = ("application/geo+json", json.dumps(broken).encode())
    portal.packages = [p for p in portal.packages if p["name"] != "pegelstaende"]

    second = harvest_catalogue(hub, ckan(portal))

    run = job(hub, second.job_id)
    assert run.counts == counts(updated=1, withdrawn=1, failed=2)
    assert (run.rows_added, run.rows_changed, run.rows_removed) == (1, 0, 0)  # the updated dataset's new row
    assert {name: status for name, (status, _) in children(hub, second.job_id).items()} == {
        "baumkataster": "published", "spielplaetze": "quarantined", "pegelstaende": "withdrawn"}
    quarantined = [e for e in run.errors or [] if e["type"] == "quarantined"]
    assert [(e["record"], e["dataset"]) for e in quarantined] == [("id-spielplaetze", "spielplaetze")]
    assert job(hub, quarantined[0]["job"]).report_key is not None  # the run leads to the delivery's report
    assert children(hub, first.job_id).keys() == {"baumkataster", "spielplaetze", "pegelstaende"}
    third = harvest_catalogue(hub, ckan(portal))
    # Withdrawn before: unchanged now; the quarantined one is tried again (its marker was not kept) and fails again.
    assert job(hub, third.job_id).counts == counts(unchanged=2, failed=2)


def test_a_failed_listing_is_a_failed_run_that_changed_nothing(hub: Hub, portal: Portal) -> None:
    portal.broken = True

    outcome = harvest_catalogue(hub, ckan(portal))

    run = job(hub, outcome.job_id)
    assert (outcome.status, run.status, run.error_code, run.counts) == ("failed", "failed", "malformed-feed", None)
    assert "answered package_search (start=0) with no valid JSON" in run.message
    assert [e["type"] for e in run.errors or []] == ["malformed-feed"]
    assert children(hub, outcome.job_id) == {}
    with hub.sessions() as session:
        assert session.scalars(select(HarvestJob.id).where(HarvestJob.catalogue.is_(None))).all() == []


def test_a_dcat_run_is_one_job_too(hub: Hub) -> None:
    with catalogue_server() as server:
        endpoint = Catalogue(server)
        del server.files["/data/spielplaetze.geojson"]
        spec = CatalogueSpec(name="musterstadt-dcat", type="dcat", url=server.url + "/catalog.ttl?page=1")

        outcome = harvest_catalogue(hub, spec)

    run = job(hub, outcome.job_id)
    assert (run.catalogue, run.status, run.counts) == ("musterstadt-dcat", "finished", counts(created=2, failed=1))
    assert [(e["record"], e["dataset"], e["type"]) for e in run.errors or []] == [
        (f"{endpoint.server.url}/dataset/spielplaetze", "spielplaetze", "source-unreachable")]
    assert set(children(hub, outcome.job_id)) == {"baumkataster", "pegelstaende"}


@pytest.fixture
async def api(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    async for client in in_process_client(hub):
        yield client


@pytest.mark.anyio
async def test_the_run_and_its_datasets_jobs_are_listed_by_the_api(hub: Hub, portal: Portal,
                                                                   api: httpx.AsyncClient) -> None:
    outcome = harvest_catalogue(hub, ckan(portal))

    runs = (await api.get("/api/v1/harvest/jobs?catalogue=govdata")).json()
    assert runs["total_count"] == 1
    run = runs["results"][0]
    assert {k: run[k] for k in ("id", "kind", "catalogue", "source", "dataset", "status", "counts", "parent")} == {
        "id": outcome.job_id, "kind": "catalogue", "catalogue": "govdata", "source": "govdata", "dataset": None,
        "status": "finished", "counts": counts(created=3, failed=1), "parent": None}
    assert [(e["record"], e["type"]) for e in run["errors"]] == [("id-kaputt", "source-unreachable")]
    assert run["duration_s"] is not None and run["bytes_received"] > 0

    linked = (await api.get(f"/api/v1/harvest/jobs?parent={outcome.job_id}")).json()
    assert sorted((j["dataset"], j["status"], j["parent"], j["kind"]) for j in linked["results"]) == [
        ("baumkataster", "published", outcome.job_id, "dataset"),
        ("pegelstaende", "published", outcome.job_id, "dataset"),
        ("spielplaetze", "published", outcome.job_id, "dataset")]
    finished = (await api.get("/api/v1/harvest/jobs?status=finished")).json()
    assert [j["id"] for j in finished["results"]] == [outcome.job_id]
    everything = (await api.get("/api/v1/harvest/jobs")).json()
    assert everything["total_count"] == 4
    assert (await api.get("/api/v1/harvest/jobs?parent=0")).status_code == 400


def test_the_harvest_status_page_shows_the_run_with_its_counts(hub: Hub, portal: Portal) -> None:
    outcome = harvest_catalogue(hub, ckan(portal))

    site = build_site(hub)

    english = (site / "en" / "harvest.html").read_text(encoding="utf-8")
    assert "catalogue run: 3 created, 0 updated, 0 unchanged, 0 withdrawn, 1 failed" in english
    assert f"/harvest/jobs?parent={outcome.job_id}" in english
    german = (site / "harvest.html").read_text(encoding="utf-8")
    assert "Kataloglauf: 3 neu, 0 aktualisiert, 0 unverändert, 0 zurückgezogen, 1 fehlgeschlagen" in german
    assert "abgeschlossen" in german


def test_a_run_whose_process_died_is_ended_by_the_collector_and_its_datasets_jobs_stay(hub: Hub,
                                                                                       portal: Portal) -> None:
    outcome = harvest_catalogue(hub, ckan(portal))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with hub.sessions.begin() as session:  # a run killed after its datasets' jobs ended, before its own did
        run = session.get(HarvestJob, outcome.job_id)
        assert run is not None
        run.status, run.finished_at, run.counts, run.pid = "running", None, None, gone.pid
        run.started_at -= timedelta(minutes=10)

    done = collect(hub)

    assert [(j.job_id, j.status) for j in done.jobs] == [(outcome.job_id, "failed")]
    ended = job(hub, outcome.job_id)
    assert (ended.status, ended.error_code) == ("failed", "job-interrupted")
    assert ended.message == (f"interrupted: the run of catalogue 'govdata' ended before it finished (killed or "
                             f"restarted). Its datasets' jobs (parent {outcome.job_id}) say what each did; run "
                             "`urbandata harvest-catalogue` again.")
    assert {status for status, _ in children(hub, outcome.job_id).values()} == {"published"}


def test_on_postgresql_a_run_counts_and_sums_as_on_sqlite(tmp_path: Path, portal: Portal) -> None:
    with pg_schema("catalogue_jobs") as overrides:
        hub = open_hub(Settings(data_dir=tmp_path / "pg", harvest_allowed_hosts=["127.0.0.1"], **overrides))
        try:
            outcome = harvest_catalogue(hub, ckan(portal))
            run = job(hub, outcome.job_id)
            jobs_of_run = children(hub, outcome.job_id)
        finally:
            hub.close()

    assert (run.status, run.counts, run.dataset_id) == ("finished", counts(created=3, failed=1), None)
    assert run.bytes_received == sum(b or 0 for _, b in jobs_of_run.values())
    assert isinstance(run.bytes_received, int) and (run.rows_added, run.rows_changed, run.rows_removed) == (6, 0, 0)
