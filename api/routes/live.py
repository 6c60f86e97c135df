"""Live values: the latest row per entity (``/latest``) and each committed delivery's new rows (``/stream``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.deps import get_engine, get_hub, get_kept_results
from api.live_channels import LiveChannels, Subscriber
from api.params import DATA_PARAMETERS, DataParams, records_params
from api.routes.data import CachedPage, page_body, validated_json
from api.server import ENDLESS_STREAM
from catalogue.errors import InvalidParameter, UrbandataError
from catalogue.hub import Hub
from catalogue.query.cached import KeptResults
from catalogue.query.cursors import settings_secret
from catalogue.query.engine import QueryEngine, VersionRef
from catalogue.query.latest import added_rows, latest_page, require_live_key
from catalogue.query.paging import page_limit
from catalogue.query.records import RecordsRequest, plan_records

router = APIRouter()

Render = Callable[[int], Awaitable[bytes]]  # one version's event, as sent


@router.get("/datasets/{name}/latest", response_model=None)
async def latest(
    request: Request,
    name: str,
    params: DataParams = Depends(records_params),
    hub: Hub = Depends(get_hub),
    engine: QueryEngine = Depends(get_engine),
    kept: KeptResults = Depends(get_kept_results),
) -> Response:
    """The latest row of each entity of an (entity, time) dataset, with the records parameters.

    Read from a small file kept for each version at commit time, so the answer
    does not take longer as the history grows.
    """
    settings = hub.settings
    offset, version, as_of = params.offset, params.version, params.as_of
    limit = page_limit(params.limit, offset, settings)
    query = params.request(limit=limit)
    secret = settings_secret(settings)

    def compute(identity: tuple[int, str] | None) -> tuple[VersionRef, CachedPage]:
        ref = engine.version(name, version, as_of, identity=identity)
        found, keyed = latest_page(engine, ref, query, limit=limit, cursor_secret=secret)
        return ref, CachedPage(found["total_count"], found["results_json"].encode(), found["next_cursor"], keyed)

    number, page, state = await kept.get(name, version, as_of, query.cache_key("latest"), CachedPage, compute,
                                         lambda p: len(p.results))
    body, _ = page_body(request, settings, name, number, page, offset=offset, limit=limit)
    return validated_json(body, number, state, pinned=version is not None, if_none_match=params.if_none_match)


async def get_live_channels(request: Request) -> LiveChannels:
    """The app's channels of live values, made on first use."""
    state = request.app.state
    channels: LiveChannels | None = getattr(state, "live_channels", None)
    if channels is None:
        settings = state.hub.settings
        channels = LiveChannels(state.kept_results.reads, poll_s=settings.stream_poll_s,
                                buffer_versions=settings.stream_buffer_versions)
        state.live_channels = channels
    return channels


@router.get("/datasets/{name}/stream", response_model=None)
async def stream(
    request: Request,
    name: str,
    where: str | None = DATA_PARAMETERS["where"].default,  # the records' declaration: one filter language
    last_event_id: str | None = Header(
        None, alias="Last-Event-ID", description="Version last received: the stream resumes after it."),
    hub: Hub = Depends(get_hub),
    engine: QueryEngine = Depends(get_engine),
    kept: KeptResults = Depends(get_kept_results),
    channels: LiveChannels = Depends(get_live_channels),
) -> StreamingResponse:
    """Server-Sent Events: the new rows of each version committed from now on (or after ``Last-Event-ID``).

    Each event's id is its version number; a comment is sent every ``stream_heartbeat_s`` seconds
    while nothing happens. A client that falls too many versions behind gets a ``dropped`` event
    and is disconnected; it resumes with Last-Event-ID.
    """
    settings = hub.settings
    rows = RecordsRequest(where=where, limit=settings.max_returned_rows)
    current = await run_in_threadpool(_check_stream, engine, name, rows)
    after = _resume_point(last_event_id, current)
    closing = request.scope[ENDLESS_STREAM] = asyncio.Event()  # set when the server shuts down (api.server)

    async def render(number: int) -> bytes:
        def compute(identity: tuple[int, str] | None) -> tuple[VersionRef, bytes]:
            ref = engine.version(name, number, identity=identity)
            found = added_rows(engine, ref, rows, limit=settings.max_returned_rows)
            count = found["total_count"]
            head = json.dumps({"dataset": name, "version": number, "total_count": count,
                               "truncated": count > settings.max_returned_rows}, ensure_ascii=False)
            return ref, b"".join((head[:-1].encode(), b',"rows":', found["results_json"].encode(), b"}"))

        _, data, _ = await kept.get(name, number, None, rows.cache_key("stream"), bytes, compute, len)
        return b"id: %d\nevent: rows\ndata: " % number + data + b"\n\n"

    events = _events(channels, name, render, after=after, heartbeat_s=settings.stream_heartbeat_s, closing=closing)
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _check_stream(engine: QueryEngine, name: str, rows: RecordsRequest) -> int:
    """The current version's number, once the dataset is found and ``where`` is checked against its schema."""
    ref = engine.version(name)
    plan_records(rows, ref.schema, list(ref.uris), ref.number)  # a bad filter is a 400 before the stream starts
    return ref.number


def _resume_point(last_event_id: str | None, current: int) -> int | None:
    """The version a resuming client last received; InvalidParameter (400) for one that cannot be."""
    if last_event_id is None or not last_event_id.strip():
        return None
    text = last_event_id.strip()
    if not text.isdigit() or int(text) > current:
        raise InvalidParameter(
            f"Last-Event-ID must be a version number this stream sent (0 to {current}); got '{text[:40]}'. "
            "Reconnect without it to start from the current version.",
            details={"parameter": "Last-Event-ID", "current_version": current},
        )
    return int(text)


async def _events(channels: LiveChannels, name: str, render: Render, *, after: int | None,
                  heartbeat_s: float, closing: asyncio.Event) -> AsyncIterator[bytes]:
    """The event stream of one client: versions after ``after`` (default: the newest) up to the newest, then each new one.

    The client subscribes here, where the stream starts, so the ``finally`` that ends its
    subscription always runs (a generator that never started would never run it).
    """
    subscriber, newest = await channels.subscribe(name)
    sent = newest if after is None else after
    try:
        yield b"retry: 3000\n: live values of version %d on\n\n" % newest
        while True:
            for number in range(sent + 1, newest + 1):
                try:
                    event = await render(number)
                except UrbandataError as exc:  # e.g. a filter the version's schema no longer fits: say so, end
                    yield b"event: error\ndata: " + json.dumps({"error": exc.to_dict()}).encode() + b"\n\n"
                    return
                yield event
                sent = number
            if subscriber.dropped:
                yield b"event: dropped\ndata: {\"reason\": \"the client fell too far behind; resume with Last-Event-ID\"}\n\n"
                return
            told = await _next_version(subscriber, closing, heartbeat_s)
            if told is None:
                yield b": heartbeat\n\n"
            elif told < 0:
                yield b": the server is shutting down\n\n"
                return
            else:
                newest = max(newest, told)
    finally:
        channels.unsubscribe(subscriber)


async def _next_version(subscriber: Subscriber, closing: asyncio.Event, timeout_s: float) -> int | None:
    """The next version number the channel tells ``subscriber``; None after ``timeout_s``; -1 when closing."""
    told = asyncio.ensure_future(subscriber.queue.get())
    stop = asyncio.ensure_future(closing.wait())
    try:
        await asyncio.wait((told, stop), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        told.cancel()  # a get cancelled before it took an item leaves the item in the queue
    if told.done() and not told.cancelled():
        return told.result()
    return -1 if closing.is_set() else None
