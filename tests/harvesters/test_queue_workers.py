"""The harvest job queue: due runs queued on a real Redis, run by real `urbandata worker` processes into a
catalogue on the machine's PostgreSQL; a worker killed mid-job; a queue that does not answer."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from api.cli import app
from catalogue.errors import QueueUnreachable
from catalogue.hub import Hub
from catalogue.ingest import jobs
from catalogue.meta.models import Dataset, HarvestJob, HarvestSource, Version
from harvesters.schedule import run_due
from tests.conftest import pg_schema
from tests.harvesters.queue_workers import (  # noqa: F401 - fixtures: a Redis namespace, worker processes
    Workers,
    job_rows,
    queue_settings,
    wait_for,
    workers,
)

dramatiq = pytest.importorskip("dramatiq", reason="the job queue needs the [queue] extra: pip install 'urbandata[queue]'")

SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "no2", "type": "number"}], "primaryKey": ["id"]}


@pytest.fixture
def pg() -> Iterator[dict[str, Any]]:
    with pg_schema("queue") as overrides:
        yield overrides


def versions(hub: Hub) -> list[tuple[str, int, int | None]]:
    """Every version as (dataset, number, job id)."""
    with hub.sessions() as session:
        return [tuple(row) for row in session.execute(  # type: ignore[misc]
            select(Dataset.name, Version.number, Version.harvest_job_id)
            .join(Dataset, Version.dataset_id == Dataset.id).order_by(Dataset.name, Version.number)).all()]


@pytest.mark.timeout(300)
def test_two_worker_processes_harvest_each_queued_source_into_one_version(
        file_server: Any, source_catalogue: Callable[..., Hub], queue_settings: dict[str, Any],
        pg: dict[str, Any], workers: Callable[[Hub], Workers]) -> None:
    from harvesters.queue import queue_for

    server, files = file_server
    names = ["luft-a", "luft-b", "luft-c", "luft-d"]
    for n, name in enumerate(names):
        files[f"{name}.csv"] = f"id,no2\n1,{n}.5\n2,{n}.25\n".encode()
        hub = source_catalogue(name, SCHEMA, {"type": "http-file", "url": f"{server.url}{name}.csv", "format": "csv",
                                              "schedule": "1d"}, **pg, **queue_settings)
    group = workers(hub)
    queued = CliRunner().invoke(app, ["harvest", "--due", "-d", str(hub.settings.data_dir)], env=group.env)
    assert queued.exit_code == 0, queued.output
    assert sorted(re.findall(r"^ +queued  (luft-.): queued as job \d+$", queued.output, re.M)) == names, queued.output
    assert [status for _, status, _, _ in job_rows(hub)] == ["queued"] * 4 and server.hits == []
    assert run_due(hub) == []  # a queued job keeps its dataset from being claimed again

    command = group.start(processes=2)
    done = wait_for("four published jobs", lambda: all(s == "published" for _, s, _, _ in job_rows(hub)), 150, group)
    assert sorted((d, s, v) for d, s, v, _ in job_rows(hub)) == [(name, "published", 1) for name in names], done
    assert {pid for *_, pid in job_rows(hub)} <= group.children(command)  # run by the worker processes
    with hub.sessions() as session:
        job_of = dict(session.execute(select(Dataset.name, HarvestJob.id).join(Dataset)).all())
    assert versions(hub) == [(name, 1, job_of[name]) for name in names]
    assert sorted(path for path, _ in server.hits) == [f"/{name}.csv" for name in names]

    # The same message delivered again (a worker that died after its harvest, before its acknowledgement):
    # the job has ended, so nothing is fetched or published again.
    queue_for(hub.settings).send("luft-a", "luft-a", job_of["luft-a"])
    queue_for(hub.settings).broker.join("harvests", timeout=60_000)  # until a worker acknowledged it
    assert len(server.hits) == 4 and versions(hub) == [(name, 1, job_of[name]) for name in names]
    assert job_rows(hub)[0][:3] == ("luft-a", "published", 1)


@pytest.mark.timeout(300)
def test_two_one_thread_workers_each_take_one_of_two_queued_harvests_at_once(
        answering: Callable[..., Any], source_catalogue: Callable[..., Hub], queue_settings: dict[str, Any],
        pg: dict[str, Any], workers: Callable[[Hub], Workers]) -> None:
    """A worker process takes no more messages than it has threads (``dramatiq_environment``). With Dramatiq's
    default prefetch (twice its threads) the first process to poll took both harvests and ran them one after the
    other while the second idled: here each feed answers only once both requests are in, so that never ends."""
    both_asked = threading.Barrier(2)
    broken: list[str] = []

    def together(handler: BaseHTTPRequestHandler, server: Any) -> None:
        try:
            both_asked.wait(60)
        except threading.BrokenBarrierError:
            broken.append(handler.path)
        body = b"id,no2\n1,21.5\n"
        handler.send_response(200)
        handler.send_header("Content-Type", "text/csv")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    server = answering(together)
    for name in ("luft-a", "luft-b"):
        hub = source_catalogue(name, SCHEMA, {"type": "http-file", "url": f"{server.url}{name}.csv", "format": "csv",
                                              "schedule": "1d"}, **pg, **queue_settings)
    assert [o.status for o in run_due(hub)] == ["queued", "queued"]  # both queued before any worker runs
    group = workers(hub)
    command = group.start(processes=2)
    done = wait_for("two published jobs", lambda: all(s == "published" for _, s, _, _ in job_rows(hub)), 150, group)
    assert broken == [], f"a request waited alone for the other: {broken} ({done})"
    takers = {pid for *_, pid in job_rows(hub)}
    assert len(takers) == 2 and takers <= group.children(command)


def test_the_worker_command_sets_dramatiq_s_prefetch_and_poll_before_dramatiq_is_imported() -> None:
    """Dramatiq reads its environment once, when imported: the command line must not have imported it yet."""
    probe = ("import sys, api.cli\n"
             "assert 'dramatiq' not in sys.modules, 'api.cli imports dramatiq'\n"
             "from api.cli_worker import POLL_MS, dramatiq_environment\n"
             "dramatiq_environment(3)\n"
             "from dramatiq import Worker\n"
             "from dramatiq.brokers.stub import StubBroker\n"
             "w = Worker(StubBroker(), worker_threads=3)\n"
             "print(w.queue_prefetch, w.worker_timeout, POLL_MS)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("dramatiq_")}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    prefetch, poll, expected_poll = map(int, done.stdout.split())
    assert (prefetch, poll) == (3, expected_poll) and expected_poll < 1000  # Dramatiq's defaults: 6 and 1,000


@pytest.mark.timeout(300)
def test_a_worker_killed_mid_harvest_leaves_its_job_to_another_which_publishes_it_once(
        answering: Callable[..., Any], source_catalogue: Callable[..., Hub], queue_settings: dict[str, Any],
        pg: dict[str, Any], workers: Callable[[Hub], Workers]) -> None:
    from catalogue.sitegen.builder import build_site

    body = b"id,no2\n" + b"".join(f"{i},{i}.5\n".encode() for i in range(1, 201))
    released = threading.Event()

    def drip(handler: BaseHTTPRequestHandler, server: Any) -> None:
        """The first request gets its body a few bytes at a time and then stalls (its harvest stays in
        flight until its worker is killed); later ones get the whole feed."""
        handler.send_response(200)
        handler.send_header("Content-Type", "text/csv")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if len(server.hits) == 1:
            for i in range(0, 100, 10):
                handler.wfile.write(body[i:i + 10])
                handler.wfile.flush()
                time.sleep(0.1)
            released.wait(120)
        else:
            handler.wfile.write(body)

    server = answering(drip)
    hub = source_catalogue("pegel", SCHEMA, {"type": "http-file", "url": f"{server.url}pegel.csv", "format": "csv",
                                             "schedule": "1d"}, **pg, **queue_settings)
    assert [o.status for o in run_due(hub)] == ["queued"]
    build_site(hub)  # a built site: the worker that publishes rebuilds what the new version touches
    harvest_page = hub.settings.site_dir / "en" / "harvest.html"
    assert ">queued</span>" in harvest_page.read_text(encoding="utf-8")
    group = workers(hub)
    first, second = group.start(processes=1), group.start(processes=1)
    wait_for("the first request", lambda: server.hits, 90, group)
    (_, status, _, pid), = wait_for("the job taken", lambda: [r for r in job_rows(hub) if r[1] == "running"], 30,
                                    group)
    victim = next(c for c in (first, second) if pid in group.children(c))
    survivor = second if victim is first else first
    os.kill(pid, signal.SIGKILL)  # mid-download: the message stays unacknowledged

    wait_for("the job ended", lambda: job_rows(hub)[0][1] not in jobs.IN_FLIGHT, 120, group)
    released.set()
    assert len(job_rows(hub)) == 1  # one job from start to end: no second job, no second version
    (dataset, status, number, taker), = job_rows(hub)
    assert (dataset, status, number) == ("pegel", "published", 1)
    assert taker in group.children(survivor) and taker != pid
    assert [(d, n) for d, n, _ in versions(hub)] == [("pegel", 1)]
    assert len(server.hits) == 2  # fetched by the killed worker, then once more by the other
    with hub.sessions() as session:
        assert session.scalar(select(Version.row_count)) == 200
    wait_for("the site rebuilt", lambda: ">published</span> (v1)" in harvest_page.read_text(encoding="utf-8"), 120,
             group)


@pytest.mark.timeout(300)
def test_a_message_whose_job_a_live_process_runs_waits_with_backoff_and_never_runs_it_twice(
        file_server: Any, source_catalogue: Callable[..., Hub], queue_settings: dict[str, Any],
        pg: dict[str, Any], workers: Callable[[Hub], Workers]) -> None:
    from harvesters.queue import QUEUE_NAME, queue_for

    server, files = file_server
    files["b.csv"] = b"id,no2\n1,1.5\n"
    hub = source_catalogue("belegt", SCHEMA, {"type": "http-file", "url": f"{server.url}b.csv", "format": "csv",
                                              "schedule": "1d"}, **pg, **queue_settings)
    with hub.sessions() as session:
        source_id, dataset_id = session.execute(select(HarvestSource.id, HarvestSource.dataset_id)).one()
    job = jobs.claim(hub, source_id, dataset_id, "belegt", None, queued=True)
    assert job is not None and jobs.take(hub, job, "belegt") == "run"  # this test process runs it, as a worker would
    queue = queue_for(hub.settings)
    queue.send("belegt", "belegt", job)  # the same job's message delivered while it runs
    group = workers(hub)
    group.start(processes=1)
    delayed = f"{hub.settings.queue_namespace}:{QUEUE_NAME}.DQ.msgs"  # Retries put it back with a delay
    wait_for("the message retried later", lambda: queue.broker.client.hlen(delayed), 90, group)
    assert server.hits == [] and job_rows(hub)[0][1] == "running"
    jobs.finish(hub, job, None, note="ended by the process that ran it")
    queue.broker.join(QUEUE_NAME, timeout=120_000)  # the retry finds the job ended and is acknowledged
    assert server.hits == [] and versions(hub) == []
    assert job_rows(hub) == [("belegt", "unchanged", None, os.getpid())]


def test_serve_s_scheduler_queues_due_runs_and_publishes_nothing_itself(
        file_server: Any, source_catalogue: Callable[..., Hub], queue_settings: dict[str, Any]) -> None:
    from harvesters.queue import QUEUE_NAME, queue_for
    from harvesters.schedule import HarvestScheduler

    server, files = file_server
    files["s.csv"] = b"id,no2\n1,1.5\n"
    hub = source_catalogue("geplant", SCHEMA, {"type": "http-file", "url": f"{server.url}s.csv", "format": "csv",
                                               "schedule": "1d"}, **queue_settings)
    rebuilt: list[list[str]] = []
    outcomes = HarvestScheduler(hub, after_publish=rebuilt.append).run_once()
    assert [(o.source, o.status, o.job_id) for o in outcomes] == [("geplant", "queued", 1)] and rebuilt == []
    assert job_rows(hub) == [("geplant", "queued", None, os.getpid())] and server.hits == []
    assert queue_for(hub.settings).broker.do_qsize(QUEUE_NAME) == 1  # the message waits for a worker
    assert HarvestScheduler(hub).run_once() == []  # the next round does not queue it again


def test_take_runs_a_queued_job_once_and_settles_a_dead_worker_s_job_from_its_version(
        source_catalogue: Callable[..., Hub], file_server: Any) -> None:
    from catalogue.sitegen.builder import build_site
    from harvesters.runner import harvest_source

    server, files = file_server
    files["t.csv"] = b"id,no2\n1,1.5\n"
    hub = source_catalogue("takes", SCHEMA, {"type": "http-file", "url": f"{server.url}t.csv", "format": "csv",
                                             "schedule": "1d"})
    with hub.sessions() as session:
        source_id, dataset_id = session.execute(select(HarvestSource.id, HarvestSource.dataset_id)).one()
    job = jobs.claim(hub, source_id, dataset_id, "takes", None, queued=True)
    assert job is not None and jobs.claim(hub, source_id, dataset_id, "takes", job, queued=True) is None
    build_site(hub)  # the harvest status page shows a queued job in both languages
    assert ">queued</span>" in (hub.settings.site_dir / "en" / "harvest.html").read_text(encoding="utf-8")
    assert ">in der Warteschlange</span>" in (hub.settings.site_dir / "harvest.html").read_text(encoding="utf-8")
    assert jobs.take(hub, job, "takes") == "run"
    assert job_rows(hub) == [("takes", "running", None, os.getpid())]
    assert harvest_source(hub, "takes", job).status == "published"
    assert jobs.take(hub, job, "takes") == "done"  # ended: a message delivered again does nothing

    # A job whose worker died after the commit, before recording it: ended from its version, not run again.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with hub.sessions.begin() as session:
        row = session.get(HarvestJob, job)
        assert row is not None
        row.status, row.pid, row.version_number = "running", gone.pid, None
    assert jobs.take(hub, job, "takes") == "done"
    assert job_rows(hub) == [("takes", "published", 1, gone.pid)]

    # A job a live process of this host runs is busy: the message waits, nothing runs twice at once.
    with hub.sessions.begin() as session:
        row = session.get(HarvestJob, job)
        assert row is not None
        row.status, row.pid = "running", os.getppid()
    assert jobs.take(hub, job, "takes") == "busy"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("url, words", [
    ("redis://127.0.0.1:1/0", "does not answer (ConnectionError"),
    ("http://127.0.0.1:6379/", "is no Redis URL"),
    ("redis://:s3cret@127.0.0.1:1/0", "at redis://***@127.0.0.1:1/0 does not answer"),
])
def test_a_queue_that_cannot_be_reached_is_a_clear_error_and_claims_nothing(
        file_server: Any, source_catalogue: Callable[..., Hub], url: str, words: str) -> None:
    server, files = file_server
    files["q.csv"] = b"id,no2\n1,1.5\n"
    hub = source_catalogue("offline", SCHEMA, {"type": "http-file", "url": f"{server.url}q.csv", "format": "csv",
                                               "schedule": "1d"}, queue_url=url)
    with pytest.raises(QueueUnreachable) as raised:
        run_due(hub)
    assert words in raised.value.message and "URBANDATA_QUEUE_URL" in raised.value.message
    assert raised.value.status == 503 and job_rows(hub) == [] and server.hits == []

    env = {"URBANDATA_DEFINITIONS_DIR": str(hub.settings.definitions_dir), "URBANDATA_QUEUE_URL": url}
    for command in (["harvest", "--due"], ["worker", "--processes", "1"]):
        result = CliRunner().invoke(app, [*command, "-d", str(hub.settings.data_dir)], env=env)
        assert result.exit_code == 1, result.output
        said = " ".join(result.output.split())
        assert "[queue-unreachable]" in said and words in said and "s3cret" not in said, said
    assert job_rows(hub) == [] and server.hits == []
