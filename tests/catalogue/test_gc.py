"""The collector: leftovers older than the grace period go, anything fresh or referenced stays; jobs whose
process is gone end as interrupted (or published, when their version landed); ``urbandata gc`` reports it."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from api.cli import app
from catalogue.hub import Hub
from catalogue.ingest.gc import collect
from catalogue.ingest.jobs import process_started_at
from catalogue.ingest.pipeline import Delivery, ingest_delivery
from catalogue.meta.models import Dataset, HarvestJob, HarvestSource, Version, utcnow
from catalogue.settings import PROJECT_ROOT
from catalogue.store.keys import part_key
from tests.catalogue.test_concurrent_commits import backend  # noqa: F401 - the SQLite/PostgreSQL fixture
from tests.catalogue.test_ingest_failures import cli_env

NAME = "counters"
SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "value", "type": "integer"}], "primaryKey": ["id"]}
OLD = time.time() - 7 * 3600  # older than the default grace period of 6 hours


def _csv(tag: int) -> bytes:
    return ("id,value\n" + "".join(f"{i},{tag * 100 + i}\n" for i in range(20))).encode()


def _file(path: Path, data: bytes = b"x" * 100, *, old: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if old:
        os.utime(path, (OLD, OLD))
    return path


@pytest.fixture
def counters(make_catalogue: Callable[..., Hub], backend: dict[str, Any]) -> Hub:
    """A catalogue with one dataset in two versions, on SQLite and on PostgreSQL."""
    hub = make_catalogue(NAME, SCHEMA, _csv(1), **backend)
    result = ingest_delivery(hub, NAME, Delivery(_csv(2), "csv", {}, "replace", {"source_url": "t"}))
    assert (result.status, result.version) == ("published", 2)
    return hub


def _versions_intact(hub: Hub) -> list[int]:
    with hub.sessions() as session:
        versions = list(session.scalars(select(Version).order_by(Version.number)))
    for version in versions:
        hub.storage.read_bytes(version.descriptor_key)
        for part in version.parts:
            assert hashlib.sha256(hub.storage.read_bytes(part_key(NAME, part["sha256"]))).hexdigest() == part["sha256"]
    return [v.number for v in versions]


@pytest.mark.embedded_only("lays leftover files into the local store directory; test_s3_storage.py covers the collector on S3")
def test_old_leftovers_go_while_fresh_and_referenced_files_stay(counters: Hub) -> None:
    hub = counters
    data, store = hub.settings.data_dir, hub.settings.store_dir
    ds = store / "datasets" / NAME
    # Every file the store holds now is referenced (parts, descriptors) or kept (reports): make them all old.
    for path in store.rglob("*"):
        if path.is_file():
            os.utime(path, (OLD, OLD))
    leftovers = {
        "incoming/parking-1.csv": _file(data / "incoming" / "parking-1.csv"),
        "store/.scratch/tmp1.xlsx": _file(store / ".scratch" / "tmp1.xlsx"),
        "store/.scratch/tmp2.ingest": _file(store / ".scratch" / "tmp2.ingest" / "ingest.duckdb", b"d" * 300).parent,
        f"store/datasets/{NAME}/parts/{'a' * 64}.parquet": _file(ds / "parts" / f"{'a' * 64}.parquet"),
        f"store/datasets/{NAME}/v9.datapackage.json": _file(ds / "v9.datapackage.json", b"{}"),
        f"store/datasets/{NAME}/parts/.{'b' * 64}.parquet.incoming": _file(ds / "parts" / f".{'b' * 64}.parquet.incoming"),
    }
    os.utime(leftovers["store/.scratch/tmp2.ingest"], (OLD, OLD))
    fresh = [
        _file(data / "incoming" / "parking-2.csv", old=False),  # a download an ingest is about to read
        _file(store / ".scratch" / "tmp3.parquet", old=False),  # an export being streamed
        _file(store / ".scratch" / "tmp4.ingest" / "tmp" / "spill.bin", old=False).parent.parent,  # a live ingest
        _file(ds / "parts" / f"{'c' * 64}.parquet", old=False),  # a part an ingest has yet to commit
    ]
    os.utime(fresh[2], (OLD, OLD))  # the directory is old; what is written inside it is not
    kept_old = [
        _file(store / "exports" / NAME / f"{'d' * 64}.parquet"),  # a whole-version export, kept for its version
        _file(store / "quarantine" / NAME / "job-3" / "report.json"),
    ]
    done = collect(hub)
    assert sorted(name for name, _ in done.files) == sorted(leftovers)
    assert done.bytes == 100 * 4 + 300 + 2
    assert [name for name, path in leftovers.items() if path.exists()] == []
    assert [path for path in fresh + kept_old if not path.exists()] == []
    assert _versions_intact(hub) == [1, 2]
    assert len(list(ds.glob("parts/*.parquet"))) == 3  # v1's part, v2's part, the fresh one
    # Nothing is left to collect.
    assert collect(hub).files == []


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _job(hub: Hub, *, pid: int | None, host: str | None, age: timedelta) -> int:
    with hub.sessions.begin() as session:
        dataset_id = session.scalar(select(Dataset.id).where(Dataset.name == NAME))
        job = HarvestJob(dataset_id=dataset_id, status="running", pid=pid, host=host, started_at=utcnow() - age)
        session.add(job)
        session.flush()
        return job.id


def test_jobs_left_running_by_a_gone_process_end_as_interrupted(counters: Hub) -> None:
    hub = counters
    here, dead, ten_minutes = socket.gethostname(), _dead_pid(), timedelta(minutes=10)
    jobs = {
        "dead process": _job(hub, pid=dead, host=here, age=ten_minutes),
        "no process recorded": _job(hub, pid=None, host=None, age=ten_minutes),
        "other host, a day old": _job(hub, pid=1, host="elsewhere.example", age=timedelta(hours=25)),
        "dead process, version landed": _job(hub, pid=dead, host=here, age=ten_minutes),
        # A live process started before its job (a process started after the job cannot be its own: its id was reused).
        "live process": _job(hub, pid=os.getpid(), host=here,
                             age=timedelta(seconds=time.time() - (process_started_at(os.getpid()) or time.time()))),
        "other host, recent": _job(hub, pid=1, host="elsewhere.example", age=ten_minutes),
        "dead process, just started": _job(hub, pid=dead, host=here, age=timedelta(seconds=1)),
    }
    landed = ingest_delivery(hub, NAME, Delivery(_csv(3), "csv", {}, "replace", {"source_url": "t"}),
                             job_id=jobs["dead process, version landed"])
    done = collect(hub)
    assert sorted((j.job_id, j.status) for j in done.jobs) == sorted([
        (jobs["dead process"], "failed"), (jobs["no process recorded"], "failed"),
        (jobs["other host, a day old"], "failed"), (jobs["dead process, version landed"], "published")])
    with hub.sessions() as session:
        found = {what: session.get(HarvestJob, job_id) for what, job_id in jobs.items()}
        states = {what: (j.status, j.error_code, j.version_number) for what, j in found.items()}
    assert states == {
        "dead process": ("failed", "job-interrupted", None),
        "no process recorded": ("failed", "job-interrupted", None),
        "other host, a day old": ("failed", "job-interrupted", None),
        "dead process, version landed": ("published", None, landed.version),
        "live process": ("running", None, None),
        "other host, recent": ("running", None, None),
        "dead process, just started": ("running", None, None),
    }
    assert found["dead process"].message.startswith("interrupted: the harvest's process ended before the job finished")
    assert all(found[w].finished_at is not None for w in ("dead process", "dead process, version landed"))


class _StallingFeed(BaseHTTPRequestHandler):
    """Sends half a CSV feed, then waits until the test is done (the harvest is killed meanwhile)."""

    release = threading.Event()

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self.send_response(200)
        self.send_header("Content-Length", "4000000")
        self.end_headers()
        self.wfile.write(b"id,value\n" + b"1,1\n" * 600_000)
        self.wfile.flush()
        self.release.wait(60)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stalling_feed() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _StallingFeed)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/feed.csv"
    _StallingFeed.release.set()
    httpd.shutdown()
    httpd.server_close()


def test_a_killed_harvest_leaves_a_job_and_a_download_that_gc_cleans(harvested: Hub, stalling_feed: str) -> None:
    hub = harvested
    with hub.sessions.begin() as session:
        session.scalar(select(HarvestSource).where(HarvestSource.name == "egovernment-services")).url = stalling_feed
    env = cli_env(hub)
    proc = subprocess.Popen([sys.executable, "-m", "api.cli", "harvest", "egovernment-services",
                             "-d", str(hub.settings.data_dir)], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    incoming = hub.settings.data_dir / "incoming"
    try:
        for _ in range(600):  # until the download has started writing
            if any(p.stat().st_size > 0 for p in incoming.glob("*")) if incoming.is_dir() else False:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the harvest never started downloading")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with hub.sessions() as session:
        job = session.scalars(select(HarvestJob).order_by(HarvestJob.id.desc())).first()
        assert (job.status, job.pid) == ("running", proc.pid)
    result = CliRunner().invoke(app, ["gc", "--grace-hours", "0", "-d", str(hub.settings.data_dir)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert f"job {job.id} failed: interrupted: the harvest's process ended" in output
    assert "removed incoming/egovernment-services-" in output
    assert "ended 1 interrupted jobs." in output
    assert list(incoming.glob("*")) == []
    with hub.sessions() as session:
        assert (session.get(HarvestJob, job.id).status, session.get(HarvestJob, job.id).error_code) == (
            "failed", "job-interrupted")


@pytest.mark.embedded_only("a data directory without a SQLite file has no catalogue only on the embedded default")
def test_gc_refuses_a_directory_without_a_catalogue(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["gc", "-d", str(tmp_path / "typo")])
    assert result.exit_code == 1
    assert "catalogue-not-found" in result.output


@pytest.mark.anyio
async def test_the_server_collects_at_start_up(counters: Hub) -> None:
    from api.app import create_app

    leftover = _file(counters.settings.data_dir / "incoming" / "left-behind.csv")
    fresh = _file(counters.settings.data_dir / "incoming" / "arriving.csv", old=False)
    server = create_app(counters.settings, counters)
    async with server.router.lifespan_context(server):
        for _ in range(600):  # the collector runs in a thread of its own, once right away
            if not leftover.exists():
                break
            await anyio.sleep(0.05)
    assert (leftover.exists(), fresh.exists()) == (False, True)
