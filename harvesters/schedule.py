"""Harvest schedules: when each source is due, and a runner of due sources (``harvest --due``, ``serve``).

A source's ``schedule`` is a cron expression (``*/15 * * * *``, five fields, UTC) or an interval
(``90s``, ``15m``, ``6h``, ``1d``, ``1w``); without one it follows its dataset's update frequency
(HOURLY every hour, DAILY every day...; IRREG, NEVER and UNKNOWN are harvested only on request).
A source is due when it never ran, or when its next time after its last run has come.

Runs are one at a time: ``run_due`` harvests due sources one after another, and a dataset with a
job still ``running`` (in any process) is skipped, so no dataset is harvested twice at once.
Each due run is claimed before it starts (``catalogue.ingest.jobs.claim``): under the dataset's
lock, only if no job of the dataset is running and the source had no run since it was found due.
So of several processes running ``harvest --due`` (or ``serve``) at once, one harvests each due
source and the others skip it. Sources a catalogue harvest withdrew (``withdrawn_at`` in their
options) are not scheduled.

With a job queue (``queue_url``), a claimed run is ``queued`` instead and sent to the queue
(``harvesters.queue``), whose ``urbandata worker`` processes harvest it; a dataset with a queued
job is not claimed again until it ran.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from catalogue.background import BackgroundThread
from catalogue.errors import DefinitionError, UrbandataError
from catalogue.hub import Hub
from catalogue.ingest import jobs
from catalogue.meta.models import Dataset, HarvestJob, HarvestSource, utcnow
from harvesters.runner import HarvestOutcome, harvest_source

log = logging.getLogger(__name__)

FREQUENCY_INTERVALS = {
    "CONT": timedelta(minutes=5), "HOURLY": timedelta(hours=1), "DAILY": timedelta(days=1),
    "WEEKLY": timedelta(weeks=1), "MONTHLY": timedelta(days=30), "QUARTERLY": timedelta(days=91),
    "ANNUAL": timedelta(days=365),
}
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_INTERVAL = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


@dataclass(frozen=True)
class Schedule:
    """Every ``interval``, or at the times of the cron expression ``cron``."""

    text: str
    interval: timedelta | None = None
    cron: str | None = None

    def next_after(self, moment: datetime) -> datetime:
        """The first due time after ``moment``."""
        if self.interval is not None:
            return moment + self.interval
        from croniter import croniter  # type: ignore[import-untyped]  # imported only where a cron expression is read

        return croniter(self.cron, moment).get_next(datetime)  # type: ignore[no-any-return]


def parse_schedule(text: str) -> Schedule:
    """A schedule from its text; DefinitionError naming both accepted forms otherwise."""
    match = _INTERVAL.match(text)
    if match:
        seconds = int(match.group(1)) * UNITS[match.group(2)]
        if seconds <= 0:
            raise DefinitionError(f"The schedule '{text}' is no interval: it must be longer than 0, e.g. 15m.",
                                  details={"schedule": text})
        return Schedule(text, interval=timedelta(seconds=seconds))
    if len(text.split()) == 5:
        from croniter import croniter  # a dependency of the embedded default

        if croniter.is_valid(text):
            return Schedule(text, cron=text)
    raise DefinitionError(
        f"The schedule '{text}' is neither an interval (a number and s, m, h, d or w: 15m, 6h, 1d) nor a cron "
        "expression of five fields (*/15 * * * *).", details={"schedule": text})


def check_schedules(definitions: list[dict[str, Any]]) -> None:
    """DefinitionError listing every dataset definition whose source schedule does not parse (``urbandata validate``)."""
    problems = []
    for doc in definitions:
        text = (doc.get("source") or {}).get("schedule")
        if text:
            try:
                parse_schedule(text)
            except DefinitionError as exc:
                problems.append(f"- definitions/{doc['name']}.yaml, at source/schedule: {exc.message}")
    if problems:
        raise DefinitionError(f"{len(problems)} problem(s) in the dataset definitions:\n" + "\n".join(problems))


def source_schedule(schedule: str | None, update_frequency: str) -> Schedule | None:
    """The source's own schedule, else its dataset's update frequency as an interval (None: on request only)."""
    if schedule:
        return parse_schedule(schedule)
    interval = FREQUENCY_INTERVALS.get(update_frequency)
    return Schedule(f"{update_frequency.lower()} (update frequency)", interval=interval) if interval else None


@dataclass(frozen=True)
class DueState:
    """One source and when it is next due (None: not scheduled)."""

    source: str
    dataset: str
    schedule: Schedule | None
    last_started: datetime | None
    running: bool
    source_id: int = 0
    dataset_id: int = 0
    last_job: int | None = None  # the source's latest job when this was read: a claim checks it is still that

    def due_at(self) -> datetime | None:
        if self.schedule is None:
            return None
        return self.schedule.next_after(self.last_started) if self.last_started else datetime.min.replace(
            tzinfo=utcnow().tzinfo)


def schedule_states(hub: Hub) -> list[DueState]:
    """Every source with its schedule, its last run's start and whether a job of its dataset is running.

    A source withdrawn by a catalogue harvest (``withdrawn_at`` in its options) has no schedule.
    """
    with hub.sessions() as session:
        last = {source: (started, job) for source, started, job in session.execute(
            select(HarvestJob.source_id, func.max(HarvestJob.started_at), func.max(HarvestJob.id))
            .group_by(HarvestJob.source_id)).all()}
        running = set(session.scalars(select(HarvestJob.dataset_id).where(HarvestJob.status.in_(jobs.IN_FLIGHT))))
        rows = session.execute(select(HarvestSource.name, HarvestSource.schedule, HarvestSource.id,
                                      HarvestSource.dataset_id, Dataset.name, Dataset.update_frequency,
                                      HarvestSource.options)
                               .join(Dataset, HarvestSource.dataset_id == Dataset.id)
                               .order_by(HarvestSource.name)).all()
    states = []
    for name, schedule, source_id, dataset_id, dataset, frequency, options in rows:
        started, last_job = last.get(source_id, (None, None))
        if started is not None and started.tzinfo is None:
            started = started.replace(tzinfo=utcnow().tzinfo)  # stored without a zone on SQLite, in UTC
        try:
            planned = None if "withdrawn_at" in (options or {}) else source_schedule(schedule, frequency)
        except DefinitionError as exc:  # one bad schedule must not stop the others; it is said every round
            log.warning("source %s is not scheduled: %s", name, exc.message)
            planned = None
        states.append(DueState(name, dataset, planned, started, dataset_id in running, source_id, dataset_id,
                               last_job))
    return states


def due_states(hub: Hub, now: datetime | None = None) -> list[DueState]:
    """The sources due at ``now`` whose dataset has no running job, most overdue first."""
    now = now or utcnow()
    due = [(at, s.source, s) for s in schedule_states(hub) if not s.running and (at := s.due_at()) is not None]
    return [state for at, _, state in sorted(due, key=lambda d: (d[0], d[1])) if at <= now]


def due_sources(hub: Hub, now: datetime | None = None) -> list[str]:
    """Names of the sources due at ``now`` whose dataset has no running job, most overdue first."""
    return [s.source for s in due_states(hub, now)]


def check_queue(hub: Hub) -> None:
    """QueueUnreachable unless the hub's job queue answers (nothing to check without one): said once, before
    any run is claimed, rather than once per due source."""
    if hub.settings.queue_url:
        from harvesters.queue import check  # only with a queue: dramatiq is the [queue] extra

        check(hub.settings)


def harvest_due(hub: Hub, state: DueState) -> HarvestOutcome | None:
    """Claim the due run of ``state`` (``jobs.claim``) and harvest it, or with a job queue send it there (an
    outcome ``queued``); None if another process claimed it first."""
    queued = bool(hub.settings.queue_url)
    try:
        job_id = jobs.claim(hub, state.source_id, state.dataset_id, state.dataset, state.last_job, queued=queued)
    except Exception as exc:  # noqa: BLE001 - the database cannot take the job (busy, full): say so, no job
        error = jobs.describe(exc, hub)
        return HarvestOutcome(state.source, state.dataset, "failed", f"{state.dataset}: {error.message}",
                              error_code=error.code)
    if job_id is None:
        log.info("scheduled harvest of %s skipped: another process runs or ran it", state.source)
        return None
    if queued:
        from harvesters.queue import enqueue

        return enqueue(hub, state.source, state.dataset, job_id)
    return harvest_source(hub, state.source, job_id)


def run_due(hub: Hub, now: datetime | None = None) -> list[HarvestOutcome]:
    """Harvest every due source once, one after another, each claimed first (or queue them); the outcomes."""
    check_queue(hub)
    outcomes = [harvest_due(hub, state) for state in due_states(hub, now)]
    return [o for o in outcomes if o is not None]


class HarvestScheduler(BackgroundThread):
    """A background thread harvesting due sources every ``tick_s`` seconds (``urbandata serve``).

    ``after_publish`` runs after a round in which some delivery was published, with the names of the
    datasets published (the incremental site rebuild).
    """

    def __init__(self, hub: Hub, tick_s: float = 30.0,
                 after_publish: Callable[[list[str]], object] | None = None) -> None:
        super().__init__("harvest-scheduler")
        self.hub, self.tick_s, self.after_publish = hub, tick_s, after_publish

    def run_once(self) -> list[HarvestOutcome]:
        """One round: every due source (claimed first), then the site if anything was published."""
        outcomes = []
        check_queue(self.hub)
        for state in due_states(self.hub):
            if self.stopped.is_set():
                break
            outcome = harvest_due(self.hub, state)
            if outcome is not None:
                outcomes.append(outcome)
                log.info("scheduled harvest: %s", outcome.message)
        published = sorted({o.dataset for o in outcomes if o.status == "published"})
        if self.after_publish is not None and published:
            self.after_publish(published)
        return outcomes

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.run_once()
            except UrbandataError as exc:  # the job queue does not answer: said in one line, tried next round
                log.warning("scheduled harvests skipped this round: %s", exc.message)
            except Exception:  # noqa: BLE001 - the scheduler outlives one bad round; the jobs say what failed
                log.exception("a round of scheduled harvests failed")
            self.stopped.wait(self.tick_s)
