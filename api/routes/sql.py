"""The read-only SQL endpoint: one SELECT over the published datasets, run in a worker process."""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from api.auth import get_credential, private_of
from api.errors import envelope
from api.params import INT64_MAX, UnicodeText, int_query
from catalogue.errors import SqlBusy
from catalogue.sql.pool import SqlPool
from catalogue.meta.tokens import Credential
from catalogue.sql.runner import run_sql

router = APIRouter()

SQL_DESCRIPTION = (
    'One SELECT statement. Datasets are views: "parking-occupancy" (quoted) or parking_occupancy; '
    '"parking-occupancy@2" is version 2.'
)
TIMEOUT_DESCRIPTION = "Deadline in milliseconds, at most the configured maximum (default: that maximum)."
MAX_ROWS_DESCRIPTION = "Most rows to return, at most the configured maximum (default: that maximum)."


class SqlRequest(BaseModel):
    """The JSON body of ``POST /sql``; an unknown member is refused like an unknown query parameter."""

    model_config = ConfigDict(extra="forbid")

    sql: UnicodeText = Field(description=SQL_DESCRIPTION)
    timeout_ms: int | None = Field(default=None, gt=0, le=INT64_MAX, description=TIMEOUT_DESCRIPTION)
    max_rows: int | None = Field(default=None, gt=0, le=INT64_MAX, description=MAX_ROWS_DESCRIPTION)


@router.get("/sql", response_model=None, summary="Run one read-only SELECT")
async def sql_get(
    request: Request,
    sql: str = Query(..., description=SQL_DESCRIPTION),
    timeout_ms: int | None = int_query(None, ge=1, description=TIMEOUT_DESCRIPTION),
    max_rows: int | None = int_query(None, ge=1, description=MAX_ROWS_DESCRIPTION),
    credential: Credential | None = Depends(get_credential),
) -> Response | dict[str, Any]:
    """Run one read-only SELECT over the published datasets (columns, rows, truncated)."""
    return await _answer(request, sql, timeout_ms, max_rows, credential)


@router.post("/sql", response_model=None, summary="Run one read-only SELECT sent as JSON")
async def sql_post(request: Request, body: SqlRequest,
                   credential: Credential | None = Depends(get_credential)) -> Response | dict[str, Any]:
    """Run one read-only SELECT given as JSON ``{"sql": ...}`` (for statements too long for a URL)."""
    return await _answer(request, body.sql, body.timeout_ms, body.max_rows, credential)


async def _answer(request: Request, sql: str, timeout_ms: int | None, max_rows: int | None,
                  credential: Credential | None) -> Response | dict[str, Any]:
    pool: SqlPool = request.app.state.sql_pool
    admission, threads = _admission(request.app.state, pool)
    # A statement waits for a free worker here, on the event loop, and only then takes a thread: a flood of
    # statements beyond the workers holds no threads (the synchronous routes need them) and no GIL time
    # (the event loop needs it). Measured in tests/api/test_sql_reliability.py (RELIABILITY.md).
    try:
        admission.acquire_nowait()  # first without a deadline: fail_after(0) would refuse even a free worker
    except anyio.WouldBlock:
        try:
            with anyio.fail_after(pool.settings.sql_busy_wait_ms / 1000):
                await admission.acquire()
        except TimeoutError:
            return _busy(pool.busy_error())
    try:
        # Checking, resolving and the wait for the worker run in a thread of the SQL route's own (one per
        # worker): an admitted statement never queues behind the synchronous routes for a thread of the
        # shared pool while it holds an admission. A slow query never blocks the event loop.
        return await anyio.to_thread.run_sync(partial(
            run_sql, request.app.state.hub, pool, sql, max_rows=max_rows, time_limit_ms=timeout_ms,
            private_of=private_of(credential),
        ), limiter=threads)
    except SqlBusy as exc:
        return _busy(exc)
    finally:
        admission.release()


def _admission(state: Any, pool: SqlPool) -> tuple[anyio.CapacityLimiter, anyio.CapacityLimiter]:
    """The app's limit on statements past admission, one per worker, and the threads that wait for the
    workers, as many (made on the event loop, at first use)."""
    limiters: tuple[anyio.CapacityLimiter, anyio.CapacityLimiter] | None = getattr(state, "sql_admission", None)
    if limiters is None:
        workers = pool.settings.sql_workers
        limiters = state.sql_admission = (anyio.CapacityLimiter(workers), anyio.CapacityLimiter(workers))
    return limiters


def _busy(exc: SqlBusy) -> Response:
    response = envelope(exc.code, exc.status, exc.message, exc.details)
    response.headers["Retry-After"] = str(exc.retry_after_s)
    return response
