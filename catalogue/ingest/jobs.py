"""Harvest jobs: the one module that writes a job's row, from start to its end.

A job is started (``start``, status ``running``, with the process id and
host that run it; a scheduled run is ``claim``-ed instead, which starts it
only if no other process did; with a job queue, the claim makes it ``queued`` and the
queue worker that gets its message ``take``-s it, so a message delivered again after
a worker died neither runs a finished job again nor runs one twice at once), then ends exactly once: ``finish`` with what became of
the delivery, or ``fail`` with any exception, ours included, turned into a
clear message and an error code (``describe``). A job whose process died
before either (``kill -9``, a power cut) is ended by the collector
(``interrupt_orphans``) as ``failed`` with the code ``job-interrupted``.

A catalogue harvest (a CKAN portal, a DCAT catalogue) is one job too: ``start_catalogue``
opens it (no dataset, the catalogue's name), each dataset's job in the run names it as its
parent (``start``'s ``parent_id``, ``withdrawn``'s), and ``finish_catalogue`` ends it with how
many datasets were created, updated, unchanged, withdrawn or failed, each failure with the id of
the source record it came from, and the bytes and rows of its datasets' jobs summed; a failed
listing ends it through ``fail`` like any job.
"""

from __future__ import annotations

import logging
import os
import socket
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from catalogue.errors import DISK_FULL_ERRNOS, DatabaseBusy, IngestFailed, InsufficientStorage, JobInterrupted, UrbandataError
from catalogue.hub import Hub
from catalogue.ingest.commit import dataset_lock
from catalogue.redact import redact_text
from catalogue.ingest.delivery import IngestResult
from catalogue.meta.models import HarvestJob, Version, utcnow

log = logging.getLogger(__name__)

# How the operating system, SQLite, DuckDB and Arrow say that a disk (or a file-size limit) is full.
DISK_FULL_WORDS = ("no space left on device", "database or disk is full", "file too large", "disk quota exceeded")
# A job on another host cannot be checked for a live process: ended only when older than this.
FOREIGN_JOB_LIMIT = timedelta(hours=24)
# A process started this long after a job began is not the job's (its id was reused).
PID_REUSE_SLACK_S = 30.0
# A job waiting this long in the queue lost its message (the queue's Redis was emptied): the collector ends it.
QUEUED_LIMIT = timedelta(hours=24)
IN_FLIGHT = ("running", "queued")  # a dataset with such a job is not claimed again


# What a catalogue run counts, in this order.
CATALOGUE_COUNTS = ("created", "updated", "unchanged", "withdrawn", "failed")


def start(hub: Hub, source_id: int | None, dataset_id: int, parent_id: int | None = None) -> int:
    """A new ``running`` job for a source's dataset, owned by this process; its id.

    ``parent_id``: the job of the catalogue run this harvest is part of (``start_catalogue``).
    """
    with hub.sessions.begin() as session:
        job = HarvestJob(source_id=source_id, dataset_id=dataset_id, status="running", parent_id=parent_id,
                         pid=os.getpid(), host=socket.gethostname())
        session.add(job)
        session.flush()
        return job.id


def claim(hub: Hub, source_id: int, dataset_id: int, dataset: str, last_job: int | None, *,
          queued: bool = False) -> int | None:
    """A new ``running`` job (``queued`` with ``queued``: for a queue worker to ``take``) for a scheduled
    harvest of the source, if it is still due; its id, else None.

    Still due means: no job of ``dataset`` is running or queued and the source's latest job is still ``last_job``
    (the one the scheduler saw when it found the source due; None: it had none). The check and the
    insert happen under the dataset's lock (``commit.dataset_lock``: SQLite's write lock, a PostgreSQL
    advisory lock), so of several processes or threads claiming the same due run exactly one gets it;
    the others get None, even when the winner's run has already ended.
    """
    with dataset_lock(hub, dataset) as session:
        running = session.scalar(select(HarvestJob.id).where(HarvestJob.dataset_id == dataset_id,
                                                             HarvestJob.status.in_(IN_FLIGHT)).limit(1))
        latest = session.scalar(select(func.max(HarvestJob.id)).where(HarvestJob.source_id == source_id))
        if running is not None or latest != last_job:
            return None
        job = HarvestJob(source_id=source_id, dataset_id=dataset_id, status="queued" if queued else "running",
                         pid=os.getpid(), host=socket.gethostname())
        session.add(job)
        session.flush()
        return job.id


