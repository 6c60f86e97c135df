"""Harvest schedules: when each source is due, and a runner of due sources (``harvest --due``, ``serve``).

A source's ``schedule`` is a cron expression (``*/15 * * * *``, five fields, UTC) or an interval
(``90s``, ``15m``, ``6h``, ``1d``, ``1w``); without one it follows its dataset's update frequency
(HOURLY every hour, DAILY every day...; IRREG, NEVER and UNKNOWN are harvested only on request).
A source is due when it never ran, or when its next time after its last run has come.

Runs are one at a time: ``run_due`` harvests due sources one after another, and a dataset with a
job still ``running`` (in any process) is skipped, so no dataset is harvested twice at once.
Two processes starting the same dataset in the same instant are still serialised by the commit
lock (``catalogue.ingest.commit``): the second finds its delivery unchanged or commits after it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from catalogue.errors import DefinitionError
from catalogue.hub import Hub
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
        from croniter import croniter  # type: ignore[import-untyped]  # the [harvest] extra; only cron needs it

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
        try:
            from croniter import croniter
        except ImportError as exc:
            raise DefinitionError(f"The schedule '{text}' is a cron expression, which needs croniter: "
                                  "pip install 'urbandata[harvest]', or use an interval such as 15m.") from exc
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

    def due_at(self) -> datetime | None:
        if self.schedule is None:
            return None
        return self.schedule.next_after(self.last_started) if self.last_started else datetime.min.replace(
            tzinfo=utcnow().tzinfo)


def schedule_states(hub: Hub) -> list[DueState]:
    """Every source with its schedule, its last run's start and whether a job of its dataset is running."""
    with hub.sessions() as session:
        last = dict(session.execute(select(HarvestJob.source_id, func.max(HarvestJob.started_at))
                                    .group_by(HarvestJob.source_id)).all())
        running = set(session.scalars(select(HarvestJob.dataset_id).where(HarvestJob.status == "running")))
        rows = session.execute(select(HarvestSource.name, HarvestSource.schedule, HarvestSource.id,
                                      HarvestSource.dataset_id, Dataset.name, Dataset.update_frequency)
                               .join(Dataset, HarvestSource.dataset_id == Dataset.id)
                               .order_by(HarvestSource.name)).all()
    states = []
    for name, schedule, source_id, dataset_id, dataset, frequency in rows:
        started = last.get(source_id)
        if started is not None and started.tzinfo is None:
            started = started.replace(tzinfo=utcnow().tzinfo)  # stored without a zone on SQLite, in UTC
        try:
            planned = source_schedule(schedule, frequency)
        except DefinitionError as exc:  # one bad schedule must not stop the others; it is said every round
            log.warning("source %s is not scheduled: %s", name, exc.message)
            planned = None
        states.append(DueState(name, dataset, planned, started, dataset_id in running))
    return states


def due_sources(hub: Hub, now: datetime | None = None) -> list[str]:
    """Names of the sources due at ``now`` whose dataset has no running job, most overdue first."""
    now = now or utcnow()
    due = [(s.due_at(), s.source) for s in schedule_states(hub) if not s.running]
    return [name for at, name in sorted((at, name) for at, name in due if at is not None and at <= now)]


def run_due(hub: Hub, now: datetime | None = None,
            each: Callable[[str], HarvestOutcome] | None = None) -> list[HarvestOutcome]:
    """Harvest every due source once, one after another; their outcomes."""
    run = each or (lambda name: harvest_source(hub, name))
    return [run(name) for name in due_sources(hub, now)]


class HarvestScheduler:
    """A background thread harvesting due sources every ``tick_s`` seconds (``urbandata serve``).

    ``after_publish`` runs after a round in which some delivery was published (the site rebuild).
    """

    def __init__(self, hub: Hub, tick_s: float = 30.0, after_publish: Callable[[], object] | None = None) -> None:
        self.hub, self.tick_s, self.after_publish = hub, tick_s, after_publish
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="harvest-scheduler", daemon=True)

    def start(self) -> HarvestScheduler:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop after the harvest under way (if any)."""
        self._stop.set()
        self._thread.join(timeout_s)

    def run_once(self) -> list[HarvestOutcome]:
        """One round: every due source, then the site if anything was published."""
        outcomes = []
        for name in due_sources(self.hub):
            if self._stop.is_set():
                break
            outcomes.append(harvest_source(self.hub, name))
            log.info("scheduled harvest: %s", outcomes[-1].message)
        if self.after_publish is not None and any(o.status == "published" for o in outcomes):
            self.after_publish()
        return outcomes

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - the scheduler outlives one bad round; the jobs say what failed
                log.exception("a round of scheduled harvests failed")
            self._stop.wait(self.tick_s)
