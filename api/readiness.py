"""The checks behind /ready (database, storage, queue) and the job queue's depth for /metrics.

Each check answers ``Check(ok, detail)`` within ``settings.ready_timeout_s`` and never raises:
a failure says which part failed and why, in words safe to show (no password or key:
``redact_text`` strips any credential an underlying message might carry).

The queue is checked only when the hub has one (``queue_url``): ``harvesters.queue.check`` asks its
Redis for a PING. Its depth is the length of Dramatiq's lists ``<queue_namespace>:harvests`` (ready
messages) and ``<queue_namespace>:harvests.DQ`` (delayed ones: retries waiting for their backoff).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
from anyio import to_thread

from catalogue.hub import Hub
from catalogue.meta.loop_reads import LoopReads
from catalogue.redact import redact_text
from catalogue.settings import Settings

# A key no stored file has: asking whether it exists is one stat (a HEAD on object storage).
PROBE_KEY = "ready-probe/none"


@dataclass(frozen=True)
class Check:
    """The outcome of one readiness check."""

    ok: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "failed", "detail": self.detail}


async def run_checks(hub: Hub, reads: LoopReads) -> dict[str, Check]:
    """Every check that applies to this hub, run at once, by name."""
    settings = hub.settings
    checks: dict[str, Callable[[], Any]] = {
        "database": reads.ping,
        "storage": lambda: to_thread.run_sync(_stat_storage, hub, abandon_on_cancel=True),
    }
    if settings.queue_url:
        checks["queue"] = lambda: to_thread.run_sync(ping_queue, settings, abandon_on_cancel=True)
    results: dict[str, Check] = {}

    async def one(name: str, work: Callable[[], Any]) -> None:
        results[name] = await _timed(name, work, settings.ready_timeout_s)

    async with anyio.create_task_group() as group:
        for name, work in checks.items():
            group.start_soon(one, name, work)
    return {name: results[name] for name in checks}


async def _timed(name: str, work: Callable[[], Any], timeout_s: float) -> Check:
    what = {"database": "the catalogue database", "storage": "the storage of parts and descriptors",
            "queue": "the harvest job queue"}[name]
    try:
        with anyio.fail_after(timeout_s):
            await work()
    except TimeoutError:
        return Check(False, f"{what} did not answer within {timeout_s:g} s (ready_timeout_s)")
    except Exception as exc:  # noqa: BLE001 - any failure is the check's answer, said in words
        return Check(False, f"{what} is unreachable: {_reason(exc)}")
    return Check(True, f"{what} answered")


def _reason(exc: BaseException) -> str:
    """The first line of an error's message, without credentials (no traceback)."""
    message = str(getattr(exc, "message", None) or exc).strip()
    first = message.splitlines()[0] if message else "no message"
    return redact_text(f"{type(exc).__name__}: {first}"[:400])


def _stat_storage(hub: Hub) -> None:
    hub.storage.exists(PROBE_KEY)  # a stat: raises when the store cannot be reached


def ping_queue(settings: Settings) -> None:
    """Raise unless the job queue's Redis answers a PING."""
    from harvesters.queue import check  # only with a queue: dramatiq and redis are the [queue] extra

    check(settings)


def queue_depths(settings: Settings) -> dict[str, int]:
    """Messages waiting in the job queue, by Dramatiq queue name (ready and delayed)."""
    from harvesters.queue import QUEUE_NAME, redis_client

    client = redis_client(settings)
    try:
        return {name: int(client.llen(f"{settings.queue_namespace}:{name}"))
                for name in (QUEUE_NAME, f"{QUEUE_NAME}.DQ")}
    finally:
        client.close()
