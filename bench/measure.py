"""Timing and memory: repeated measurements, their median and spread, RSS sampling."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil


@dataclass
class Figure:
    """One measured quantity: every repeat's value, in ``unit``."""

    key: str
    label: str
    unit: str
    values: list[float]
    note: str = ""
    higher_is_better: bool = False

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "unit": self.unit, "values": self.values,
                "median": self.median, "min": self.low, "max": self.high, "note": self.note}


@dataclass
class Target:
    """A ratio (or bound) with its target: PASS when ``value op threshold``; unstable when its spread crosses it.

    ``spread``: the interquartile range of the ratio over its turns (each turn
    pairs one measurement of each side). A ratio whose middle half of turns
    lies on both sides of the threshold was measured again (``settle``); if it
    still does, it is reported as unstable, neither PASS nor FAIL.
    """

    section: str
    label: str
    value: float
    op: str  # ">=" or "<="
    threshold: float
    unit: str = "×"
    note: str = ""
    spread: tuple[float, float] | None = None

    @property
    def passed(self) -> bool:
        return self.value >= self.threshold if self.op == ">=" else self.value <= self.threshold

    @property
    def unstable(self) -> bool:
        return self.spread is not None and crosses(self.spread, self.threshold)

    @property
    def verdict(self) -> str:
        return "unstable" if self.unstable else "PASS" if self.passed else "FAIL"


@dataclass
class Results:
    """Everything one run measured, in the order it was measured."""

    figures: dict[str, Figure] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)  # section -> setup/method notes
    texts: dict[str, str] = field(default_factory=dict)  # section -> verbatim block (plans, profiles)
    skipped: dict[str, str] = field(default_factory=dict)  # section -> why
    loads: dict[str, list[float]] = field(default_factory=dict)  # phase -> 1-minute load averages seen during it
    peers: list[tuple[str, str]] = field(default_factory=list)  # (peer, how it is deployed here)
    facts: dict[str, Any] = field(default_factory=dict)  # configuration checked during the run (tests read it)

    def add(self, figure: Figure) -> Figure:
        self.figures[figure.key] = figure
        return figure

    def note(self, section: str, text: str) -> None:
        self.notes.setdefault(section, []).append(text)

    def median(self, key: str) -> float:
        return self.figures[key].median

    def lines(self) -> list[str]:
        """Figures, targets and skipped sections as text lines, for a phase run on its own."""
        return ([f"{f.label}: median {f.median:.3g} {f.unit} ({', '.join(f'{v:.3g}' for v in f.values)})"
                 for f in self.figures.values()]
                + [f"{t.label}: {t.value:.3g}{t.unit} (target {t.op} {t.threshold:g}) {t.verdict}" for t in self.targets]
                + [f"{section}: skipped, {why}" for section, why in self.skipped.items()])


def load_average() -> float:
    """The machine's 1-minute load average now."""
    return os.getloadavg()[0]


def crosses(spread: tuple[float, float], threshold: float) -> bool:
    """Whether ``threshold`` lies strictly inside ``spread``."""
    return spread[0] < threshold < spread[1]


def quartiles(values: list[float]) -> tuple[float, float]:
    """(25th, 75th) percentile; the range itself below four values."""
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def per_turn(top: list[float], bottom: list[float]) -> list[float]:
    """The ratio of each turn: ``top[i] / bottom[i]`` (both measured in the same turn)."""
    return [a / b for a, b in zip(top, bottom) if b]


# Second measurements of a ratio whose spread crossed its target (quick mode, a CI smoke run, sets 0 to keep
# its time: such a ratio is then reported unstable straight away).
SETTLE_RETRIES = 1


def settle(measure: Callable[[], dict[str, list[float]]], ratio: Callable[[dict[str, list[float]]], list[float]],
           threshold: float | None) -> tuple[dict[str, list[float]], bool]:
    """Measure in turns; when the ratio's spread crosses ``threshold``, measure again and pool the turns.

    Returns (every side's values, whether it was measured twice).
    """
    first = measure()
    if threshold is None or SETTLE_RETRIES < 1 or not crosses(quartiles(ratio(first)), threshold):
        return first, False
    again = measure()
    return {k: first[k] + again.get(k, []) for k in first}, True


