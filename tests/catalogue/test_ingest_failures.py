"""Every failure during a harvest ends its job as ``failed`` with a clear message; the CLI prints no
traceback and exits 1; the previous version stays current and intact.

Provoked for real: a file-size limit (RLIMIT_FSIZE) on the harvest's process while it downloads and
while it ingests, a catalogue database on a full tmpfs (root only), a delivery whose file is gone
(a harvester's bug), a commit the database refuses (IntegrityError).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from catalogue.errors import IngestFailed
from catalogue.hub import Hub
from catalogue.ingest import jobs
from catalogue.ingest.pipeline import Delivery, ingest_delivery
from catalogue.meta.models import HarvestJob
from catalogue.meta.metadata import get_dataset
from catalogue.settings import PROJECT_ROOT
from catalogue.store.keys import part_key
from harvesters.http_file import HttpFileHarvester
from harvesters.runner import harvest_source

NAME = "parking-occupancy"  # appended: a longer feed makes a new version


def _longer_feed(feed_dir: Path, days: int) -> int:
    """Extend the parking feed by ``days`` more days of readings (valid rows); its new size in bytes."""
    path = feed_dir / "feeds" / f"{NAME}.csv"
    header, *rows = path.read_text(encoding="utf-8").splitlines()
    out = [header, *rows]
    for day in range(1, days + 1):
        for row in rows:
            lot, stamp, rest = row.split(",", 2)
            moved = datetime.fromisoformat(stamp) + timedelta(days=day)
            out.append(f"{lot},{moved.isoformat()},{rest}")
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path.stat().st_size


def cli_env(hub: Hub, **extra: str) -> dict[str, str]:
    """The environment for an ``urbandata`` process that sees the catalogue as ``hub`` does.

    Settings a test may have changed are handed over as URBANDATA_* variables (lists as JSON),
    those that exist in this release only.
    """
    env = dict(os.environ)
    for name in ("feed_base_url", "definitions_dir", "database_url", "harvest_allowed_hosts"):
        value = getattr(hub.settings, name, None)
        if value is not None:
            env[f"URBANDATA_{name.upper()}"] = json.dumps(value) if isinstance(value, (list, tuple, set)) else str(value)
    return {**env, **extra}


def _harvest_cli(hub: Hub, fsize_limit: int | None) -> subprocess.CompletedProcess[str]:
    """``urbandata harvest`` in a process of its own, its files limited to ``fsize_limit`` bytes."""
    def limit() -> None:
        if fsize_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))

    return subprocess.run([sys.executable, "-m", "api.cli", "harvest", NAME, "-d", str(hub.settings.data_dir)],
                          capture_output=True, text=True, env=cli_env(hub), cwd=PROJECT_ROOT, preexec_fn=limit, timeout=300)


def _last_job(hub: Hub) -> HarvestJob:
    with hub.sessions() as session:
        job = session.scalars(select(HarvestJob).order_by(HarvestJob.id.desc())).first()
        assert job is not None
        return job


def _current_is_intact(hub: Hub, number: int) -> None:
    """The dataset's current version is ``number``, and each of its parts matches its hash."""
    with hub.sessions() as session:
        version = get_dataset(session, NAME).current_version
        assert version is not None and version.number == number
        parts = list(version.parts)
    for part in parts:
        assert hashlib.sha256(hub.storage.read_bytes(part_key(NAME, part["sha256"]))).hexdigest() == part["sha256"]


@pytest.fixture
def first(hub: Hub) -> Hub:
    assert harvest_source(hub, NAME).status == "published"
    return hub


def _no_scratch_left(hub: Hub) -> list[str]:
    scratch = hub.settings.store_dir / ".scratch"
    incoming = hub.settings.data_dir / "incoming"
    return sorted(p.name for d in (scratch, incoming) if d.is_dir() for p in d.iterdir())


def _assert_failed_cleanly(hub: Hub, done: subprocess.CompletedProcess[str], code: str) -> HarvestJob:
    """The CLI exited 1 without a traceback, printing the message its failed job keeps."""
    assert (done.returncode, "Traceback" in done.stdout + done.stderr) == (1, False), done.stdout + done.stderr
    job = _last_job(hub)
    assert (job.status, job.error_code, job.finished_at is not None) == ("failed", code, True), job.message
    assert job.message in " ".join(done.stdout.split())
    assert str(hub.settings.data_dir.resolve()) not in job.message
    return job


def test_a_file_size_limit_while_downloading_fails_the_job_without_a_traceback(first: Hub, feed_dir: Path) -> None:
    # The limit leaves room for the catalogue database (when it is a SQLite file here), not for the feed.
    db = first.settings.data_dir / "catalogue.sqlite"
    limit = (db.stat().st_size if db.exists() else 0) + 1_000_000
    assert _longer_feed(feed_dir, days=100) > limit
    job = _assert_failed_cleanly(first, _harvest_cli(first, limit), "insufficient-storage")
    assert job.message.startswith("The disk ran full while ingesting (OSError: [Errno 27] File too large).")
    assert "Nothing was published and the current version stays" in job.message
    _current_is_intact(first, 1)
    assert _no_scratch_left(first) == []
    # Once there is room again, the same harvest publishes.
    assert _harvest_cli(first, None).returncode == 0
    _current_is_intact(first, 2)


