"""The query watchdog: a block past its deadline is interrupted, and again until it ends."""

from __future__ import annotations

import time

import duckdb
import pytest

from catalogue import duck
from catalogue.query.deadlines import Watchdog


class Recorder:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def interrupt(self) -> None:
        self.calls.append(time.monotonic())


def test_a_block_in_time_is_left_alone_and_a_late_one_is_interrupted_until_it_ends() -> None:
    watchdog, quick, slow = Watchdog(), Recorder(), Recorder()
    with watchdog.watch(quick, 1.0) as fired:
        time.sleep(0.01)
    assert not fired.is_set() and not quick.calls
    with watchdog.watch(slow, 0.005) as fired:
        time.sleep(0.08)
    ended = time.monotonic()
    time.sleep(0.05)
    assert fired.is_set() and len(slow.calls) >= 2  # repeated while the block ran
    assert all(at <= ended for at in slow.calls)  # and never after it ended


@pytest.mark.timeout(60)
def test_a_statement_started_after_the_deadline_is_stopped_too() -> None:
    con = duck.connect(memory_limit_mb=256, threads=1, spatial=False)
    watchdog = Watchdog()
    try:
        started = time.monotonic()
        with pytest.raises(duckdb.InterruptException), watchdog.watch(con, 0.02):
            con.execute("SELECT 1").fetchall()
            time.sleep(0.1)  # the deadline passes between two statements: that interrupt is lost
            con.execute("SELECT sum(hash(i)) FROM range(2000000000) AS t(i)").fetchall()  # seconds, uninterrupted
        assert time.monotonic() - started < 2
    finally:
        con.close()
