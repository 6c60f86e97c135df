"""The DuckDB query engine over published versions (exports build on it: ``catalogue.exports``).

Versions are immutable Parquet parts, so every query reads exactly the files
of the version it serves. Rows are turned into JSON inside DuckDB
(``to_json``), never cell by cell in Python.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import duckdb
from sqlalchemy import Row
from sqlalchemy.orm import Session

from catalogue import duck
from catalogue.query import by_time, memos
from catalogue.store.changes import parquet_scan
from catalogue.errors import InvalidParameter
from catalogue.hub import Hub
from catalogue.meta.metadata import (
    VersionFacts, find_version, get_dataset, get_version, get_version_as_of, get_version_identity,
)
from catalogue.meta.models import Dataset, Version
from catalogue.store.keys import part_key
from catalogue.schema.model import TableSchema
from catalogue.schema.table_schema import json_columns

T = TypeVar("T")


@dataclass(frozen=True)
class VersionRef:
    """What a query needs of a version: its files and schema."""

    dataset: str
    number: int
    uris: tuple[str, ...]
    schema: TableSchema
    row_count: int
    content_hash: str
    keys: tuple[str, ...]  # the parts' storage keys, in the order of ``uris``

    @classmethod
    def of(cls, hub: Hub, dataset: Dataset | str, version: Version | VersionFacts | Row[Any]) -> VersionRef:
        """Resolve the storage keys and engine URIs of ``version``'s parts (of ``dataset``, or the dataset so
        named); ``version`` a Version or the row of its ``VERSION_FACTS`` (``find_version``)."""
        name = dataset if isinstance(dataset, str) else dataset.name
        keys = tuple(part_key(name, p["sha256"]) for p in version.parts)
        uris = tuple(hub.storage.engine_uri(key) for key in keys)
        return cls(name, version.number, uris, TableSchema.from_stored(version.table_schema), version.row_count,
                   version.content_hash, keys)


def resolve_version(
    hub: Hub, session: Session, dataset: str | Dataset, version: int | None, as_of: datetime | None,
) -> VersionRef:
    """The version a request asks for: ``version``, ``as_of``, or the current one.

    The one way a version is resolved (``QueryEngine.version`` keeps its answers;
    the SQL runner passes the ``Dataset`` it already found).
    """
    direct = direct_version(hub, dataset, version, as_of)
    return direct if direct is not None else _resolve_in(hub, session, dataset, version, as_of)


def _resolve_in(
    hub: Hub, session: Session, dataset: str | Dataset, version: int | None, as_of: datetime | None,
) -> VersionRef:
    """``resolve_version`` where one query does not answer it: ``as_of``, or nothing found (raises why)."""
    ds = dataset if isinstance(dataset, Dataset) else get_dataset(session, dataset)
    if version is not None and as_of is not None:
        raise InvalidParameter("Give version or as_of, not both.", details={"parameter": "as_of"})
    found = get_version_as_of(session, ds, as_of) if as_of is not None else get_version(session, ds, version)
    return VersionRef.of(hub, ds, found)


def direct_version(hub: Hub, dataset: str | Dataset, version: int | None, as_of: datetime | None) -> VersionRef | None:
    """The version asked for by number (or the current one) of the dataset so named, in one query without a
    session (``find_version``); None when it takes more (``as_of``), or it is missing (``resolve_version`` says
    why)."""
    if isinstance(dataset, str) and as_of is None and (version is None or version >= 1):
        found = find_version(hub.engine, dataset, version)
        if found is not None:
            return VersionRef.of(hub, dataset, found)
    return None


class QueryEngine:
    """One DuckDB database per process; each query runs on its own cursor."""

    REFS_KEPT = 256

    def __init__(self, hub: Hub, *, spatial: bool = True) -> None:
        """``spatial=False``: without the spatial extension until ``load_spatial`` (loading it takes 0.2-0.3 s;
        a site build that reads no geometry never needs it)."""
        self.hub = hub
        self._con = duck.connect(
            memory_limit_mb=hub.settings.duckdb_memory_limit_mb, threads=hub.settings.duckdb_threads,
            spatial=spatial,
        )
        self._spatial = spatial
        hub.storage.prepare_duckdb(self._con)
        # A page in stored order is a LIMIT over the scan, which DuckDB's late materialization turns into a
        # second scan, a semi-join and a sort (a first page of 100 rows over 1M: 5.1 ms with it, 2.6 without).
        # The setting is the database's, not a cursor's: set once here, before any query runs (set per query,
        # it changed the optimizer's settings under the queries of other threads).
        self._con.execute("SET GLOBAL disabled_optimizers = 'late_materialization'")
        self._lock = threading.Lock()
        self._refs: OrderedDict[tuple[str, int, str], VersionRef] = OrderedDict()
        memos.configure(hub.settings.read_memos)
        by_time.register(hub.storage, hub.settings.row_group_rows)

    def version(self, name: str, number: int | None = None, as_of: datetime | None = None, *,
                identity: tuple[int, str] | None = None) -> VersionRef:
        """``resolve_version`` for a request, with resolved versions kept by (name, number, content hash).

        Versions never change, so a kept one stays right; the current number and hash are
        looked up every time (one indexed query, ~10 µs embedded against ~1 ms for the full
        resolution), so a newly published version is served at once. ``identity``: that
        (number, content hash), when the caller has just looked it up.
        """
        if not memos.on():  # nothing kept to look up: the (number, hash) query would be wasted
            identity = None
        elif identity is None and as_of is None:
            identity = get_version_identity(self.hub.engine, name, number)
        if identity is not None:
            with self._lock:
                ref = self._refs.get((name, *identity))
                if ref is not None:
                    self._refs.move_to_end((name, *identity))
                    return ref
        ref = direct_version(self.hub, name, number, as_of)
        if ref is None:
            with self.hub.sessions() as session:  # the one query found nothing (or as_of): say why
                ref = _resolve_in(self.hub, session, name, number, as_of)
        with self._lock:
            self._refs[(name, ref.number, ref.content_hash)] = ref
            while len(self._refs) > self.REFS_KEPT:
                self._refs.popitem(last=False)
        return ref

    def load_spatial(self) -> None:
        """Load the spatial extension if this engine was opened without it (before a query of geometry)."""
        with self._lock:
            if not self._spatial:
                duck.load_spatial(self._con)
                self._spatial = True

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for one query (DuckDB cursors are safe to use from one thread each)."""
        with self._lock:
            return self._con.cursor()

    def run(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run ``work`` on a fresh cursor, closed afterwards."""
        cur = self.cursor()
        try:
            return work(cur)
        finally:
            cur.close()

    def close(self) -> None:
        """Close the database."""
        self._con.close()

    def records(self, ref: VersionRef, *, limit: int, offset: int) -> dict[str, Any]:
        """A page of rows as ``{total_count, results}`` (geometry as GeoJSON objects)."""
        if limit < 0 or offset < 0:
            raise InvalidParameter("limit and offset must be zero or positive.")
        cur = self.cursor()
        try:
            rows = cur.execute(
                f"SELECT to_json(t)::VARCHAR FROM (SELECT {json_columns(ref.schema)} FROM {parquet_scan(list(ref.uris))} "
                f"LIMIT ? OFFSET ?) AS t",
                [limit, offset],
            ).fetchall()
        finally:
            cur.close()
        return {"total_count": ref.row_count, "results": [json.loads(r[0]) for r in rows]}

