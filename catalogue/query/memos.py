"""One switch for the read path's memos (plans, counts, pruning answers, part footers, output columns, version refs).

Each memo is keyed by content-addressed inputs, so it never goes stale; the
switch exists to measure the path they spare (the benchmark's headline
figures run with ``read_memos=False``). It is process-wide because the memos
are: ``QueryEngine`` sets it from its settings when it is built.
"""

from __future__ import annotations

_on = True


def configure(on: bool) -> None:
    """Turn every read-path memo on or off for this process."""
    global _on
    _on = on


def on() -> bool:
    """Whether the read path may answer from its memos."""
    return _on
