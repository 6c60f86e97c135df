"""Live values read: the latest row per entity, and the rows each version added, through the records engine.

Both are answered by planning the ODSQL request (``plan_records``) over small
files instead of the version's parts: the latest file of the version, or the
files holding the rows it added (``catalogue.store.live``). So the filters,
select, order and paging are exactly those of records, and ``/latest`` reads
one small file whatever the length of the history.
"""

from __future__ import annotations

from typing import Any

from catalogue.errors import LiveValuesUnavailable
from catalogue.query.cursors import PROCESS_SECRET
from catalogue.query.engine import QueryEngine, VersionRef
from catalogue.query.pruning import part_rows
from catalogue.query.records import RecordsRequest, plan_records, run_records
from catalogue.store.keys import latest_key
from catalogue.store.live import LiveKey, Snapshot, latest_rows, live_key, new_rows


def snapshot_of(ref: VersionRef) -> Snapshot:
    """The ``Snapshot`` of a resolved version (what it removed is not known here)."""
    return Snapshot(ref.dataset, ref.number, ref.content_hash, ref.keys, ref.schema)


def require_live_key(ref: VersionRef) -> LiveKey:
    """The (entity, time) key of ``ref``'s schema; LiveValuesUnavailable (404) when it has none."""
    live = live_key(ref.schema)
    if live is None:
        key = ", ".join(ref.schema.primary_key) or "none"
        raise LiveValuesUnavailable(
            f"Dataset '{ref.dataset}' has no latest values: its primary key ({key}) is not an entity followed by "
            "a date or datetime field. Use /records with order_by instead.",
            details={"dataset": ref.dataset, "primary_key": list(ref.schema.primary_key)},
        )
    return live


def latest_uri(engine: QueryEngine, ref: VersionRef) -> str:
    """The engine URI of ``ref``'s latest file; made from the parts, once, when the commit left none."""
    require_live_key(ref)
    storage = engine.hub.storage
    key = latest_key(ref.dataset, ref.number, ref.content_hash)
    if storage.exists(key):
        return storage.engine_uri(key)
    return engine.run(lambda cur: latest_rows(cur, storage, snapshot_of(ref)))


def latest_page(engine: QueryEngine, ref: VersionRef, request: RecordsRequest, *, limit: int,
                cursor_secret: bytes = PROCESS_SECRET) -> tuple[dict[str, Any], bool]:
    """A records page over ``ref``'s latest row per entity: ``run_records``' answer and whether it pages by cursor."""
    uri = latest_uri(engine, ref)
    # The file's row count (from its footer, read once: the file never changes) spares a count per page.
    plan = plan_records(request, ref.schema, [uri], ref.number, row_count=part_rows(uri), cursor_secret=cursor_secret)
    found = engine.run(lambda cur: run_records(cur, plan, version=ref.number, limit=limit,
                                               time_limit_ms=engine.hub.settings.query_time_limit_ms,
                                               cursor_secret=cursor_secret))
    return found, plan.keyed


def added_rows(engine: QueryEngine, ref: VersionRef, request: RecordsRequest, *, limit: int) -> dict[str, Any]:
    """The rows version ``ref`` added to the version before it, filtered and capped as ``request`` says.

    ``{total_count, results_json, next_cursor}`` as records gives it; no rows when it added none.
    """
    before = engine.version(ref.dataset, ref.number - 1) if ref.number > 1 else None
    storage = engine.hub.storage
    uris = engine.run(lambda cur: new_rows(cur, storage, snapshot_of(ref),
                                           snapshot_of(before) if before is not None else None))
    if not uris:
        return {"total_count": 0, "results_json": "[]", "next_cursor": None}
    plan = plan_records(request, ref.schema, uris, ref.number)
    return engine.run(lambda cur: run_records(cur, plan, version=ref.number, limit=limit,
                                              time_limit_ms=engine.hub.settings.query_time_limit_ms))
