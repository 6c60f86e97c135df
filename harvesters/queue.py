"""The harvest job queue: due harvests sent as Dramatiq messages over Redis, run by ``urbandata worker``.

With ``queue_url`` set, the scheduler (``harvest --due``, serve's background thread) claims each due
run as a ``queued`` job (``jobs.claim``) and sends its source, dataset and job id here (``enqueue``);
every worker process (``setup`` binds it to the hub's settings) runs the ``harvest`` actor on them.

Nothing is lost or run twice: a message is acknowledged only once its harvest ended (acks late), so
one whose worker was killed stays unacknowledged; when that worker's heartbeats have stopped for
``queue_heartbeat_timeout_s``, another worker's broker puts it back on the queue (the Redis broker's
maintenance, here on one command in ten). The message carries its job: ``jobs.take`` runs a queued
job, ends one whose version was committed before its worker died, and refuses one that a live
process runs (retried later), so a delivery becomes at most one version and its job ends once.
A harvest's own failure (a source down, an invalid delivery) ends its job and is not retried; the
machinery's (the catalogue database gone) raises, and Dramatiq's Retries try again with backoff.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import urlsplit

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from catalogue.errors import QueueUnreachable, SourceNotFound
from catalogue.hub import Hub, open_hub
from catalogue.ingest import jobs
from catalogue.redact import redact_url
from catalogue.settings import Settings
from harvesters.runner import HarvestOutcome, harvest_source
from catalogue.sitegen.listings import Manifest
from harvesters.site_refresh import refresh_site

log = logging.getLogger(__name__)

QUEUE_NAME = "harvests"
MAINTENANCE_CHANCE = 100_000  # per million broker commands: one in ten requeues dead workers' messages
CONNECT_TIMEOUT_S = 3.0
# Retries of the machinery's failures: 1 s, 2 s, 4 s ... at most a minute apart, ten times.
ACTOR_OPTIONS: dict[str, Any] = {"max_retries": 10, "min_backoff": 1_000, "max_backoff": 60_000,
                                 "time_limit": 24 * 3600 * 1000}  # a harvest ends by its own deadlines
SITE_LOCK_S = 900  # the longest a worker waits for another's site rebuild


class JobBusy(Exception):
    """The job of a message is being run by another live process: the message is tried again later."""


def _shown(settings: Settings) -> str:
    return redact_url(settings.queue_url)


def redis_client(settings: Settings) -> redis.Redis:
    """A Redis client for ``queue_url`` that gives up on an unreachable server within seconds."""
    if urlsplit(settings.queue_url).scheme not in ("redis", "rediss", "unix"):
        raise QueueUnreachable(
            f"queue_url '{_shown(settings)}' is no Redis URL. Give one like redis://127.0.0.1:6379/0 (or rediss://, "
            "unix://) in URBANDATA_QUEUE_URL, or leave it empty to run harvests without a queue.",
            details={"setting": "queue_url"})
    return redis.Redis.from_url(settings.queue_url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=30.0,
                                retry=Retry(ExponentialBackoff(cap=1.0, base=0.2), 2))


def _unreachable(settings: Settings, exc: Exception) -> QueueUnreachable:
    return QueueUnreachable(
        f"The harvest job queue at {_shown(settings)} does not answer ({type(exc).__name__}: {exc}). Start Redis "
        "there or correct URBANDATA_QUEUE_URL (empty: harvests run without a queue).",
        details={"setting": "queue_url"})


def check(settings: Settings) -> None:
    """QueueUnreachable unless the queue's Redis answers a PING (within seconds, never a hang)."""
    client = redis_client(settings)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise _unreachable(settings, exc) from None
    finally:
        client.close()


