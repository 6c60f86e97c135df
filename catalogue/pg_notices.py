"""Commit notices across processes: PostgreSQL's NOTIFY after a commit, LISTEN in every server.

``catalogue.commit_notices`` tells the listeners of one process about its own
commits. API replicas and harvest workers are other processes on the same
PostgreSQL catalogue: after publishing a notice in-process, the write path also
sends ``pg_notify`` (:func:`notify_commit`), and each server runs a
:class:`CommitListener` that hands every other process's notice to its own
``COMMITS``, so a replica's streams hear a delivery committed by any replica or
worker at once rather than at their next poll.

A notice stays a wake-up call: listeners read the versions themselves, so a
notice lost while the listener reconnects costs only the wait for the poll
(``stream_poll_s``), and one from another catalogue on the same server (another
schema) is ignored by its schema name. On SQLite there are no other processes
to tell: both ends do nothing.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from sqlalchemy import Engine, text

from catalogue.background import BackgroundThread
from catalogue.commit_notices import COMMITS, CommitNotices

log = logging.getLogger(__name__)

CHANNEL = "urbandata_commits"
RECONNECT_S = 2.0  # wait before listening again after the connection was lost


def notify_commit(engine: Engine, dataset: str, number: int) -> None:
    """Tell the other processes on the same PostgreSQL catalogue that ``dataset`` has version ``number``."""
    if engine.dialect.name != "postgresql":
        return
    try:
        with engine.begin() as connection:
            connection.execute(
                text("SELECT pg_notify(:channel, json_build_object("
                     "'schema', current_schema(), 'dataset', CAST(:dataset AS text), "
                     "'number', CAST(:number AS integer), 'pid', CAST(:pid AS integer))::text)"),
                {"channel": CHANNEL, "dataset": dataset, "number": number, "pid": os.getpid()},
            )
    except Exception:  # noqa: BLE001 - the version is committed; the others find it at their next poll
        log.warning("commit notices: %s version %d was not announced to other processes", dataset, number,
                    exc_info=True)


class CommitListener(BackgroundThread):
    """LISTEN on the catalogue's PostgreSQL and publish every other process's commit notice here."""

    def __init__(self, engine: Engine, notices: CommitNotices = COMMITS) -> None:
        super().__init__("commit-listener")
        # A connection of its own, outside the engine's pool: it stays open as long as the server runs.
        self.conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.notices = notices
        self.listening = False  # set once LISTEN is in place (tests wait for it)

    def _run(self) -> None:
        import psycopg

        while not self.stopped.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as connection:
                    row = connection.execute("SELECT current_schema()").fetchone()
                    schema = row[0] if row else None
                    connection.execute(f"LISTEN {CHANNEL}")
                    self.listening = True
                    while not self.stopped.is_set():
                        for notice in connection.notifies(timeout=1.0):
                            self._hand_on(notice.payload, schema)
            except Exception:  # noqa: BLE001 - the server away for a moment: listen again (the poll covers the gap)
                log.warning("commit notices: listening on PostgreSQL failed; trying again", exc_info=True)
            self.listening = False
            self.stopped.wait(RECONNECT_S)

    def _hand_on(self, payload: str, schema: str | None) -> None:
        try:
            notice: dict[str, Any] = json.loads(payload)
            if notice["schema"] != schema or notice["pid"] == os.getpid():
                return  # another catalogue on the same server, or this process's own (heard in-process)
            self.notices.publish(str(notice["dataset"]), int(notice["number"]))
        except (ValueError, KeyError, TypeError):
            log.warning("commit notices: an unreadable notice was ignored: %.200r", payload)


def start_commit_listener(engine: Engine) -> CommitListener | None:
    """A running listener for a PostgreSQL catalogue; None for SQLite (one process, nothing to hear)."""
    if engine.dialect.name != "postgresql":
        return None
    return CommitListener(engine).start()
