"""An in-process LRU of query results, bounded by the bytes it holds.

A version never changes (its parts are content-addressed), so a result
computed for (version content hash, normalised parameters) stays right for
ever: nothing is invalidated, entries only age out. A newly published
version has another hash and number, so requests for it simply miss.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, TypeVar

T = TypeVar("T")

# Per entry beyond the value and the key's text: the dict slot, the key tuple, the value object.
ENTRY_OVERHEAD_BYTES = 256


class ResultCache:
    """A thread-safe LRU from hashable keys to results, holding at most ``max_bytes`` (0: off)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether anything is ever kept."""
        return self.max_bytes > 0

    @property
    def held_bytes(self) -> int:
        """Bytes counted against the bound right now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, kind: type[T]) -> T | None:
        """The result kept under ``key`` if it is a ``kind`` (and mark it recently used), else None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or not isinstance(entry[0], kind):
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def put(self, key: Hashable, value: object, size_bytes: int) -> bool:
        """Keep ``value`` (about ``size_bytes`` large), evicting the least recently used; False if it cannot fit."""
        size = size_bytes + key_bytes(key) + ENTRY_OVERHEAD_BYTES
        if size > self.max_bytes:
            return False
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._entries[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, freed) = self._entries.popitem(last=False)
                self._bytes -= freed
        return True


def params_key(sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """A key for a query and its parameter values (lists as tuples); None when a value is unhashable.

    For queries over content-addressed parts named in their parameters: their answers never change.
    """
    key = (sql, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items())))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def key_bytes(key: Hashable) -> int:
    """A cheap estimate of what a key of strings, numbers and tuples of them occupies."""
    if isinstance(key, tuple):
        return sum(key_bytes(part) for part in key) + 8 * len(key)
    if isinstance(key, (str, bytes)):
        return len(key)
    return 16


def answer_key(what: str, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """A key of ``PART_ANSWERS``: what is kept (columns, count, kept parts), the query and its parameter values."""
    key = params_key(sql, params)
    return None if key is None else (what, *key)


# The small answers about a query over content-addressed parts (named in its parameters), which
# therefore never change: its output columns (binding costs ~0.5 ms), its count (a scan), the parts
# pruning keeps (a query over their footers). One byte bound for the three (4 MiB each before), each
# entry keyed by answer_key, so an answer of one kind never meets a lookup of another.
PART_ANSWERS = ResultCache(12 << 20)
