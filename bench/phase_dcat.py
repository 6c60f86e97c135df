"""12. DCAT-AP.de: latency of the catalogue's first page (/catalog.ttl) at growing catalogue sizes.

As phase 9: phase 6's synthetic catalogue (SQLite), ``urbandata serve`` in its own process, one
request at a time, each timed from this process. Every answer is checked: status 200, Turtle that
parses, one page of datasets, and Hydra's ``totalItems`` equal to the catalogue's size.
"""

from __future__ import annotations

import time

import httpx
from rdflib import Graph

from bench.catalogue_data import grown_catalogues
from bench.context import Context
from bench.measure import Figure
from bench.phase_ckan import percentile
from bench.servers import our_api
from catalogue.meta.dcat import DCAT, HYDRA

SECTION = "dcat"
REQUESTS, QUICK_REQUESTS = 100, 20


def _check(body: bytes, size: int) -> int:
    """The datasets on the page; RuntimeError when the answer is not the catalogue's first page."""
    graph = Graph().parse(data=body, format="turtle")
    total = next(iter(graph.objects(None, HYDRA.totalItems)), None)
    if total is None or int(total) != size:
        raise RuntimeError(f"/catalog.ttl says totalItems={total}, the catalogue holds {size:,}")
    return len(set(graph.objects(None, DCAT.dataset)))


def _timed(client: httpx.Client, url: str, size: int, n: int) -> tuple[list[float], int]:
    times, listed = [], 0
    for i in range(n + 3):  # three to warm the server's caches and the connection
        started = time.perf_counter()
        answer = client.get(url)
        elapsed = (time.perf_counter() - started) * 1000
        if answer.status_code != 200:
            raise RuntimeError(f"/catalog.ttl answered {answer.status_code}: {answer.text[:300]}")
        if i == 0:
            listed = _check(answer.content, size)
        if i >= 3:
            times.append(elapsed)
    return times, listed


def run(ctx: Context) -> None:
    n = QUICK_REQUESTS if ctx.quick or ctx.repeat < 3 else REQUESTS
    for size, data_dir in grown_catalogues(ctx, "dcat"):
        with our_api(data_dir, {}, ctx.work / f"dcat-{size}.log") as server, httpx.Client(timeout=120) as client:
            ctx.step(f"dcat: /catalog.ttl first page, {size:,} datasets, {n} requests")
            times, listed = _timed(client, f"{server.url}/catalog.ttl", size, n)
            what = f"/catalog.ttl first page ({listed} datasets with versions and distributions), {size:,} datasets"
            ctx.results.add(Figure(f"dcat.catalog.{size}.p50", f"{what}: p50 (spread: min–max)", "ms", times))
            ctx.results.add(Figure(f"dcat.catalog.{size}.p99", f"{what}: p99", "ms", [percentile(times, 0.99)],
                                   note=f"of {n} requests"))
    ctx.results.note(SECTION, "`GET /catalog.ttl` (DCAT-AP.de 3.0, Turtle, the default 100 datasets a page) against "
                     "`urbandata serve` in its own process, one request at a time, on phase 6's synthetic catalogue "
                     "(SQLite). Each dataset on the page comes with its versions (dcat:hasVersion) and one "
                     "distribution per export format; the graph is built with rdflib and serialised per request.")
