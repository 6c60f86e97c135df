"""9. CKAN package_search: latency of a first page at growing catalogue sizes, through the real server.

The catalogue is phase 6's synthetic one (metadata rows and metadata-only versions, SQLite); the
server is ``urbandata serve`` in its own process; requests go one at a time (latency, not
throughput), each timed from this process. Every answer is checked: status 200, CKAN's envelope,
and the count it reports.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from bench.catalogue_data import grown_catalogues
from bench.context import Context
from bench.measure import Figure
from bench.servers import our_api

SECTION = "ckan"
SEARCHES: dict[str, dict[str, str]] = {
    "all": {},
    "q": {"q": "Verkehr"},
    "fq": {"fq": "tags:Klima"},
    "facets": {"facet.field": '["tags","organization","groups","license_id"]'},
}
REQUESTS, QUICK_REQUESTS = 200, 50


def percentile(values: list[float], share: float) -> float:
    """The value below which ``share`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def _timed(client: httpx.Client, url: str, params: dict[str, str], n: int) -> tuple[list[float], int]:
    times, count = [], -1
    for i in range(n + 3):  # three to warm the server's caches and the connection
        started = time.perf_counter()
        answer = client.get(url, params={**params, "rows": "10"})
        elapsed = (time.perf_counter() - started) * 1000
        body: dict[str, Any] = answer.json()
        if answer.status_code != 200 or not body.get("success") or len(body["result"]["results"]) > 10:
            raise RuntimeError(f"package_search {params} answered {answer.status_code}: {answer.text[:300]}")
        count = body["result"]["count"]
        if i >= 3:
            times.append(elapsed)
    return times, count


def run(ctx: Context) -> None:
    n = QUICK_REQUESTS if ctx.quick or ctx.repeat < 3 else REQUESTS
    for size, data_dir in grown_catalogues(ctx, "ckan"):
        with our_api(data_dir, {}, ctx.work / f"ckan-{size}.log") as server, httpx.Client(timeout=60) as client:
            for label, params in SEARCHES.items():
                ctx.step(f"ckan: package_search {label}, {size:,} datasets, {n} requests")
                times, count = _timed(client, f"{server.url}/api/3/action/package_search", params, n)
                what = f"package_search {label} {params or ''}, first 10 of {count:,}, {size:,} datasets"
                ctx.results.add(Figure(f"ckan.search.{size}.{label}.p50", f"{what}: p50 (spread: min–max)", "ms",
                                       times))
                ctx.results.add(Figure(f"ckan.search.{size}.{label}.p99", f"{what}: p99", "ms",
                                       [percentile(times, 0.99)], note=f"of {n} requests"))
    ctx.results.note(SECTION, "`GET /api/3/action/package_search?rows=10` (plus the parameters shown) against "
                     "`urbandata serve` in its own process, one request at a time, on phase 6's synthetic catalogue "
                     "(SQLite; four keywords and one theme per dataset, one publisher per 100 datasets). `q` is the "
                     "catalogue search (the full-text index of `catalogue/meta/fts.py`: `q` alone is counted there and "
                     "its page sorted among the title matches first); `fq` and the facets over tags "
                     "read the JSON keyword lists; the organisation and licence facets are SQL GROUP BYs.")
