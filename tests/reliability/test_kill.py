"""``kill -9`` of a harvest (``urbandata harvest`` in a process of its own) at random moments and at exact
steps of the commit, while a reader checks the current version through the engine and the API meanwhile.

The exact steps are found without tracing: the test polls the store and the catalogue database and kills
the harvest the moment its download, its ingest scratch, its delivery report, a new part, the new
descriptor, the commit's write to the SQLite WAL or the committed version row appears. After every
kill the catalogue holds whole versions only (the old current one, or the new one complete), every part
matching its sha256 and every descriptor its database row; the next harvest publishes; ``urbandata gc``
afterwards ends every interrupted job and leaves no unreferenced file.

CI kills 5 times (about 40 s); the full run (RELIABILITY.md) kills at least 30 times:

    URBANDATA_KILLS=30 python -m pytest -s -p no:cacheprovider tests/reliability/test_kill.py
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app
from api.feed_server import FeedServer
from catalogue.hub import Hub, open_hub
from catalogue.meta.definitions import load_definitions, sync_definitions
from catalogue.meta.metadata import get_dataset
from catalogue.meta.models import Dataset, HarvestJob, Version
from catalogue.settings import PROJECT_ROOT, Settings
from harvesters.runner import harvest_source
from tests.catalogue.test_ingest_failures import cli_env
from tests.reliability.parking_feed import Feed
from tests.reliability.checks import unaccounted_files, verify_version, verify_versions

DEMO = PROJECT_ROOT / "datasets"
NAME = "parking-occupancy"  # appended: each round's feed has one more day of readings, so a new version
KILLS = int(os.environ.get("URBANDATA_KILLS", "5"))
SEED = int(os.environ.get("URBANDATA_KILL_SEED", "12"))
# CI: one random moment and the three steps around the commit; the full run cycles through all of them.
CI_KINDS = ["random", "part", "descriptor", "commit-wal", "committed"]
ALL_KINDS = ["random", "download", "scratch", "report", "part", "descriptor", "commit-wal", "committed", "random"]

pytestmark = [pytest.mark.slow]  # about 30 s of harvests in CI
if KILLS > len(CI_KINDS):
    pytestmark.append(pytest.mark.timeout(60 * KILLS + 300))  # the suite's 300 s cap would stop the long run


@dataclass
class Store:
    """What a harvest of NAME writes, looked at by polling (no tracing): the moment each step happens."""

    hub: Hub
    before: dict[str, set[str]] = field(default_factory=dict)
    wal_at_part: tuple[int, int] | None = None
    versions_before: int = 0

    def _dirs(self) -> dict[str, Path]:
        data, store = self.hub.settings.data_dir, self.hub.settings.store_dir
        ds = store / "datasets" / NAME
        return {"download": data / "incoming", "scratch": store / ".scratch", "report": ds / "reports",
                "part": ds / "parts", "descriptor": ds}

    def _list(self, kind: str) -> set[str]:
        try:
            names = set(os.listdir(self._dirs()[kind]))
        except FileNotFoundError:
            return set()
        if kind == "descriptor":
            return {n for n in names if n.endswith(".datapackage.json")}
        return {n for n in names if not n.startswith(".")}

    def _wal(self) -> tuple[int, int]:
        try:
            st = os.stat(self.hub.settings.data_dir / "catalogue.sqlite-wal")
        except FileNotFoundError:
            return (0, 0)
        return (st.st_size, st.st_mtime_ns)

    def _versions(self) -> int:
        # Read-only and without the catalogue's engine: a reader in WAL mode takes no lock the harvest waits for.
        with sqlite3.connect(f"file:{self.hub.settings.data_dir / 'catalogue.sqlite'}?mode=ro", uri=True) as con:
            return con.execute("SELECT count(*) FROM versions").fetchone()[0]

    def baseline(self) -> None:
        self.before = {kind: self._list(kind) for kind in self._dirs()}
        self.versions_before = self._versions()
        self.wal_at_part = None

    def happened(self, kind: str) -> bool:
        """Whether the harvest has reached step ``kind`` since the baseline."""
        if kind == "committed":  # between the commit and the job's end
            return self._versions() > self.versions_before
        if kind == "commit-wal":
            # The commit's transaction is the first write to the catalogue after the parts.
            if self.wal_at_part is None:
                if self._list("part") - self.before["part"]:
                    self.wal_at_part = self._wal()
                return False
            return self._wal() != self.wal_at_part
        return bool(self._list(kind) - self.before[kind])


@dataclass
class Reader:
    """A thread reading the current version meanwhile, through the engine (every part hashed) and the API
    in process (records' total_count must be the row count of the version it names, and that version's
    datapackage.json its hash): never a mix."""

    hub: Hub
    stop: threading.Event = field(default_factory=threading.Event)
    reads: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="reader", daemon=True)
        thread.start()
        return thread

    async def _run(self) -> None:
        app = create_app(self.hub.settings, self.hub)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as client:
            while not self.stop.is_set():
                try:
                    self._engine()
                    await self._api(client)
                except Exception as exc:  # noqa: BLE001 - every failure is reported by the test
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.02)
        app.state.query_engine.close()
        app.state.sql_pool.close()

    def _engine(self) -> None:
        with self.hub.sessions() as session:
            version = get_dataset(session, NAME).current_version
            assert version is not None
        verify_version(self.hub, NAME, version)
        self.reads["engine"] += 1

    async def _api(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"/api/v1/datasets/{NAME}/records", params={"limit": 1})
        assert response.status_code == 200, response.text
        body = response.json()
        with self.hub.sessions() as session:
            rows, sha = session.execute(select(Version.row_count, Version.content_hash)
                                        .join(Dataset, Version.dataset_id == Dataset.id)
                                        .where(Dataset.name == NAME, Version.number == body["version"])).one()
        assert body["total_count"] == rows, f"API: version {body['version']} answered {body['total_count']} of {rows} rows"
        described = await client.get(f"/api/v1/datasets/{NAME}/versions/{body['version']}/datapackage.json")
        assert described.status_code == 200, described.text
        assert described.json()["urbandata"]["sha256"] == sha, f"API: version {body['version']}'s descriptor is another's"
        self.reads["api"] += 1


@pytest.fixture
def catalogue(tmp_path: Path) -> Iterator[tuple[Hub, Feed]]:
    """The demo definitions, NAME harvested once, its feed served from a copy the test extends."""
    shutil.copytree(DEMO / "feeds", tmp_path / "feeds-root" / "feeds")
    with FeedServer(tmp_path / "feeds-root") as server:
        # Loopback feeds are allowed by the tests' environment (tests/conftest.py).
        hub = open_hub(Settings(data_dir=tmp_path / "var", feed_base_url=server.url))
        sync_definitions(hub, load_definitions(hub.settings.definitions_dir))
        assert harvest_source(hub, NAME).status == "published"
        yield hub, Feed(tmp_path / "feeds-root" / "feeds" / f"{NAME}.csv")
        hub.close()


def _harvest(hub: Hub) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "api.cli", "harvest", NAME, "-d", str(hub.settings.data_dir)],
                            cwd=PROJECT_ROOT, env=cli_env(hub), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _current(hub: Hub) -> int:
    return verify_versions(hub)[NAME][-1]


def _kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool], deadline_s: float = 180) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()``; whether the kill landed (False: it had ended by itself)."""
    until = time.monotonic() + deadline_s
    while proc.poll() is None and time.monotonic() < until:
        if ready():
            break
        time.sleep(0.0005)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.returncode == -signal.SIGKILL


