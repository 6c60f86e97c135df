"""Scale-out acceptance (issue 19): 2 API replicas and 2 queue workers on one PostgreSQL catalogue, one object store
(a real SeaweedFS) and one Redis queue.

Pushes go through both replicas (appends, some with an Idempotency-Key replayed through the other replica or sent
through both at once), `urbandata harvest --due` queues harvests of several HTTP feeds for the workers, one worker
is killed with SIGKILL mid-download (a dripping feed), and both replicas are read all along. At the end every
version of every dataset has its descriptor and parts in the object store, reads back the same through both
replicas, numbers run 1..N, each push is in the data once, each harvest job made one version, every job has ended,
and both replicas name the same current version.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select

from catalogue.hub import Hub
from catalogue.ingest import jobs
from catalogue.meta.models import Dataset, HarvestJob, Version
from catalogue.store.keys import part_key
from tests.api.live_server import live_server
from tests.api.push_support import bearer, token
from tests.catalogue.seaweed_server import s3_settings, seaweed  # noqa: F401 - fixtures: a real SeaweedFS
from tests.harvesters.answering_server import AnsweringServer
from tests.harvesters.sources import source_catalogue
from tests.harvesters.queue_workers import (  # noqa: F401 - fixtures: a Redis namespace, worker processes
    Workers,
    job_rows,
    queue_settings,
    wait_for,
    workers,
)
from tests.conftest import pg_schema

pytestmark = pytest.mark.slow  # two servers, two workers, SeaweedFS and a few dozen commits: a minute or two

SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "no2", "type": "number"}], "primaryKey": ["id"]}
FEEDS = ["luft-a", "luft-b", "luft-c"]  # served whole, different rows at each request
DRIP = "pegel"  # its first request drips and stalls: its worker is killed mid-download
PUSHED = "zaehler"  # the dataset pushes append to
ROUNDS = 3  # `harvest --due` rounds (the feeds are due every 2 s)
PUSHES = 6  # append deliveries per replica
KEYED = {1, 4}  # of those, the ones sent with an Idempotency-Key and replayed through the other replica
FINAL = {"published", "unchanged", "quarantined", "failed"}


def _feed_rows(hit: int) -> list[dict[str, Any]]:
    return [{"id": i, "no2": hit * 10 + i / 4} for i in range(1, 6)]


def _csv(rows: list[dict[str, Any]]) -> bytes:
    return ("id,no2\n" + "".join(f"{r['id']},{r['no2']}\n" for r in rows)).encode()


class Feeds:
    """The HTTP feeds: each request to /<name>.csv gets new rows (kept in ``served``); /pegel.csv's first request
    drips 100 bytes and stalls until ``released``."""

    def __init__(self) -> None:
        self.served: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in [*FEEDS, DRIP]}
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.server = AnsweringServer(self.answer)

    def answer(self, handler: BaseHTTPRequestHandler, server: AnsweringServer) -> None:
        name = handler.path.split("?")[0].strip("/").removesuffix(".csv")
        with self.lock:
            if name not in self.served:
                handler.send_response(404)
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            rows = _feed_rows(len(self.served[name]) + 1) if name != DRIP else [
                {"id": i, "no2": i + 0.5} for i in range(1, 201)]
            self.served[name].append(rows)
            first = len(self.served[name]) == 1
        body = _csv(rows)
        handler.send_response(200)
        handler.send_header("Content-Type", "text/csv")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if name == DRIP and first:
            for i in range(0, 100, 10):
                handler.wfile.write(body[i:i + 10])
                handler.wfile.flush()
                time.sleep(0.1)
            self.released.wait(180)
            return
        handler.wfile.write(body)


@pytest.fixture
def feeds() -> Any:
    made = Feeds()
    yield made
    made.released.set()
    made.server.close()


def _catalogue(tmp_path: Path, url: str, settings: dict[str, Any]) -> Hub:
    """The harvested datasets (one source each, due every 2 s; the drip's once a day) and the pushed one (no
    source)."""
    defs = tmp_path / "defs" / "definitions"
    defs.mkdir(parents=True)
    (defs / f"{PUSHED}.yaml").write_text(yaml.safe_dump({
        "name": PUSHED, "title": "Zähler", "description": "Gepushte Zählerstände.", "publisher": "testamt",
        "license": "http://dcat-ap.de/def/licenses/dl-zero-de/2.0", "schema": SCHEMA}), encoding="utf-8")
    hub = None
    for name in [*FEEDS, DRIP]:  # each call writes one definition and syncs all written so far
        if hub is not None:
            hub.close()
        hub = source_catalogue(tmp_path, name, SCHEMA, {"type": "http-file", "url": f"{url}{name}.csv",
                                                        "format": "csv", "schedule": "1d" if name == DRIP else "2s"},
                                 **settings)
    assert hub is not None
    return hub


class Reads:
    """A thread reading every dataset through both replicas until stopped: (replica, dataset, version, total)."""

    def __init__(self, bases: list[str], datasets: list[str]) -> None:
        self.bases, self.datasets = bases, datasets
        self.seen: list[tuple[int, str, int, int]] = []
        self.problems: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        newest: dict[tuple[int, str], int] = {}
        with httpx.Client(timeout=60) as client:
            while not self.stop.is_set():
                for replica, base in enumerate(self.bases):
                    for name in self.datasets:
                        answer = client.get(f"{base}/datasets/{name}/records", params={"limit": 1})
                        if answer.status_code == 404 and (replica, name) not in newest:
                            continue  # no version yet
                        if answer.status_code != 200:
                            self.problems.append(f"{base} {name}: {answer.status_code} {answer.text[:300]}")
                            continue
                        number = int(answer.headers["X-Dataset-Version"])
                        if number < newest.get((replica, name), 0):
                            self.problems.append(f"{base} {name}: version {number} after {newest[(replica, name)]}")
                        newest[(replica, name)] = number
                        self.seen.append((replica, name, number, answer.json()["total_count"]))
                time.sleep(0.2)


def _push(client: httpx.Client, base: str, headers: dict[str, str], body: bytes, key: str | None) -> httpx.Response:
    """One append delivery; a keyed one whose twin is still in progress (409) is sent again until it answers."""
    extra = {"Idempotency-Key": key} if key else {}
    deadline = time.monotonic() + 120
    while True:
        answer = client.post(f"{base}/datasets/{PUSHED}/deliveries", params={"mode": "append"}, content=body,
                             headers={**headers, **extra})
        if not (key and answer.status_code == 409) or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def _harvest_due(group: Workers) -> str:
    """`urbandata harvest --due` in a process of its own: the due runs are sent to the queue."""
    done = subprocess.run([sys.executable, "-m", "api.cli", "harvest", "--due", "-d", str(group.hub.settings.data_dir)],
                          env=group.env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _records(client: httpx.Client, base: str, name: str, number: int) -> tuple[list[dict[str, Any]], str]:
    """Every row of version ``number`` (by id) and its CSV export, read through ``base``."""
    rows: list[dict[str, Any]] = []
    while not rows or len(rows) % 100 == 0:
        answer = client.get(f"{base}/datasets/{name}/records",
                            params={"version": number, "order_by": "id", "limit": 100, "offset": len(rows)})
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Dataset-Version"] == str(number)
        page = answer.json()["results"]
        rows += page
        if not page:
            break
    exported = client.get(f"{base}/datasets/{name}/exports/csv", params={"version": number})
    assert exported.status_code == 200, exported.text
    return rows, exported.text


@pytest.mark.timeout(600)
def test_two_replicas_and_two_workers_lose_nothing_and_duplicate_nothing(
        tmp_path: Path, feeds: Feeds, s3_settings: dict[str, Any], queue_settings: dict[str, Any],  # noqa: F811
        workers: Callable[[Hub], Workers]) -> None:  # noqa: F811
    with pg_schema("scale") as pg:
        hub = _catalogue(tmp_path, feeds.server.url, {**pg, **s3_settings, **queue_settings})
        try:
            _scale_out(hub, tmp_path, feeds, workers)
        finally:
            hub.close()


def _scale_out(hub: Hub, tmp_path: Path, feeds: Feeds, workers: Callable[[Hub], Workers]) -> None:
    s = hub.settings
    settings = {"data_dir": str(s.data_dir), "definitions_dir": str(s.definitions_dir),
                "database_url": s.resolved_database_url, "storage": "s3", "s3_endpoint_url": s.s3_endpoint_url,
                "s3_bucket": s.s3_bucket, "s3_prefix": s.s3_prefix, "queue_url": s.queue_url,
                "queue_namespace": s.queue_namespace, "queue_heartbeat_timeout_s": s.queue_heartbeat_timeout_s}
    group = workers(hub)
    pusher = {**bearer(token(hub, "testamt", "push")), "Content-Type": "text/csv"}
    names = [*FEEDS, DRIP, PUSHED]
    first, second = group.start(processes=1), group.start(processes=1)
    with live_server(settings, tmp_path / "a.log") as a, live_server(settings, tmp_path / "b.log") as b:
        bases = [f"{a}/api/v1", f"{b}/api/v1"]
        reads = Reads(bases, names)
        reads.thread.start()

        # Pushes through both replicas at once; KEYED ones replayed through the other replica.
        answers: list[tuple[str, httpx.Response]] = []  # (what, answer) of every push
        pushed_ids: list[int] = []
        raced = f"raced-{uuid.uuid4().hex}"  # one key sent through both replicas at the same moment
        raced_body = _csv([{"id": 9001, "no2": 1.0}, {"id": 9002, "no2": 2.0}])
        together = threading.Barrier(2, timeout=300)  # both pushers send the raced key at the same moment

        def push_through(replica: int) -> None:
            base, other = bases[replica], bases[1 - replica]
            with httpx.Client(timeout=120) as client:
                for n in range(PUSHES):
                    ids = [(replica + 1) * 1000 + n * 10 + j for j in range(3)]
                    rows: list[dict[str, Any]] = [{"id": i, "no2": float(i % 100)} for i in ids]
                    key = f"push-{replica}-{n}-{uuid.uuid4().hex}" if n in KEYED else None
                    answers.append(("push", _push(client, base, pusher, _csv(rows), key)))
                    pushed_ids.extend(ids)
                    if key:
                        answers.append(("replay", _push(client, other, pusher, _csv(rows), key)))
                    if n == 2:
                        together.wait()
                        answers.append(("raced", _push(client, base, pusher, raced_body, raced)))

        pushers = [threading.Thread(target=push_through, args=(r,)) for r in (0, 1)]
        for thread in pushers:
            thread.start()

        # Harvests: round 1 queues every feed; the drip's worker is killed mid-download.
        assert "queued" in _harvest_due(group)
        wait_for("the drip fetched", lambda: feeds.served[DRIP], 120, group)
        running = wait_for("the drip's job running",
                           lambda: [r for r in job_rows(hub) if r[0] == DRIP and r[1] == "running"], 60, group)
        victim_pid = running[0][3]
        assert victim_pid in group.children(first) | group.children(second)
        os.kill(victim_pid, signal.SIGKILL)
        wait_for("the drip's job ended", lambda: all(r[1] not in jobs.IN_FLIGHT for r in job_rows(hub)
                                                     if r[0] == DRIP), 180, group)
        feeds.released.set()
        for _ in range(ROUNDS - 1):  # more rounds once the last one's jobs ended (a running dataset is not due)
            wait_for("the round's jobs ended",
                     lambda: all(r[1] not in jobs.IN_FLIGHT for r in job_rows(hub) if r[0] in FEEDS), 180, group)
            time.sleep(2.5)
            _harvest_due(group)
        for thread in pushers:
            thread.join(timeout=300)
        wait_for("every job ended", lambda: all(r[1] not in jobs.IN_FLIGHT for r in job_rows(hub)), 180, group)
        time.sleep(1.0)  # a last read of the final versions through both replicas
        reads.stop.set()
        reads.thread.join(timeout=120)

        _check(hub, bases, feeds, answers, pushed_ids, raced_body, reads, victim_pid)


def _check(hub: Hub, bases: list[str], feeds: Feeds, answers: list[tuple[str, httpx.Response]],
           pushed_ids: list[int], raced_body: bytes, reads: Reads, victim_pid: int) -> None:
    # Every job has one final status; none is the killed worker's.
    rows = job_rows(hub)
    assert rows and all(status in FINAL for _, status, _, _ in rows), rows
    drip_jobs = [r for r in rows if r[0] == DRIP]
    assert [(status, number) for _, status, number, _ in drip_jobs] == [("published", 1)], drip_jobs
    assert drip_jobs[0][3] != victim_pid and len(feeds.served[DRIP]) == 2  # fetched by the killed one, then again

    with hub.sessions() as session:
        versions = session.execute(select(Dataset.name, Version.number, Version.row_count, Version.descriptor_key,
                                          Version.parts, Version.harvest_job_id)
                                   .join(Dataset, Version.dataset_id == Dataset.id)
                                   .order_by(Dataset.name, Version.number)).all()
        job_status = dict(session.execute(select(HarvestJob.id, HarvestJob.status)).all())
        job_version = dict(session.execute(select(HarvestJob.id, HarvestJob.version_number)).all())
    by_name: dict[str, list[Any]] = {}
    for version in versions:
        by_name.setdefault(version.name, []).append(version)
    assert sorted(by_name) == sorted([*FEEDS, DRIP, PUSHED])

    # Contiguous numbers; each version from its own job, which says it made that version.
    for name, found in by_name.items():
        assert [v.number for v in found] == list(range(1, len(found) + 1)), (name, [v.number for v in found])
        job_ids = [v.harvest_job_id for v in found]
        assert None not in job_ids and len(set(job_ids)) == len(job_ids), (name, job_ids)
        assert all(job_status[j] == "published" and job_version[j] == v.number for j, v in zip(job_ids, found))
    published = sorted(j for j, status in job_status.items() if status == "published")
    assert published == sorted(v.harvest_job_id for v in versions)  # a published job has exactly one version
    for name in FEEDS:  # each round's harvest published; the killed worker left no second version anywhere
        assert len(by_name[name]) == ROUNDS == len(feeds.served[name]), (name, len(by_name[name]))

    # Every version's descriptor and parts are in the object store and read back alike through both replicas.
    with httpx.Client(timeout=120) as client:
        for version in versions:
            assert hub.storage.exists(version.descriptor_key), version.descriptor_key
            assert version.parts and all(hub.storage.exists(part_key(version.name, p["sha256"]))
                                         for p in version.parts), version.name
            (rows_a, csv_a), (rows_b, csv_b) = (_records(client, base, version.name, version.number)
                                                for base in bases)
            assert rows_a == rows_b and csv_a == csv_b, (version.name, version.number)
            assert len(rows_a) == version.row_count == len(list(csv.DictReader(io.StringIO(csv_a))))
            if version.name in FEEDS:  # the rows of the delivery harvested, request by request
                assert rows_a == feeds.served[version.name][version.number - 1]
            elif version.name == DRIP:
                assert rows_a == feeds.served[DRIP][1]
        # Both replicas name the same current version (the newest) and the same version list.
        for name, found in by_name.items():
            current = [client.get(f"{base}/datasets/{name}/records", params={"limit": 1}).headers[
                "X-Dataset-Version"] for base in bases]
            assert current == [str(found[-1].number)] * 2, (name, current)
            listed = [client.get(f"{base}/datasets/{name}/versions").json() for base in bases]
            assert listed[0] == listed[1], name

    # Each push is in the newest version once; each published push made one version; replays made none.
    pushes = [r for what, r in answers if what == "push"]
    replays = [r for what, r in answers if what == "replay"]
    raced = [r for what, r in answers if what == "raced"]
    assert [r.status_code for r in pushes] == [201] * 2 * PUSHES, [r.text for r in pushes if r.status_code != 201]
    assert len(replays) == 2 * len(KEYED) and len(raced) == 2
    for replay in replays:
        assert replay.status_code == 201 and replay.headers.get("Idempotent-Replayed") == "true", replay.text
    assert sorted(r.status_code for r in raced) == [201, 201], [r.text for r in raced]
    assert sorted(r.headers.get("Idempotent-Replayed", "") for r in raced) == ["", "true"]  # one ingest only
    assert raced[0].json()["version"] == raced[1].json()["version"]
    originals = {r.json()["version"] for r in pushes} | {r.json()["version"] for r in raced}
    assert sorted(originals) == [v.number for v in by_name[PUSHED]]  # one version per push, none more
    assert {r.json()["version"] for r in replays} <= originals
    newest = by_name[PUSHED][-1]
    with httpx.Client(timeout=120) as client:
        final, _ = _records(client, bases[0], PUSHED, newest.number)
    raced_ids = [int(line.split(b",")[0]) for line in raced_body.splitlines()[1:]]
    assert sorted(r["id"] for r in final) == sorted(pushed_ids + raced_ids)  # each exactly once

    # The reads along the way: no errors, and each answered total is the row count of the version it named.
    assert reads.problems == []
    counts = {(v.name, v.number): v.row_count for v in versions}
    assert {replica for replica, *_ in reads.seen} == {0, 1}
    assert all(total == counts[(name, number)] for _, name, number, total in reads.seen)
