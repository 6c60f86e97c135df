"""Query deadlines: one watchdog thread interrupts DuckDB cursors that run past their time.

A ``threading.Timer`` per query starts (and tears down) a thread on every
request, which costs more than a whole point lookup; here one daemon thread
sleeps until the earliest deadline of the queries in flight.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


REPEAT_SECONDS = 0.01  # between interrupts of a block past its deadline


class Interruptible(Protocol):
    def interrupt(self) -> None: ...


class Watchdog:
    """Interrupts registered cursors at their deadlines."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, tuple[Interruptible, threading.Event]] = {}
        self._ids = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watch(self, cur: Interruptible, seconds: float) -> Iterator[threading.Event]:
        """Interrupt ``cur`` if the block runs longer than ``seconds``; the event tells whether it fired."""
        fired = threading.Event()
        ticket = next(self._ids)
        with self._wake:
            self._live[ticket] = (cur, fired)
            heapq.heappush(self._heap, (time.monotonic() + seconds, ticket))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="query-watchdog", daemon=True)
                self._thread.start()
            elif self._heap[0][1] == ticket:
                self._wake.notify()
        try:
            yield fired
        finally:
            with self._wake:
                self._live.pop(ticket, None)

    def _run(self) -> None:
        with self._wake:
            while True:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)  # finished in time
                if not self._heap:
                    self._wake.wait(timeout=60)
                    if not self._heap:
                        self._thread = None
                        return
                    continue
                due, ticket = self._heap[0]
                now = time.monotonic()
                if due > now:
                    self._wake.wait(timeout=due - now)
                    continue
                heapq.heappop(self._heap)
                cur, fired = self._live[ticket]
                fired.set()
                cur.interrupt()
                # DuckDB drops an interrupt that comes between two statements of the block, so
                # it is repeated until the block ends: a statement started late is stopped too.
                heapq.heappush(self._heap, (now + REPEAT_SECONDS, ticket))


WATCHDOG = Watchdog()
