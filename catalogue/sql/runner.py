"""Read-only SQL over the published datasets: check, resolve dataset views, run in a worker.

Every published dataset is a view named after it: ``"parking-occupancy"``
(quoted, as the name has hyphens) or its underscore alias
``parking_occupancy``; ``"parking-occupancy@2"`` (or ``"parking_occupancy@2"``)
is version 2, pinned. Only the views a statement names are built, over the
Parquet parts of the version each one means.

CKAN's ``datastore_search_sql`` calls :func:`run_sql`; the HTTP route calls its two halves,
:func:`prepare_sql` (check, resolve) and :func:`execute_sql` (the worker), so that only the
second holds one of the route's admissions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from catalogue.errors import (
    InvalidParameter, NotFound, SqlError, SqlResourceLimit, SqlUnknownTable,
)
from catalogue.hub import Hub
from catalogue.meta.metadata import get_dataset
from catalogue.meta.models import Dataset
from catalogue.query.engine import resolve_version
from catalogue.errors import QueryTimeout
from catalogue.sql.guard import check_sql
from catalogue.store.local_copies import copies_dir, local_files
from catalogue.sql.pool import SqlPool
from catalogue.sql.worker import SqlTask

TABLE_HINT = (
    'Tables are datasets by name: "parking-occupancy" (quoted) or parking_occupancy, and "parking-occupancy@2" '
    "for a pinned version; the datasets are listed at /api/v1/datasets."
)


@dataclass(frozen=True)
class PreparedSql:
    """A statement checked and its views resolved: all that is left is to run it in a worker."""

    task: SqlTask
    time_limit_ms: int
    memory_limit_mb: int
    started: float


def run_sql(
    hub: Hub, pool: SqlPool, sql: str, *, max_rows: int | None = None, time_limit_ms: int | None = None,
    private_of: int | None = None,
) -> dict[str, Any]:
    """Run one read-only SELECT: ``{columns: [{name, type}], rows, truncated, row_count, elapsed_ms}``.

    ``max_rows`` and ``time_limit_ms`` may lower the limits configured for ``pool``, never raise
    them. Rows are JSON-ready lists: geometry as GeoJSON objects, timestamps as ISO 8601 strings.
    Private datasets are tables only for ``private_of``, their publisher (else they do not exist).
    """
    prepared = prepare_sql(hub, pool, sql, max_rows=max_rows, time_limit_ms=time_limit_ms, private_of=private_of)
    return execute_sql(pool, prepared)


def prepare_sql(
    hub: Hub, pool: SqlPool, sql: str, *, max_rows: int | None = None, time_limit_ms: int | None = None,
    private_of: int | None = None,
) -> PreparedSql:
    """Check the statement and resolve its views, without a worker (the HTTP route admits only prepared ones)."""
    settings = pool.settings
    max_rows = _lowered("max_rows", max_rows, settings.sql_max_rows)
    time_limit_ms = _lowered("timeout_ms", time_limit_ms, settings.sql_time_limit_ms)
    started = time.perf_counter()
    checked = check_sql(sql, max_chars=settings.sql_max_chars)
    views = resolve_views(hub, checked.relations, private_of=private_of)
    on_disk = hub.storage.local_path("datasets") is not None
    hidden = hub.storage.engine_root() if on_disk else str(copies_dir(hub.settings))
    task = SqlTask(sql=checked.text, views=views, max_rows=max_rows, time_limit_ms=time_limit_ms, hidden_prefix=hidden)
    return PreparedSql(task, time_limit_ms, settings.sql_memory_limit_mb, started)


def execute_sql(pool: SqlPool, prepared: PreparedSql) -> dict[str, Any]:
    """Run a prepared statement in a worker (waits for one at most ``sql_busy_wait_ms``, then SqlBusy)."""
    answer = pool.run(prepared.task)
    if not answer["ok"]:
        _raise_failure(answer, prepared.time_limit_ms, prepared.memory_limit_mb)
    return {
        "columns": answer["columns"],
        "rows": answer["rows"],
        "truncated": answer["truncated"],
        "row_count": len(answer["rows"]),
        "elapsed_ms": round((time.perf_counter() - prepared.started) * 1000, 1),
    }


def resolve_views(hub: Hub, names: frozenset[str], *, private_of: int | None = None) -> dict[str, tuple[str, ...]]:
    """The local Parquet files behind each view name (``dataset``, ``data_set`` alias, ``dataset@N``).

    A private dataset is a table only when ``private_of`` is its publisher. The sandbox reads local files
    only: parts in object storage are read from local copies (catalogue/store/local_copies.py), fetched
    after the catalogue's session is closed.
    """
    keys: dict[str, tuple[str, ...]] = {}
    with hub.sessions() as session:
        for name in sorted(names):
            base, _, number = name.partition("@")
            dataset = _find_dataset(session, base, private_of)
            try:
                ref = resolve_version(hub, session, dataset, int(number) if number else None, None)
            except NotFound as exc:
                raise SqlUnknownTable(f"{exc.message} {TABLE_HINT}", details={"table": name}) from None
            keys[name] = ref.keys
    return {name: local_files(hub.storage, hub.settings, parts) for name, parts in keys.items()}


def _find_dataset(session: Session, name: str, private_of: int | None) -> Dataset:
    candidates = [name] + ([name.replace("_", "-")] if "_" in name else [])
    for candidate in candidates:
        try:
            dataset = get_dataset(session, candidate)
        except NotFound:
            continue
        if not dataset.private or dataset.publisher_id == private_of:
            return dataset
    raise SqlUnknownTable(f"There is no dataset named '{name}'. {TABLE_HINT}", details={"table": name})


def _lowered(parameter: str, requested: int | None, maximum: int) -> int:
    if requested is None:
        return maximum
    if not 0 < requested <= maximum:
        raise InvalidParameter(
            f"{parameter} must be between 1 and {maximum}, the configured maximum; got {requested}.",
            details={"parameter": parameter, "maximum": maximum},
        )
    return requested


def _raise_failure(answer: dict[str, Any], time_limit_ms: int, memory_limit_mb: int) -> None:
    if answer["kind"] == "timeout":
        raise QueryTimeout(
            f"The query took longer than {time_limit_ms} ms and was stopped. "
            "Filter or aggregate earlier, or query a smaller part of the data."
        )
    if answer["kind"] == "memory":
        raise SqlResourceLimit(
            f"The query needed more than the {memory_limit_mb} MiB of memory a SQL query may use, and was stopped. "
            "Filter or aggregate earlier, or return fewer columns."
        )
    raise SqlError(f"DuckDB could not run the query: {answer['message']}")
