"""The query watchdog: a block past its deadline is interrupted, and again until it ends.

No test here measures wall-clock time: each waits on events the watchdog sets (with a
timeout only as a guard against hanging) and asserts what happened, not how long it took.
"""

from __future__ import annotations

import threading

import duckdb
import pytest

from catalogue import duck
from catalogue.query.deadlines import Watchdog

GUARD_S = 30  # only ever reached when the watchdog is broken


class Recorder:
    """Counts interrupts; ``enough`` is set at the ``until``-th; forwards them to ``target`` if given."""

    def __init__(self, until: int = 1, target: duckdb.DuckDBPyConnection | None = None) -> None:
        self.calls, self.until, self.target = 0, until, target
        self.enough = threading.Event()

    def interrupt(self) -> None:
        self.calls += 1
        if self.target is not None:
            self.target.interrupt()
        if self.calls >= self.until:
            self.enough.set()


def _settle(watchdog: Watchdog) -> None:
    """Wait until the watchdog thread has made two rounds past now (so it passed every earlier deadline)."""
    sync = Recorder(until=2)
    with watchdog.watch(sync, 0.0):
        assert sync.enough.wait(GUARD_S)


def test_a_block_in_time_is_left_alone() -> None:
    watchdog, quick = Watchdog(), Recorder()
    with watchdog.watch(quick, 600.0) as fired:
        pass
    _settle(watchdog)
    assert (fired.is_set(), quick.calls) == (False, 0)


def test_a_late_block_is_interrupted_until_it_ends_and_never_after() -> None:
    watchdog, slow = Watchdog(), Recorder(until=3)
    with watchdog.watch(slow, 0.0) as fired:
        assert slow.enough.wait(GUARD_S)  # interrupted again and again while the block runs
    at_end = slow.calls
    _settle(watchdog)
    assert fired.is_set()
    assert slow.calls == at_end  # and never after it ended


@pytest.mark.timeout(60)
def test_a_statement_started_after_the_deadline_is_stopped_too() -> None:
    con = duck.connect(memory_limit_mb=256, threads=1, spatial=False)
    watchdog, recorder = Watchdog(), Recorder(target=con)
    try:
        with pytest.raises(duckdb.InterruptException), watchdog.watch(recorder, 0.0):
            # The deadline passes while no statement runs (between two statements of a block):
            # that interrupt reaches nothing and is lost.
            assert recorder.enough.wait(GUARD_S)
            # Minutes of work if nothing stopped it (the test's timeout would fail it).
            con.execute("SELECT sum(hash(i)) FROM range(50000000000) AS t(i)").fetchall()
    finally:
        con.close()
