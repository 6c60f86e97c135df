"""Which plans read the parts' by-time copies (``catalogue.store.by_time``), and the copies' URIs for them.

A plan is served from the by-time copies when its filters hold a condition on
the dataset's time field (the date or datetime field of an (entity, time) key)
and none on the key's leading field, and its rows are ordered, grouped or
aggregated by the request: such rows do not depend on the order the parts are
stored in. A plain record list (paged by position) and a question about one
entity keep the parts, which are sorted for them.

The read path knows parts by their engine URIs; a ``QueryEngine`` registers its
storage here (``register``), so a URI is traced back to its storage key. What is
kept in the process: the registered storages (weakly) and the URIs of copies
found or written, so a copy is looked up in the store once. The copies themselves
are files in the store, written with their parts at commit, or here, once, when a
question needs one that is missing (a version made before copies existed).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence

import duckdb

from catalogue.schema.model import TableSchema
from catalogue.store.by_time import by_time_key, copy_order, write_by_time
from catalogue.store.storage import Storage

KNOWN_MAX = 65_536  # copy keys remembered as present, at most (then forgotten and looked up again)

_lock = threading.Lock()
_storages: weakref.WeakValueDictionary[str, Storage] = weakref.WeakValueDictionary()
_row_groups: dict[str, int] = {}
_known: set[str] = set()


def time_order(schema: TableSchema, tested: Sequence[str], ordered: bool) -> tuple[str, ...]:
    """The by-time copies' sort order (``copy_order``) when they may serve a plan, else ().

    ``tested``: the fields the filters' part tests name; ``ordered``: the rows are ordered, grouped or
    aggregated by the request.
    """
    order = copy_order(schema)
    names = set(tested)
    if not ordered or not order or order[0] not in names or schema.primary_key[0] in names:
        return ()
    return order


def register(storage: Storage, row_group_rows: int) -> None:
    """Let the read path find (and write) the by-time copies of the parts of ``storage``."""
    prefix = _prefix(storage)
    with _lock:
        _storages[prefix] = storage
        _row_groups[prefix] = row_group_rows


def _prefix(storage: Storage) -> str:
    probe = "datasets/x"
    return storage.engine_uri(probe)[: -len(probe)]


def copies(cur: duckdb.DuckDBPyConnection, uris: Sequence[str], order: Sequence[str]) -> dict[str, str]:
    """Part URI -> its by-time copy's URI, each copy written if missing; {} when a part's storage is not known."""
    out: dict[str, str] = {}
    for uri in dict.fromkeys(uris):
        found = _storage_of(uri)
        if found is None:
            return {}
        storage, prefix = found
        part = uri[len(prefix):]
        key = by_time_key(part)
        copy = storage.engine_uri(key)
        if copy not in _known and not storage.exists(key):
            write_by_time(cur, storage, part, order, _row_groups.get(prefix, 64 * 1024))
        out[uri] = copy
        with _lock:
            if len(_known) >= KNOWN_MAX:
                _known.clear()
            _known.add(copy)
    return out


def _storage_of(uri: str) -> tuple[Storage, str] | None:
    with _lock:
        for prefix, storage in _storages.items():
            if uri.startswith(prefix) and "/parts/" in uri[len(prefix):]:
                return storage, prefix
    return None


def forget() -> None:
    """Forget the copies known to exist (tests that remove them; the collector's own process)."""
    with _lock:
        _known.clear()
