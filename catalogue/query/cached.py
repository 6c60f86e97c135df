"""Records and facets answers kept per version, and computed once when a crowd asks at the same moment.

The web layer hands over a request's parameters (its cache key) and a
function that computes the answer; this module decides whether to compute.
Nothing here waits on the event loop: the version lookup never blocks it
(``LoopReads``) and the computation runs in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar, cast

from anyio import to_thread

from catalogue.meta.loop_reads import LoopReads
from catalogue.query.engine import VersionRef
from catalogue.query.result_cache import ResultCache

T = TypeVar("T")
Compute = Callable[[tuple[int, str] | None], tuple[VersionRef, T]]


class KeptResults:
    """The result cache with single flight, for one app."""

    def __init__(self, reads: LoopReads, cache: ResultCache) -> None:
        self.reads = reads
        self.cache = cache
        self._flights: dict[tuple[object, ...], asyncio.Future[tuple[int, object]]] = {}

    @property
    def in_flight(self) -> int:
        """Computations running right now (shared by every identical request meanwhile)."""
        return len(self._flights)

    async def get(
        self, name: str, version: int | None, as_of: datetime | None, params: tuple[object, ...],
        kind: type[T], compute: Compute[T], size: Callable[[T], int],
    ) -> tuple[int, T, str]:
        """(version number, result, X-Cache state) for a request: kept, or computed and kept.

        ``compute`` gets the version's (number, content hash) when it was looked up here.

        The version is looked up on every request (one indexed query), so a newly
        published one is served at once; its content hash is part of the key.
        Identical requests arriving while one computes wait for that computation
        instead of running their own (single flight: a crowd asking for the same
        page right after a new version is published runs one query). With the
        cache off, every request computes.
        """
        cache = self.cache
        identity = None
        if cache.enabled and as_of is None:
            identity = await self.reads.identity(name, version)
        if identity is None:  # cache off, as_of, or no such dataset or version (computing says which)
            ref, result = await to_thread.run_sync(compute, None)
            if cache.enabled:
                cache.put((name, ref.number, ref.content_hash, params), result, size(result))
            return ref.number, result, "miss"
        key = (name, *identity, params)
        found = cache.get(key, kind)
        if found is not None:
            return identity[0], found, "hit"
        running = self._flights.get(key)
        if running is not None:
            number, shared = await asyncio.shield(running)
            return number, cast(T, shared), "hit"
        running = asyncio.get_running_loop().create_future()
        self._flights[key] = running
        try:
            ref, result = await to_thread.run_sync(compute, identity)
        except BaseException as exc:
            running.set_exception(exc)
            running.exception()  # retrieved here, so an unwaited failure is not logged twice
            raise
        finally:
            del self._flights[key]
        cache.put((name, ref.number, ref.content_hash, params), result, size(result))
        running.set_result((ref.number, result))
        return ref.number, result, "miss"