def _fill(mount: Path, leave: int) -> None:
    """Fill the file system at ``mount`` up to its last ``leave`` bytes."""
    filler = mount / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
    os.truncate(filler, max(0, filler.stat().st_size - leave))


def test_a_full_store_disk_while_ingesting_fails_the_job_without_a_traceback(first: Hub, feed_dir: Path) -> None:
    store = first.settings.store_dir
    kept = store.with_name("store-before")
    store.rename(kept)
    if not _mount_tmpfs(store, "2m"):
        kept.rename(store)
        pytest.skip("needs root to mount a small tmpfs")
    try:
        subprocess.run(["cp", "-a", f"{kept}/.", str(store)], check=True)
        _fill(store, leave=16 * 1024)  # the download (in incoming/, another disk) fits; the ingest does not
        _longer_feed(feed_dir, days=20)
        job = _assert_failed_cleanly(first, _harvest_cli(first, None), "insufficient-storage")
        assert "No space left on device" in job.message
        _current_is_intact(first, 1)
        assert _no_scratch_left(first) == []
        (store / "filler").unlink()
        assert _harvest_cli(first, None).returncode == 0
        _current_is_intact(first, 2)
    finally:
        subprocess.run(["umount", "-l", str(store)], capture_output=True)


class VanishingFileHarvester(HttpFileHarvester):
    """A harvester with a bug: it hands over a delivery whose file it has already removed."""

    def fetch(self, source: Any) -> Delivery | None:
        delivery = super().fetch(source)
        assert delivery is not None and delivery.path is not None
        delivery.path.unlink()
        return delivery


def test_a_bug_in_our_code_fails_the_job_with_a_message(first: Hub, feed_dir: Path) -> None:
    _longer_feed(feed_dir, days=1)
    first.registry.register("harvesters", "http-file", VanishingFileHarvester)
    outcome = harvest_source(first, NAME)
    assert (outcome.status, outcome.error_code) == ("failed", "ingest-failed")
    job = _last_job(first)
    assert (job.status, job.error_code, job.finished_at is not None) == ("failed", "ingest-failed", True)
    assert job.message.startswith("The ingest stopped on an internal error (FileNotFoundError: ")
    assert "Nothing was published and the current version stays" in job.message
    _current_is_intact(first, 1)


def test_a_commit_the_database_refuses_is_described(first: Hub, feed_dir: Path) -> None:
    _longer_feed(feed_dir, days=1)
    content = (feed_dir / "feeds" / f"{NAME}.csv").read_bytes()
    # A job id that does not exist: the version's foreign key makes the database refuse the commit.
    with pytest.raises(Exception) as refused:
        ingest_delivery(first, NAME, Delivery(content, "csv", {"delimiter": ","}, "append", {"source_url": "t"}),
                        job_id=987654)
    error = jobs.describe(refused.value, first)
    assert type(refused.value).__name__ == "IntegrityError"
    assert isinstance(error, IngestFailed)
    # The driver's own name for the refusal: sqlite3's IntegrityError, psycopg's ForeignKeyViolation.
    assert error.message.startswith(("The catalogue database refused the new version (IntegrityError: ",
                                     "The catalogue database refused the new version (ForeignKeyViolation: ")), \
        error.message
    _current_is_intact(first, 1)


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                                capture_output=True).returncode == 0


# Room for: not even SQLite's shared-memory file (0), no job (36 KiB), a job but no version (52 KiB).
@pytest.mark.parametrize("room_kib", [0, 36, 52])
@pytest.mark.embedded_only("fills the disk under the SQLite catalogue file")
def test_a_full_catalogue_database_fails_the_harvest_without_a_traceback(first: Hub, feed_dir: Path, tmp_path: Path,
                                                                       room_kib: int) -> None:
    mount = tmp_path / "tiny"
    if not _mount_tmpfs(mount, "1m"):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        # The catalogue database moves to the tmpfs, which is then filled up to its last byte.
        db = first.settings.data_dir / "catalogue.sqlite"
        first.close()
        (mount / "catalogue.sqlite").write_bytes(db.read_bytes())
        db.unlink()
        _fill(mount, leave=room_kib * 1024)
        _longer_feed(feed_dir, days=1)
        env_db = f"sqlite:///{mount / 'catalogue.sqlite'}"
        env = cli_env(first, URBANDATA_DATABASE_URL=env_db)
        done = subprocess.run([sys.executable, "-m", "api.cli", "harvest", NAME, "-d", str(first.settings.data_dir)],
                              capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=300)
        assert (done.returncode, "Traceback" in done.stdout + done.stderr) == (1, False), done.stdout + done.stderr
        printed = " ".join((done.stdout + done.stderr).split())
        assert ("disk I/O error" if room_kib == 0 else "database or disk is full") in printed, printed
        (mount / "filler").unlink()
        from catalogue.hub import open_hub

        hub = open_hub(first.settings.model_copy(update={"database_url": env_db}))
        try:
            with hub.sessions() as session:
                assert get_dataset(session, NAME).current_version.number == 1  # type: ignore[union-attr]
            job = _last_job(hub)
            if room_kib < 52:  # no room for the job: the harvest before is the last one
                assert job.status == "published"
            else:
                assert (job.status, job.error_code) == ("failed", "insufficient-storage")
                assert job.message.startswith("The catalogue database's disk is full while ingesting "
                                              "(OperationalError: database or disk is full).")
        finally:
            hub.close()
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
