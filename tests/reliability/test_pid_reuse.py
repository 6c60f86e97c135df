"""A killed harvest's process id may be taken by a new process before the collector runs (Linux hands out
at most 32,768 ids by default; this shared machine cycled through them every five minutes). Found by the
full kill suite: gc ended 24 of 25 interrupted jobs, the 25th stayed ``running`` because its id was alive.
A process that started after the job cannot be the job's: the collector ends the job all the same.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from catalogue.hub import Hub
from catalogue.ingest.gc import collect
from catalogue.meta.models import Dataset, HarvestJob, utcnow

SCHEMA = {"fields": [{"name": "id", "type": "integer"}], "primaryKey": ["id"]}


@pytest.fixture
def newer_process() -> Iterator[int]:
    """A live process started now: the id a killed harvest's process had, taken over."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _running_job(hub: Hub, pid: int, age: timedelta) -> int:
    with hub.sessions.begin() as session:
        dataset_id = session.scalar(select(Dataset.id).where(Dataset.name == "ids"))
        job = HarvestJob(dataset_id=dataset_id, status="running", pid=pid, host=socket.gethostname(),
                         started_at=utcnow() - age)
        session.add(job)
        session.flush()
        return job.id


def test_a_job_whose_process_id_a_newer_process_took_is_ended(make_catalogue: Callable[..., Hub],
                                                              newer_process: int) -> None:
    hub = make_catalogue("ids", SCHEMA, b"id\n1\n")
    orphan = _running_job(hub, newer_process, timedelta(minutes=10))  # its process started before the job
    done = collect(hub, grace=timedelta(0))
    assert [(job.job_id, job.status) for job in done.jobs] == [(orphan, "failed")]


def test_a_job_whose_process_still_runs_is_kept(make_catalogue: Callable[..., Hub]) -> None:
    hub = make_catalogue("ids", SCHEMA, b"id\n1\n")
    mine = _running_job(hub, os.getpid(), timedelta(0))  # this process started before the job: it is the job's
    assert collect(hub, grace=timedelta(0)).jobs == []
    with hub.sessions() as session:
        assert session.get(HarvestJob, mine).status == "running"
