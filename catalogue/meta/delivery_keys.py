"""Idempotency-Keys of pushed deliveries: the first answer to a key is kept and given again.

A key is claimed before its delivery is ingested (a row with status 0), then
holds the answer (``record``) or is let go again when the ingest failed on
something that was not the delivery's fault (``release``), so a retry runs
it. The same key with another body is refused; while its first delivery is
still being ingested, a repeat is told to wait. A claim left by a process
that died is taken over after ``STALE_CLAIM``; answers are kept ``KEPT_FOR``
(the collector, ``urbandata gc``, forgets older ones).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from catalogue.errors import DeliveryInProgress, IdempotencyKeyReused, InvalidParameter
from catalogue.hub import Hub
from catalogue.meta.models import DeliveryKey, utcnow

MAX_KEY_CHARS = 200
IN_PROGRESS = 0
STALE_CLAIM = timedelta(minutes=30)
KEPT_FOR = timedelta(days=7)  # how long a key's answer is given again; the collector forgets older ones


def check_key(key: str) -> str:
    """``key`` if it is 1 to 200 printable ASCII characters; InvalidParameter otherwise."""
    if not 0 < len(key) <= MAX_KEY_CHARS or not key.isascii() or not key.isprintable():
        raise InvalidParameter(f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} printable ASCII characters "
                               "(a UUID is a good choice).", details={"header": "Idempotency-Key"})
    return key


def claim(hub: Hub, dataset_id: int, key: str, body_hash: str) -> tuple[int, dict[str, Any]] | None:
    """Claim ``key`` for a body: None when it is ours to ingest, or the (status, body) answered to it before.

    IdempotencyKeyReused (422) when the key came with another body; DeliveryInProgress (409) while its
    first delivery is still being ingested.
    """
    try:
        with hub.sessions.begin() as session:
            session.add(DeliveryKey(dataset_id=dataset_id, key=key, body_hash=body_hash, status=IN_PROGRESS,
                                    response={}, created_at=utcnow()))
        return None
    except IntegrityError:
        pass
    with hub.sessions.begin() as session:
        found = session.scalar(select(DeliveryKey).where(DeliveryKey.dataset_id == dataset_id, DeliveryKey.key == key))
        if found is None:  # released in between: try once more
            session.add(DeliveryKey(dataset_id=dataset_id, key=key, body_hash=body_hash, status=IN_PROGRESS,
                                    response={}, created_at=utcnow()))
            return None
        if found.body_hash != body_hash:
            raise IdempotencyKeyReused(
                f"Idempotency-Key '{key}' was used before with another body (sent {found.created_at.isoformat()}). "
                "A key names one delivery: send a new key for new content.",
                details={"header": "Idempotency-Key"})
        if found.status == IN_PROGRESS:
            if utcnow() - found.created_at < STALE_CLAIM:
                raise DeliveryInProgress(
                    f"The delivery with Idempotency-Key '{key}' is still being ingested; ask again in a moment "
                    "with the same key and body to get its answer.", retry_after_s=2)
            found.created_at = utcnow()  # its process is gone: this request ingests it
            return None
        return found.status, dict(found.response)


def record(hub: Hub, dataset_id: int, key: str, status: int, body: dict[str, Any]) -> None:
    """Keep the answer (HTTP status and JSON body) given to ``key``."""
    with hub.sessions.begin() as session:
        found = session.scalar(select(DeliveryKey).where(DeliveryKey.dataset_id == dataset_id, DeliveryKey.key == key))
        if found is not None:
            found.status, found.response = status, body


def release(hub: Hub, dataset_id: int, key: str) -> None:
    """Let ``key`` go (its ingest failed on our side): a retry with it runs the delivery again."""
    with hub.sessions.begin() as session:
        session.execute(delete(DeliveryKey).where(DeliveryKey.dataset_id == dataset_id, DeliveryKey.key == key,
                                                  DeliveryKey.status == IN_PROGRESS))


def forget_old(hub: Hub, older_than: timedelta = KEPT_FOR) -> int:
    """Remove answered keys older than ``older_than`` (the collector's work); how many."""
    with hub.sessions.begin() as session:
        gone = session.execute(delete(DeliveryKey).where(DeliveryKey.status != IN_PROGRESS,
                                                         DeliveryKey.created_at < utcnow() - older_than))
        return int(getattr(gone, "rowcount", 0) or 0)
