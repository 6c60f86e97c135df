"""A background thread a server starts and stops: the collector, the demo's live feed."""

from __future__ import annotations

import threading
from typing import Self


class BackgroundThread:
    """A daemon thread running ``_run`` until ``stopped`` is set; ``_run`` should wait on ``stopped`` between rounds."""

    def __init__(self, name: str) -> None:
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Self:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Ask ``_run`` to stop and wait for it (30 s at most)."""
        self.stopped.set()
        self.thread.join(timeout=30)

    def _run(self) -> None:
        raise NotImplementedError
