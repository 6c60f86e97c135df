"""A small pool of SQL worker processes (spawn context), started on first use.

Each worker answers one task at a time over a pipe. A caller takes an idle
worker, waiting at most ``sql_busy_wait_ms`` (then SqlBusy), and waits for the
answer at most the task's deadline plus ``sql_kill_grace_ms``; a worker that
has not answered by then, or that died (a crash, the OS memory cap), is
killed and replaced by a fresh process. ``run`` blocks: call it from a thread.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import queue
import threading
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from catalogue.errors import SqlBusy, SqlResourceLimit, UrbandataError
from catalogue.errors import QueryTimeout
from catalogue.settings import Settings
from catalogue.sql.worker import SqlTask, WorkerConfig, serve

log = logging.getLogger("urbandata.sql")

STARTUP_TIMEOUT_S = 60.0  # importing duckdb and loading spatial, on a busy machine
STOP_TIMEOUT_S = 2.0


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.ready = False

    def wait_ready(self) -> None:
        if self.ready:
            return
        try:
            if not self.conn.poll(STARTUP_TIMEOUT_S):
                raise UrbandataError("The SQL worker did not start in time; try again later.")
            self.conn.recv()  # {"ready": True}
        except EOFError:
            raise UrbandataError("The SQL worker failed to start; the server log says why.") from None
        self.ready = True

    def stop(self, *, graceful: bool) -> None:
        if graceful and self.process.is_alive():
            try:
                self.conn.send(None)
            except (OSError, ValueError):
                pass
            self.process.join(STOP_TIMEOUT_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(STOP_TIMEOUT_S)
        self.conn.close()


class SqlPool:
    """At most ``settings.sql_workers`` worker processes; queries beyond that wait briefly, then SqlBusy."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._config = WorkerConfig(
            memory_limit_mb=settings.sql_memory_limit_mb,
            threads=settings.duckdb_threads,
            address_space_mb=settings.sql_worker_address_space_mb,
        )
        self._context = multiprocessing.get_context("spawn")
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._workers: set[_Worker] = set()
        self._lock = threading.Lock()
        self._started = False
        self._closed = False

    @property
    def processes(self) -> list[BaseProcess]:
        """The worker processes alive or not yet reaped (for health checks and tests)."""
        with self._lock:
            return [w.process for w in self._workers]

    @property
    def busy(self) -> int:
        """How many workers are running a query now."""
        with self._lock:
            return max(0, len(self._workers) - self._idle.qsize())

    def run(self, task: SqlTask) -> dict[str, Any]:
        """Send ``task`` to a free worker and return its answer (blocking)."""
        worker = self._acquire()
        healthy = False
        try:
            worker.wait_ready()
            worker.conn.send(task)
            if not worker.conn.poll((task.time_limit_ms + self.settings.sql_kill_grace_ms) / 1000):
                log.warning("SQL worker %s ran past its deadline; replacing it", worker.process.pid)
                raise QueryTimeout(
                    f"The query took longer than {task.time_limit_ms} ms and was stopped. "
                    "Filter or aggregate earlier, or query a smaller part of the data."
                )
            answer: dict[str, Any] = worker.conn.recv()
            healthy = True
            return answer
        except (EOFError, OSError) as exc:
            log.warning("SQL worker %s died (exit code %s); replacing it", worker.process.pid, worker.process.exitcode)
            raise SqlResourceLimit(
                f"The query stopped the process running it, most likely by needing more than "
                f"{self.settings.sql_worker_address_space_mb} MiB of memory; it has been replaced. "
                "Filter or aggregate earlier."
            ) from exc
        finally:
            self._release(worker, healthy)

    def close(self) -> None:
        """Stop every worker: idle ones are asked to exit, busy ones are killed."""
        with self._lock:
            self._closed = True
            workers = set(self._workers)
            self._workers.clear()
        idle = []
        while True:
            try:
                idle.append(self._idle.get_nowait())
            except queue.Empty:
                break
        for worker in workers:
            worker.stop(graceful=worker in idle)

    def _acquire(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise UrbandataError("The SQL service is shutting down.")
            if not self._started:
                self._started = True
                for _ in range(self.settings.sql_workers):
                    self._idle.put(self._spawn())
        try:
            return self._idle.get(timeout=self.settings.sql_busy_wait_ms / 1000)
        except queue.Empty:
            raise self.busy_error() from None

    def busy_error(self) -> SqlBusy:
        """The error for a query that found every worker busy for ``sql_busy_wait_ms``."""
        retry = max(1, math.ceil(self.settings.sql_time_limit_ms / 1000))
        return SqlBusy(
            f"All {self.settings.sql_workers} SQL workers are busy; try again in {retry} s.", retry_after_s=retry
        )

    def _release(self, worker: _Worker, healthy: bool) -> None:
        if healthy and worker.process.is_alive():
            with self._lock:
                if not self._closed:
                    self._idle.put(worker)
                    return
            worker.stop(graceful=True)
            return
        worker.stop(graceful=False)
        with self._lock:
            self._workers.discard(worker)
            if not self._closed:
                self._idle.put(self._spawn())

    def _spawn(self) -> _Worker:
        """Start a worker process (called with the lock held)."""
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=serve, args=(child, self._config), name="urbandata-sql-worker", daemon=True
        )
        process.start()
        child.close()
        worker = _Worker(process, parent)
        self._workers.add(worker)
        return worker