def take(hub: Hub, job_id: int, dataset: str) -> str:
    """A queue worker takes job ``job_id`` of ``dataset`` from its message: ``run``, ``done`` or ``busy``.

    Under the dataset's lock: a ``queued`` job becomes ``running``, owned by this process from now: ``run``.
    A ``running`` job is a message delivered again: if a live process of this host runs it, ``busy``
    (try later); if its process is gone (a worker killed mid-job), the version it committed, if any,
    ends it as ``published`` (``done``), else this process owns it now and harvests again (``run``;
    the broker redelivers only a dead worker's messages, so a job of another host is taken over too).
    An ended job (or none) is ``done``: a message is never run into a second version.
    """
    with dataset_lock(hub, dataset) as session:
        job = session.get(HarvestJob, job_id)
        if job is None or job.status not in IN_FLIGHT:
            return "done"
        if job.status == "running":
            if job.host == socket.gethostname() and job.pid is not None and job.pid != os.getpid() \
                    and _alive(job.pid, job.started_at):
                return "busy"
            if _settle_from_version(session, job, utcnow()):
                return "done"
        job.status, job.pid, job.host, job.started_at = "running", os.getpid(), socket.gethostname(), utcnow()
        return "run"


def _settle_from_version(session: Session, job: HarvestJob, now: datetime) -> bool:
    """End ``job`` as ``published`` if its version was committed before its process died; whether it was."""
    version = session.scalar(select(Version).where(Version.harvest_job_id == job.id))
    if version is None:
        return False
    job.status, job.version_number, job.rows = "published", version.number, version.row_count
    job.message = f"version {version.number} (its process ended before it recorded this)"
    job.finished_at = now
    return True


def finish(hub: Hub, job_id: int, result: IngestResult | None, *, note: str = "",
           bytes_received: int | None = None) -> None:
    """End the job with what became of its delivery (``result``; None: the source had nothing new, ``note`` says why)."""
    with hub.sessions.begin() as session:
        job = session.get(HarvestJob, job_id)
        if job is None:
            return
        if result is None:
            job.status, job.message = "unchanged", note
        else:
            job.status, job.message, job.report_key = result.status, result.note or note, result.report_key
            job.version_number, job.rows = result.version, result.rows
            counted = result.changes if result.status == "published" and result.changes else {}
            job.rows_added, job.rows_changed, job.rows_removed = (counted.get(k) for k in ("added", "changed", "removed"))
            job.errors = report_errors(result.report) if result.status == "quarantined" else None
        job.bytes_received = bytes_received
        job.finished_at = utcnow()


def report_errors(report: dict[str, Any], limit: int = 100) -> list[dict[str, Any]]:
    """Up to ``limit`` errors of a Frictionless report, each with the row (or line) and field it came from."""
    found = list(report.get("errors", []))
    for task in report.get("tasks", []):
        found += task.get("errors", [])
    kept = []
    for error in found[:limit]:
        text = redact_text(str(error.get("message") or error.get("note", "")))
        entry: dict[str, Any] = {"type": error.get("type", ""), "message": text}
        for source, target in (("rowNumber", "row"), ("line", "line"), ("record", "record"), ("fieldName", "field"),
                               ("cell", "cell")):
            if error.get(source) not in (None, ""):
                entry[target] = error[source]
        kept.append(entry)
    return kept


def withdrawn(hub: Hub, source_id: int | None, dataset_id: int, message: str, parent_id: int | None = None) -> int:
    """A finished job with status ``withdrawn``: a catalogue source no longer lists the dataset; its id."""
    with hub.sessions.begin() as session:
        now = utcnow()
        job = HarvestJob(source_id=source_id, dataset_id=dataset_id, status="withdrawn", message=message,
                         started_at=now, finished_at=now, pid=os.getpid(), host=socket.gethostname(),
                         parent_id=parent_id)
        session.add(job)
        session.flush()
        return job.id