def ratio_target(section: str, label: str, turns: list[float], op: str, threshold: float, note: str = "",
                 repeated: bool = False) -> Target:
    """A target over per-turn ratios: their median, with their interquartile range as the spread."""
    extra = "measured twice: its spread crossed the target" if repeated else ""
    return Target(section, label, statistics.median(turns), op, threshold,
                  note="; ".join(n for n in (note, extra) if n), spread=quartiles(turns))


def timed(fn: Callable[[], Any], repeat: int, warmup: int = 0) -> list[float]:
    """Seconds of each of ``repeat`` calls of ``fn`` (after ``warmup`` unmeasured calls)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def timed_alternately(fns: dict[str, Callable[[], Any]], repeat: int, warmup: int = 1,
                      before_turn: Callable[[int], None] | None = None) -> dict[str, list[float]]:
    """Seconds of ``repeat`` calls of each of ``fns``, taken in turns (a, b, a, b, ...).

    Two engines measured in turns see the same machine: a drift in load or
    clock (a neighbour, writeback of the last phase's files) hits both, so
    their ratio keeps, where one measured after the other would not.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out: dict[str, list[float]] = {name: [] for name in fns}
    for turn in range(repeat):
        if before_turn is not None:  # e.g. draw this turn's parameters, the same for every side
            before_turn(turn)
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - started)
    return out


class RssSampler:
    """Samples the resident set size of a process (and its children) in a thread; keeps the peak."""

    def __init__(self, pid: int, interval_s: float = 0.02) -> None:
        self.process = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak = 0
        self.start_rss = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        try:
            total = self.process.memory_info().rss
            for child in self.process.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            return total
        except psutil.Error:
            return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self.peak = self.start_rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def run_worker(args: list[str], env: dict[str, str] | None = None, timeout_s: float = 3600) -> dict[str, Any]:
    """Run ``python -m bench.worker ARGS`` in a fresh process; its last stdout line is JSON.

    A fresh process per measurement gives an honest peak RSS (ru_maxrss never goes down).
    """
    completed = subprocess.run(
        [sys.executable, "-m", "bench.worker", *args], capture_output=True, text=True, timeout=timeout_s,
        env={**os.environ, **(env or {}), "PYTHONPATH": bench_pythonpath()},
    )
    if completed.returncode != 0:
        raise RuntimeError(f"bench worker {args[0]} failed: {_last_error(completed.stderr, completed.returncode)}\n"
                           f"{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _last_error(stderr: str, returncode: int) -> str:
    """The exception line of a worker's traceback (the first line of an error, so summaries are never empty)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for i in range(len(lines) - 1, -1, -1):
        head = lines[i].split(":", 1)[0]
        if head.endswith(("Error", "Exception", "Exit", "Interrupt")) and " " not in head:
            return lines[i][:300]
    if returncode < 0:
        return f"killed by signal {-returncode} (out of memory?)"
    return (lines[-1][:300] if lines else f"exit code {returncode}, no output on stderr")


def bench_pythonpath() -> str:
    """PYTHONPATH for a child ``python -m bench.*``: the repository root (bench is not an installed package)."""
    root = str(Path(__file__).resolve().parent.parent)
    rest = os.environ.get("PYTHONPATH", "")
    return root + (os.pathsep + rest if rest else "")


def mib(n_bytes: float) -> float:
    return n_bytes / (1 << 20)


class CpuBusy:
    """The share of the machine's CPU time (all cores, every process) that was not idle while the block ran."""

    def __init__(self) -> None:
        self.fraction = 0.0

    def __enter__(self) -> CpuBusy:
        self._before = psutil.cpu_times()
        return self

    def __exit__(self, *exc: object) -> None:
        after = psutil.cpu_times()
        total = sum(after) - sum(self._before)
        idle = (after.idle - self._before.idle) + (getattr(after, "iowait", 0.0) - getattr(self._before, "iowait", 0.0))
        self.fraction = 1.0 - idle / total if total > 0 else 0.0


class LoadSampler:
    """Records the machine's 1-minute load average at the start, every ``interval_s`` and at the end of a phase."""

    def __init__(self, into: list[float], interval_s: float = 5.0) -> None:
        self.into = into
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.into.append(load_average())

    def __enter__(self) -> LoadSampler:
        self.into.append(load_average())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.into.append(load_average())
