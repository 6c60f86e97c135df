"""Commit notices: an in-process broker telling listeners that a dataset has a new version.

The write path publishes (dataset, version number) after a commit and its live
files (``catalogue.ingest.latest``); the streams of live values listen, so a
delivery reaches them at once. A notice is only a wake-up call: a listener
reads the versions themselves from the catalogue, so a notice from another
catalogue in the same process, or one lost, costs nothing but a look. Commits
made by other processes reach this broker on PostgreSQL through
``catalogue.pg_notices`` (NOTIFY/LISTEN); listeners also look at the current
version now and then, for a notice lost on the way (and on SQLite).

Listeners are called in the committing thread and must return at once (an
event loop's listener hands the notice over with ``call_soon_threadsafe``);
one that raises is dropped, never the commit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Listener = Callable[[str, int], None]


class CommitNotices:
    """Listeners of committed versions, called for every published one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> None:
        """Call ``listener(dataset, number)`` after each commit in this process."""
        with self._lock:
            self._listeners.append(listener)

    def forget(self, listener: Listener) -> None:
        """Stop calling ``listener`` (no error when it was not listening)."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def publish(self, dataset: str, number: int) -> None:
        """Tell every listener that ``dataset`` has version ``number``."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(dataset, number)
            except Exception:  # noqa: BLE001 - a broken listener must never fail the commit that notified it
                log.warning("commit notices: a listener failed and was dropped", exc_info=True)
                self.forget(listener)


COMMITS = CommitNotices()  # one per process: the write path and the streams of one process meet here