def start_catalogue(hub: Hub, catalogue: str) -> int:
    """A new ``running`` job for a run of the catalogue source named ``catalogue``; its id."""
    with hub.sessions.begin() as session:
        job = HarvestJob(catalogue=catalogue, status="running", pid=os.getpid(), host=socket.gethostname())
        session.add(job)
        session.flush()
        return job.id


def finish_catalogue(hub: Hub, job_id: int, message: str, counts: dict[str, int],
                     failures: list[dict[str, Any]], limit: int = 1000) -> None:
    """End a catalogue run as ``finished``: its ``counts`` (CATALOGUE_COUNTS), its ``failures`` (each naming the
    source record: ``record``, the remote id), and its datasets' jobs' bytes and rows summed."""
    unknown = set(counts) - set(CATALOGUE_COUNTS)
    if unknown:
        raise ValueError(f"not a catalogue count: {sorted(unknown)}")
    with hub.sessions.begin() as session:
        job = session.get(HarvestJob, job_id)
        if job is None:
            return
        sums = session.execute(select(func.sum(HarvestJob.bytes_received), func.sum(HarvestJob.rows_added),
                                      func.sum(HarvestJob.rows_changed), func.sum(HarvestJob.rows_removed))
                               .where(HarvestJob.parent_id == job_id)).one()
        job.bytes_received, job.rows_added, job.rows_changed, job.rows_removed = (
            None if n is None else int(n) for n in sums)  # PostgreSQL sums bigints as numeric
        job.status, job.message, job.finished_at = "finished", redact_text(message), utcnow()
        job.counts = {name: counts.get(name, 0) for name in CATALOGUE_COUNTS}
        job.errors = [{k: redact_text(v) if isinstance(v, str) else v for k, v in failure.items()}
                      for failure in failures[:limit]] or None


def fail(hub: Hub, job_id: int, exc: BaseException) -> UrbandataError:
    """End the job as ``failed`` with ``exc`` described for people; the error it recorded.

    Never raises: when even this write fails (the database is full or gone),
    the job stays ``running`` until the collector ends it as interrupted.
    """
    error = describe(exc, hub)
    try:
        with hub.sessions.begin() as session:
            job = session.get(HarvestJob, job_id)
            if job is not None:
                job.status, job.error_code, job.finished_at = "failed", error.code, utcnow()
                job.message = redact_text(error.message)  # a source URL in it never shows its credentials
                job.errors = [_failure_entry(error)]
    except (SQLAlchemyError, OSError) as second:
        log.warning("job %s could not be marked failed (%s); the collector will end it", job_id, second)
    return error


def describe(exc: BaseException, hub: Hub | None = None) -> UrbandataError:
    """``exc`` as one of our errors with a message that says what happened and what to do.

    Our own errors pass unchanged; a full disk, a busy or full database and
    anything unexpected (a bug) get a message without a stack trace, which
    goes to the debug log instead.
    """
    if isinstance(exc, UrbandataError):
        return exc
    # A database error's own text, without SQLAlchemy's statement and link lines.
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = f"{type(cause).__name__}: {cause}"
    if hub is not None:  # messages never carry the server's paths
        text = text.replace(str(hub.settings.data_dir.resolve()), "<data dir>")
    text = text if len(text) <= 300 else text[:297] + "..."
    if (isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS) or any(w in text.lower() for w in DISK_FULL_WORDS):
        what = "The catalogue database's disk is full" if isinstance(exc, DBAPIError) else "The disk ran full"
        return InsufficientStorage(
            f"{what} while ingesting ({text}). Nothing was published and the current version stays. "
            "Free space in the data directory (`urbandata gc` removes leftovers), then harvest again.")
    if isinstance(exc, OperationalError) and "locked" in text.lower():
        return DatabaseBusy(
            "The catalogue database stayed locked by another writer for too long. Nothing was published; "
            "harvest again when the other commit is done.", retry_after_s=5)
    if isinstance(exc, OperationalError):
        return IngestFailed(
            f"The catalogue database failed ({text}). Nothing was published and the current version stays; "
            "check that the disk holding the database has room and is writable, then harvest again.")
    if isinstance(exc, IntegrityError):
        return IngestFailed(
            f"The catalogue database refused the new version ({text}). Nothing was published and the current "
            "version stays; harvest again, and report this if it repeats.")
    log.debug("ingest failed", exc_info=exc)
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {os.path.basename(where.filename)}:{where.lineno}" if where else ""
    return IngestFailed(
        f"The ingest stopped on an internal error ({text}{at}). Nothing was published and the current version "
        "stays. Please report this with the delivery; its job keeps this message.")


