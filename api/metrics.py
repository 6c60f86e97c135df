"""Prometheus metrics of one app (its own registry, so a process may build several apps) and the request log.

Counted per request by ``ObserveRequests`` (the outermost middleware, so refused requests count too):

* ``urbandata_http_requests_total{method, route, status}``: ``route`` is the route's template
  (``/api/v1/datasets/{name}``), never the raw path, so the labels stay bounded; the built site is
  ``/{path:path}``, a request no route matched ``unmatched``; ``status`` is the class (``2xx``...);
* ``urbandata_http_request_duration_seconds{route}``: a histogram, until the last byte is sent;
* ``urbandata_http_requests_in_progress``.

Each request also gets an id (the client's ``X-Request-ID`` when it is short and plain, else a new
one), sent back in ``X-Request-ID``, carried by every log line written while answering it, and one
log line ``urbandata.access`` at its end (method, route, path, status, duration_ms).

Read at scrape time by ``HubCollector`` (the kernel stays free of Prometheus):

* ``urbandata_harvest_runs_total{outcome}`` and ``urbandata_harvest_rows_total{outcome}``: every
  ended harvest job and push in the catalogue database (all processes' runs: the same totals on
  every replica, so take one replica's value, not the sum), ``urbandata_harvest_runs_active{state}``
  (queued, running);
* ``urbandata_sql_workers{state="busy"|"idle"}`` and ``urbandata_sql_workers_limit``: this process's pool;
* ``urbandata_queue_depth{queue}`` when the hub has a job queue (``queue_url``; api/readiness.py).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.logs import request_id
from api.readiness import queue_depths
from catalogue.hub import Hub
from catalogue.ingest.jobs import IN_FLIGHT
from catalogue.meta.job_reads import job_outcomes
from catalogue.sql.pool import SqlPool

# No *_created series beside each counter and histogram: they double what is scraped and say little.
disable_created_metrics()

log = logging.getLogger("urbandata.metrics")
access_log = logging.getLogger("urbandata.access")

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds: a cached records answer takes about a millisecond, an export or a stream may take minutes.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
UNMATCHED = "unmatched"
MAX_CHILDREN = 4096
# Jobs whose rows are their child jobs' rows summed (a catalogue run): counted as runs, their rows not twice.
SUMMARY_OUTCOMES = frozenset({"finished"})
# The scope key of the request's observation, shared with the inner RecordRoute (scopes are copied on the way in).
SCOPE_KEY = "urbandata.observation"
REQUEST_ID_HEADER = b"x-request-id"
_PLAIN_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class Metrics:
    """The registry of one app and its request metrics."""

    def __init__(self, hub: Hub, sql_pool: SqlPool) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("urbandata_http_requests", "HTTP requests answered, by method, route template "
                                "and status class.", ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("urbandata_http_request_duration_seconds", "Time from a request's arrival to the "
                                 "last byte of its answer, by route template.", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.in_progress = Gauge("urbandata_http_requests_in_progress", "Requests being answered now.",
                                 registry=self.registry)
        self.registry.register(HubCollector(hub, sql_pool))

        # The labelled children by (method, route, status class): labels() costs more than the count itself.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        key = (method, route, status // 100)
        children = self._children.get(key)
        if children is None:
            shown = method if method in METHODS else "other"
            children = (self.requests.labels(shown, route, f"{status // 100}xx"), self.latency.labels(route))
            if len(self._children) < MAX_CHILDREN:  # bounded like the labels (methods x routes x classes)
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class HubCollector(Collector):
    """Harvest runs, SQL workers and the queue, read when Prometheus scrapes."""

    def __init__(self, hub: Hub, sql_pool: SqlPool) -> None:
        self.hub = hub
        self.sql_pool = sql_pool

    def describe(self) -> list[Metric]:
        return []  # nothing read at registration: the families come from collect()

    def collect(self) -> Iterator[Metric]:
        yield from self._harvests()
        workers = GaugeMetricFamily("urbandata_sql_workers", "Worker processes of the SQL endpoint in this "
                                    "process, by state.", labels=["state"])
        busy, alive = self.sql_pool.busy, len(self.sql_pool.processes)
        workers.add_metric(["busy"], busy)
        workers.add_metric(["idle"], max(0, alive - busy))
        yield workers
        yield GaugeMetricFamily("urbandata_sql_workers_limit", "Most SQL worker processes (sql_workers).",
                                value=self.hub.settings.sql_workers)
        yield from self._queue()

    def _harvests(self) -> Iterator[Metric]:
        try:
            with self.hub.sessions() as session:
                outcomes = job_outcomes(session)
        except Exception as exc:  # noqa: BLE001 - a scrape must answer; /ready says what is wrong
            log.warning("metrics: harvest jobs could not be read: %s", type(exc).__name__)
            return
        runs = CounterMetricFamily("urbandata_harvest_runs", "Finished harvest runs and pushes, by outcome "
                                   "(catalogue-wide).", labels=["outcome"])
        rows = CounterMetricFamily("urbandata_harvest_rows", "Rows of the deliveries of finished runs, by outcome "
                                   "(catalogue-wide).", labels=["outcome"])
        active = GaugeMetricFamily("urbandata_harvest_runs_active", "Harvest runs and pushes not ended yet, by "
                                   "state (catalogue-wide).", labels=["state"])
        for state in IN_FLIGHT:
            active.add_metric([state], outcomes.get(state, (0, 0))[0])
        for outcome, (count, total) in sorted(outcomes.items()):
            if outcome not in IN_FLIGHT:
                runs.add_metric([outcome], count)
                if outcome not in SUMMARY_OUTCOMES:
                    rows.add_metric([outcome], total)
        yield runs
        yield rows
        yield active

    def _queue(self) -> Iterator[Metric]:
        settings = self.hub.settings
        if not settings.queue_url:
            return
        try:
            depths = queue_depths(settings)
        except Exception as exc:  # noqa: BLE001 - an unreachable queue shows as a missing depth; /ready names it
            log.warning("metrics: the queue's depth could not be read: %s", type(exc).__name__)
            return
        family = GaugeMetricFamily("urbandata_queue_depth", "Messages waiting in the harvest job queue (name.DQ: "
                                   "retries waiting for their backoff).", labels=["queue"])
        for name, depth in depths.items():
            family.add_metric([name], depth)
        yield family


def route_label(scope: Scope) -> str:
    """The bounded label of the route that answered ``scope`` after routing (``unmatched``: none did).

    A route of a router included with a prefix keeps its own path (``/datasets/{name}``); FastAPI
    names the whole template in the scope's route context (``/api/v1/datasets/{name}``).
    """
    route = scope.get("route")
    if route is None and scope.get("endpoint") is not None:  # a mounted app (the site): FastAPI sets no route
        prefix = scope.get("root_path", "").removeprefix(scope.get("app_root_path", ""))
        return f"{prefix}/{{path:path}}"
    if route is None:
        return UNMATCHED
    if isinstance(route, Mount):
        return f"{route.path}/{{path:path}}"
    context = scope.get("fastapi", {}).get("effective_route_context") if isinstance(scope.get("fastapi"), dict) else None
    template = getattr(context, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else UNMATCHED


class ObserveRequests:
    """The outermost middleware: request id, metrics and the request's log line."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope.get("headers", [])).get(REQUEST_ID_HEADER, b"").decode("latin-1")
        rid = sent if sent and _PLAIN_ID.fullmatch(sent) else os.urandom(16).hex()
        token = request_id.set(rid)
        observation: dict[str, Any] = {"route": UNMATCHED}
        # Set in the server's own scope, not a copy: keys set further in must reach the server (an event
        # stream's ENDLESS_STREAM, which api.server's shutdown ends the stream by).
        scope[SCOPE_KEY] = observation
        status = 500  # unless an answer starts
        started = time.perf_counter()

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (REQUEST_ID_HEADER, rid.encode())]}
            await send(message)

        self.metrics.in_progress.inc()
        try:
            await self.app(scope, receive, send_observed)
        finally:
            seconds = time.perf_counter() - started
            self.metrics.in_progress.dec()
            route = observation["route"]
            self.metrics.observe(scope["method"], route, status, seconds)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info("%s %s %s %d %.1f ms", scope["method"], route, scope["path"], status, seconds * 1000,
                                extra={"method": scope["method"], "route": route, "path": scope["path"],
                                       "status": status, "duration_ms": round(seconds * 1000, 3)})
            request_id.reset(token)


class RecordRoute:
    """The innermost middleware: after routing, tells ``ObserveRequests`` which route answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            observation = scope.get(SCOPE_KEY)
            if observation is not None:
                observation["route"] = route_label(scope)
