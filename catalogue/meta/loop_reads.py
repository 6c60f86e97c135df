"""Reads of the catalogue database that never make an event loop wait.

A request's first step (which version is current, is the service alive) is
one indexed query. Sent through the request pool it would wait whenever every
pooled connection is taken, and if that wait happened on the event loop
every request would stall behind it. So:

- on SQLite, the loop owns one connection of its own whose busy timeout is
  zero: a read in WAL mode takes no lock, and in the rare case SQLite says
  busy the read is retried in a thread instead of waiting. An embedded
  lookup takes less time than a hop to a thread and back (measured when the
  lookup first ran on the loop: ~40 % more cached records requests per
  second), which is why it runs on the loop;
- on a database server a round trip must never run on the loop: the read
  goes to a thread, through the request pool (identities, which must be fast)
  or through a connection opened for it (the health check, which must answer
  even when the pool is exhausted), under a limiter of its own so a full
  thread pool cannot hold it up either.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import anyio
from anyio import to_thread
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool, StaticPool

from catalogue.meta.metadata import get_dataset_access, get_version_identity
from catalogue.meta.models import Dataset

# SQLite's busy, from SQLAlchemy or (the lookups sent straight through a DBAPI cursor) from sqlite3 itself.
BUSY = (OperationalError, sqlite3.OperationalError)


class LoopReads:
    """Version identities and the dataset count, read without blocking the calling event loop."""

    # Health checks in flight at once; each opens its own connection on a database server.
    SIDE_THREADS = 4

    def __init__(self, pool: Engine) -> None:
        self.pool = pool
        url = pool.url
        self._loop: Engine | None = None
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            # One connection used from one thread at a time (the loop); check_same_thread is off because
            # the loop may run on another thread than the one that built the app.
            self._loop = create_engine(url, poolclass=StaticPool,
                                       connect_args={"timeout": 0, "check_same_thread": False})
        self._side = create_engine(url, poolclass=NullPool, **_side_options(url.get_backend_name()))
        self._limiter: anyio.CapacityLimiter | None = None
        self._lock = threading.Lock()

    async def identity(self, name: str, number: int | None) -> tuple[int, str] | None:
        """``get_version_identity`` for a request: on the loop when that cannot wait, else in a thread."""
        if self._loop is not None:
            try:
                return get_version_identity(self._loop, name, number)
            except BUSY:
                pass  # SQLite said busy (it never waits here): ask through the pool in a thread
        return await to_thread.run_sync(get_version_identity, self.pool, name, number)

    async def dataset_access(self, name: str) -> tuple[bool, int] | None:
        """``get_dataset_access`` for a request (is it private, whose is it), read as ``identity`` is."""
        if self._loop is not None:
            try:
                return get_dataset_access(self._loop, name)
            except BUSY:
                pass
        return await to_thread.run_sync(get_dataset_access, self.pool, name)

    async def dataset_count(self) -> int:
        """The number of datasets, read without the request pool (a health check must not wait for it)."""
        if self._loop is not None:
            try:
                return _count(self._loop)
            except BUSY:
                pass
        return await to_thread.run_sync(_count, self._side, limiter=self._side_limiter())

    async def ping(self) -> None:
        """``SELECT 1`` on a connection of its own, not the request pool (/ready); raises when it fails."""
        await to_thread.run_sync(_ping, self._side, limiter=self._side_limiter(), abandon_on_cancel=True)

    def _side_limiter(self) -> anyio.CapacityLimiter:
        with self._lock:  # built on first use: a limiter belongs to the running event loop's library
            if self._limiter is None:
                self._limiter = anyio.CapacityLimiter(self.SIDE_THREADS)
            return self._limiter

    def close(self) -> None:
        """Close the connections of these reads (not the request pool)."""
        if self._loop is not None:
            self._loop.dispose()
        self._side.dispose()


def _side_options(backend: str) -> dict[str, Any]:
    if backend == "sqlite":
        return {"connect_args": {"timeout": 5, "check_same_thread": False}}
    return {"connect_args": {"connect_timeout": 5}} if backend.startswith("postgres") else {}


def _ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _count(engine: Engine) -> int:
    with engine.connect() as connection:
        # Public datasets only: a private one must not show, not even in a count.
        return int(connection.scalar(select(func.count()).select_from(Dataset).where(Dataset.private.is_(False))) or 0)