def _failure_entry(error: UrbandataError) -> dict[str, Any]:
    """A failure as a job error: its code and message, and the line or record it names, if any."""
    entry: dict[str, Any] = {"type": error.code, "message": redact_text(error.message)}
    details = getattr(error, "details", None) or {}
    for key in ("line", "record", "row", "field", "url"):
        if key in details:
            entry[key] = redact_text(details[key]) if isinstance(details[key], str) else details[key]
    return entry


@dataclass
class Interrupted:
    """A job the collector ended: its id and what it was set to."""

    job_id: int
    status: str
    message: str


def interrupt_orphans(hub: Hub, grace: timedelta) -> list[Interrupted]:
    """End jobs left ``running`` by a process that is gone (started more than ``grace`` ago).

    A job whose version was committed before its process died is ended as
    ``published``; any other as ``failed`` with the code ``job-interrupted``.
    A job of another host is ended only after FOREIGN_JOB_LIMIT, since its
    process cannot be checked from here; a ``queued`` job no worker took
    within QUEUED_LIMIT (its message was lost) is ended as interrupted.
    """
    now, host = utcnow(), socket.gethostname()
    ended: list[Interrupted] = []
    with hub.sessions.begin() as session:
        running = session.scalars(select(HarvestJob).where(HarvestJob.status == "running",
                                                          HarvestJob.started_at < now - grace)).all()
        lost = session.scalars(select(HarvestJob).where(HarvestJob.status == "queued",
                                                       HarvestJob.started_at < now - QUEUED_LIMIT)).all()
        for job in lost:
            job.status, job.error_code, job.finished_at = "failed", JobInterrupted.code, now
            job.message = (f"interrupted: no queue worker took this job within {QUEUED_LIMIT} (its message was "
                           "lost). Nothing was published by it; harvest again.")
            ended.append(Interrupted(job.id, job.status, job.message))
        for job in running:
            if job.host == host and job.pid is not None and _alive(job.pid, job.started_at):
                continue
            if job.host not in (None, host) and job.started_at > now - FOREIGN_JOB_LIMIT:
                continue
            if job.catalogue is not None:  # a catalogue run: its datasets' jobs each say what they did
                job.status, job.error_code, job.finished_at = "failed", JobInterrupted.code, now
                job.message = (f"interrupted: the run of catalogue '{job.catalogue}' ended before it finished "
                               f"(killed or restarted). Its datasets' jobs (parent {job.id}) say what each did; "
                               "run `urbandata harvest-catalogue` again.")
            elif not _settle_from_version(session, job, now):
                job.status, job.error_code, job.finished_at = "failed", JobInterrupted.code, now
                job.message = ("interrupted: the harvest's process ended before the job finished (killed or "
                               "restarted). Nothing was published by it; harvest again.")
            ended.append(Interrupted(job.id, job.status, job.message))
    return ended


def _alive(pid: int, since: datetime) -> bool:
    """Whether the process that started a job at ``since`` may still run: ``pid`` is alive and was not
    started after the job (ids are reused: Linux hands out 32,768 by default, and a busy machine
    cycles through them in minutes)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    started = process_started_at(pid)
    moment = since if since.tzinfo else since.replace(tzinfo=timezone.utc)  # stored without a zone, in UTC
    # The slack covers /proc's whole-second boot time and a clock stepped since the job started.
    return started is None or started <= moment.timestamp() + PID_REUSE_SLACK_S


def process_started_at(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), from /proc; None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(line for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
    except (OSError, StopIteration):
        return None
    ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, after the command name (which may hold spaces)
    return int(boot.split()[1]) + ticks / os.sysconf("SC_CLK_TCK")