class HarvestQueue:
    """One hub's queue: a Redis broker under the hub's namespace and the ``harvest`` actor bound to it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker = RedisBroker(client=redis_client(settings), namespace=settings.queue_namespace,
                                  heartbeat_timeout=int(settings.queue_heartbeat_timeout_s * 1000),
                                  maintenance_chance=MAINTENANCE_CHANCE)
        self.actor = dramatiq.actor(broker=self.broker, actor_name="harvest", queue_name=QUEUE_NAME,
                                    **ACTOR_OPTIONS)(_harvest)

    def send(self, source: str, dataset: str, job_id: int) -> None:
        """Put the job on the queue; QueueUnreachable if Redis does not take it."""
        try:
            self.actor.send(source, dataset, job_id)
        except (redis.RedisError, dramatiq.errors.ConnectionError) as exc:
            raise _unreachable(self.settings, exc) from None


_queues: dict[tuple[str, str, float], HarvestQueue] = {}
_queues_lock = threading.Lock()


def queue_for(settings: Settings) -> HarvestQueue:
    """The process's queue for these settings (one broker and connection pool per queue)."""
    key = (settings.queue_url, settings.queue_namespace, settings.queue_heartbeat_timeout_s)
    with _queues_lock:
        if key not in _queues:
            _queues[key] = HarvestQueue(settings)
        return _queues[key]


def enqueue(hub: Hub, source: str, dataset: str, job_id: int) -> HarvestOutcome:
    """Send the claimed job ``job_id`` to the queue: an outcome ``queued``, or ``failed`` (the job ended with
    queue-unreachable) when the queue does not take it."""
    try:
        queue_for(hub.settings).send(source, dataset, job_id)
    except QueueUnreachable as exc:
        error = jobs.fail(hub, job_id, exc)
        return HarvestOutcome(source, dataset, "failed", f"{dataset}: {error.message}", job_id=job_id,
                              error_code=error.code)
    return HarvestOutcome(source, dataset, "queued", f"{dataset}: queued as job {job_id}", job_id=job_id)


# A worker process: its hub (opened on the first message, after the fork) and the jobs its threads hold.
_worker: dict[str, Any] = {}
_in_hand: set[int] = set()
_worker_lock = threading.Lock()


def setup() -> None:
    """Bind this worker process to the hub of its environment's settings (``dramatiq harvesters.queue:setup``)."""
    settings = Settings()
    _worker["settings"] = settings
    dramatiq.set_broker(queue_for(settings).broker)


def _hub() -> Hub:
    with _worker_lock:
        if "hub" not in _worker:
            _worker["hub"] = open_hub(_worker["settings"])
        hub: Hub = _worker["hub"]
        return hub


def _harvest(source: str, dataset: str, job_id: int) -> None:
    """The actor: take job ``job_id`` (``jobs.take``) and harvest ``source`` into it, then refresh the site."""
    hub = _hub()
    with _worker_lock:
        if job_id in _in_hand:
            raise JobBusy(f"job {job_id} ({source}) is run by another thread of this worker; tried again later")
        _in_hand.add(job_id)
    try:
        taken = jobs.take(hub, job_id, dataset)
        if taken == "busy":
            raise JobBusy(f"job {job_id} ({source}) is run by another live worker; tried again later")
        if taken == "done":
            log.info("job %s (%s) has ended already: nothing to do", job_id, source)
            return
        try:
            outcome = harvest_source(hub, source, job_id)
        except SourceNotFound as exc:  # removed from the definitions after it was queued
            jobs.fail(hub, job_id, exc)
            return
        log.info("job %s: %s %s", job_id, outcome.status, outcome.message)
    finally:
        with _worker_lock:
            _in_hand.discard(job_id)
    if outcome.status == "published":
        _refresh_site(hub, dataset)


def _refresh_site(hub: Hub, dataset: str) -> None:
    """Rebuild what ``dataset`` touches in a built site, one worker at a time (a Redis lock); a failure is only
    logged: the version is published, and the next rebuild includes it. No site built yet: none is started."""
    if Manifest.read(hub.settings.site_dir) is None:
        return
    client = queue_for(hub.settings).broker.client
    try:
        with client.lock(f"{hub.settings.queue_namespace}:site-build", timeout=SITE_LOCK_S,
                         blocking_timeout=SITE_LOCK_S):
            refresh_site(hub, [dataset])
    except Exception as exc:  # noqa: BLE001 - the harvest's job has ended; the site catches up on the next one
        log.warning("the site was not rebuilt after %s was published: %s", dataset, jobs.describe(exc, hub).message)
