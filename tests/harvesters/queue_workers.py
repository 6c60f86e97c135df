"""Helpers of the job-queue tests: a Redis namespace per test and `urbandata worker` processes it can kill.

``queue_settings`` (a fixture: settings for a queue on the machine's Redis under a namespace of the test's
own, its keys deleted after), ``workers`` (a fixture making ``Workers``: worker commands in process groups
of their own, all stopped after the test), ``wait_for`` and ``job_rows``. Import the fixtures into the
test module that uses them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from catalogue.hub import Hub
from catalogue.meta.models import Dataset, HarvestJob

REDIS_URL = "redis://127.0.0.1:6379/0"
HEARTBEAT_S = 3.0  # a killed worker's job goes back to the queue this long after its last heartbeat


@pytest.fixture
def queue_settings() -> Iterator[dict[str, Any]]:
    """Settings for a job queue on the machine's Redis under a namespace of this test (its keys deleted after)."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at {REDIS_URL} is not reachable: {exc}")
    namespace = f"urbandata-test-{uuid.uuid4().hex[:10]}"
    yield {"queue_url": REDIS_URL, "queue_namespace": namespace, "queue_heartbeat_timeout_s": HEARTBEAT_S}
    for key in client.scan_iter(f"{namespace}*"):
        client.delete(key)
    client.close()


class Workers:
    """`urbandata worker` commands started by a test, each in its own process group; all stopped after it."""

    def __init__(self, hub: Hub) -> None:
        self.hub, self.commands = hub, []  # type: ignore[var-annotated]
        s = hub.settings
        self.env = {**os.environ, "URBANDATA_DEFINITIONS_DIR": str(s.definitions_dir),
                    "URBANDATA_DATABASE_URL": s.resolved_database_url, "URBANDATA_QUEUE_URL": s.queue_url,
                    "URBANDATA_QUEUE_NAMESPACE": s.queue_namespace,
                    "URBANDATA_QUEUE_HEARTBEAT_TIMEOUT_S": str(s.queue_heartbeat_timeout_s), "PYTHONUNBUFFERED": "1"}
        if s.storage == "s3":  # the same object store (its credentials are in the environment already)
            self.env.update({"URBANDATA_STORAGE": "s3", "URBANDATA_S3_ENDPOINT_URL": s.s3_endpoint_url or "",
                             "URBANDATA_S3_BUCKET": s.s3_bucket or "", "URBANDATA_S3_PREFIX": s.s3_prefix})

    def start(self, processes: int) -> subprocess.Popen[str]:
        command = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "worker", "--processes", str(processes), "--threads", "1",
             "-d", str(self.hub.settings.data_dir)],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.commands.append(command)
        return command

    def children(self, command: subprocess.Popen[str]) -> set[int]:
        """The worker processes a command started (its children, read from /proc)."""
        found = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as stat:
                        parent = int(stat.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError):
                    continue
                if parent == command.pid:
                    found.add(int(entry))
        return found

    def stop(self) -> list[str]:
        outputs = []
        for command in self.commands:
            if command.poll() is None:
                os.killpg(command.pid, signal.SIGTERM)
            try:
                out, _ = command.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(command.pid, signal.SIGKILL)
                out, _ = command.communicate()
            outputs.append(out)
        return outputs


@pytest.fixture
def workers() -> Iterator[Callable[[Hub], Workers]]:
    made: list[Workers] = []

    def make(hub: Hub) -> Workers:
        made.append(Workers(hub))
        return made[-1]

    yield make
    for group in made:
        group.stop()


def wait_for(what: str, check: Callable[[], Any], seconds: float, workers: Workers) -> Any:
    """``check()`` once it is truthy; fails naming ``what`` (and the workers' output) after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {seconds} s; workers said:\n" + "\n".join(workers.stop()))
        time.sleep(0.2)
    return value


def job_rows(hub: Hub) -> list[tuple[str, str, int | None, int | None]]:
    """Every job as (dataset, status, version number, pid), in id order."""
    with hub.sessions() as session:
        return [tuple(row) for row in session.execute(  # type: ignore[misc]
            select(Dataset.name, HarvestJob.status, HarvestJob.version_number, HarvestJob.pid)
            .join(Dataset, HarvestJob.dataset_id == Dataset.id).order_by(HarvestJob.id)).all()]