@pytest.mark.embedded_only("kills at moments read from the SQLite write-ahead log and the local store's files; "
                      "tests/api/test_scale_out.py kills a worker on PostgreSQL and SeaweedFS")
def test_kill_9_during_harvests_leaves_whole_versions_and_gc_settles_the_jobs(catalogue: tuple[Hub, Feed]) -> None:
    hub, feed = catalogue
    rng = random.Random(SEED)
    store = Store(hub)
    # One harvest undisturbed: it publishes, and its duration bounds the random moments.
    feed.add_day()
    started = time.monotonic()
    proc = _harvest(hub)
    output = proc.communicate(timeout=300)[0].decode(errors="replace")
    typical_s = time.monotonic() - started
    assert (proc.returncode, _current(hub)) == (0, 2), output

    reader = Reader(hub)
    thread = reader.start()
    kinds = CI_KINDS if KILLS <= len(CI_KINDS) else ALL_KINDS
    landed: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    outcome: Counter[str] = Counter()
    killed_pids: list[int] = []
    try:
        for round_ in range(3 * KILLS):
            if sum(landed.values()) >= KILLS:
                break
            kind = kinds[round_ % len(kinds)]
            before = _current(hub)
            feed.add_day()
            store.baseline()
            proc = _harvest(hub)
            if kind == "random":
                moment = time.monotonic() + rng.uniform(0.0, typical_s)
                hit = _kill_when(proc, lambda: time.monotonic() >= moment)
            else:
                hit = _kill_when(proc, lambda: store.happened(kind))
            if proc.stdout is not None:
                proc.stdout.close()
            after = _current(hub)  # every version verified: whole, hashed, matching its descriptor
            assert after in (before, before + 1), f"round {round_} ({kind}): version {before} became {after}"
            if hit:
                landed[kind] += 1
                killed_pids.append(proc.pid)
                outcome["new version whole" if after > before else "old version kept"] += 1
            else:
                missed[kind] += 1
    finally:
        reader.stop.set()
        thread.join(timeout=60)

    # The next harvest works.
    last = _current(hub)
    feed.add_day()
    proc = _harvest(hub)
    output = proc.communicate(timeout=300)[0].decode(errors="replace")
    assert (proc.returncode, _current(hub)) == (0, last + 1), output

    # The collector ends every job a kill left running and frees what the kills left behind.
    with hub.sessions() as session:
        running = {job.id: job.pid for job in session.scalars(select(HarvestJob).where(HarvestJob.status == "running"))}
    assert set(running.values()) <= set(killed_pids)
    leftovers = unaccounted_files(hub)
    gc = subprocess.run([sys.executable, "-m", "api.cli", "gc", "--grace-hours", "0", "-d", str(hub.settings.data_dir)],
                        cwd=PROJECT_ROOT, env=cli_env(hub), capture_output=True, text=True, timeout=300)
    assert gc.returncode == 0 and "Traceback" not in gc.stdout + gc.stderr, gc.stdout + gc.stderr
    summary = " ".join(gc.stdout.split())
    assert f"ended {len(running)} interrupted jobs." in summary
    with hub.sessions() as session:
        jobs = {job.id: job for job in session.scalars(select(HarvestJob).where(HarvestJob.id.in_(running)))}
        settled = Counter(f"{job.status} {job.error_code or ''}".strip() for job in jobs.values())
        assert session.scalars(select(HarvestJob).where(HarvestJob.status == "running")).all() == []
    assert set(settled) <= {"failed job-interrupted", "published"}, settled
    assert unaccounted_files(hub) == []
    verify_versions(hub)

    report = {"kills_landed": dict(landed), "ended_before_the_kill": dict(missed), "after_kill": dict(outcome),
              "typical_harvest_s": round(typical_s, 1), "reader": dict(reader.reads),
              "jobs_left_running": len(running), "jobs_settled_by_gc": dict(settled),
              "leftovers_before_gc": len(leftovers), "versions": _current(hub), "seed": SEED,
              "load_average": os.getloadavg()}
    print("\nkill -9:", json.dumps(report))
    assert reader.failures == []
    assert reader.reads["engine"] > 0 and reader.reads["api"] > 0
    assert sum(landed.values()) >= KILLS, report
