"""13. Unchanged re-harvest of every demo source: requests sent and wall time.

The demo city is harvested once from a local feed server (the stdlib's, which answers If-Modified-Since
as the demo's does); then every source is harvested again with nothing changed. The figure to keep: one
request per source (each a conditional GET answered 304) and no new version, and the wall time of the
whole unchanged round against the first one.
"""

from __future__ import annotations

import shutil
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from bench.context import Context
from bench.measure import Figure
from catalogue.hub import open_hub
from catalogue.meta.definitions import load_definitions, sync_definitions
from catalogue.settings import PROJECT_ROOT, Settings
from harvesters.runner import harvest_source, list_sources

SECTION = "reharvest"


class _Counting(SimpleHTTPRequestHandler):
    hits: list[str]

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self.hits.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


def run(ctx: Context) -> None:
    data_dir = ctx.work / "reharvest"
    shutil.rmtree(data_dir, ignore_errors=True)
    hits: list[str] = []
    handler = type("Handler", (_Counting,), {"hits": hits})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(PROJECT_ROOT / "datasets")))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    first, again, requests = [], [], []
    try:
        for turn in range(ctx.repeat):
            shutil.rmtree(data_dir, ignore_errors=True)
            hub = open_hub(Settings(data_dir=data_dir, feed_base_url=f"http://127.0.0.1:{httpd.server_address[1]}/",
                                    harvest_allowed_hosts=["127.0.0.1"]))
            try:
                sync_definitions(hub, load_definitions(hub.settings.definitions_dir))
                names = list_sources(hub)
                ctx.step(f"reharvest: turn {turn + 1}, first harvest of {len(names)} sources")
                started = time.perf_counter()
                outcomes = [harvest_source(hub, n) for n in names]
                first.append(time.perf_counter() - started)
                if any(o.status != "published" for o in outcomes):
                    raise RuntimeError(f"the first harvest did not publish: {[o.message for o in outcomes]}")
                hits.clear()
                ctx.step(f"reharvest: turn {turn + 1}, unchanged re-harvest")
                started = time.perf_counter()
                outcomes = [harvest_source(hub, n) for n in names]
                again.append(time.perf_counter() - started)
                if any(o.status != "unchanged" for o in outcomes):
                    raise RuntimeError(f"an unchanged source made a version: {[o.message for o in outcomes]}")
                requests.append(len(hits) / len(names))
            finally:
                hub.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
        shutil.rmtree(data_dir, ignore_errors=True)
    ctx.results.add(Figure("reharvest.requests_per_source", "unchanged re-harvest: requests sent per source",
                           "requests", requests, note=f"{len(names)} demo sources; target 1"))
    ctx.results.add(Figure("reharvest.unchanged_s", "unchanged re-harvest of every demo source: wall time", "s", again))
    ctx.results.add(Figure("reharvest.first_s", "first harvest of every demo source: wall time", "s", first))
    ctx.results.note(SECTION, "Every demo source (`datasets/`) harvested from a local stdlib HTTP server, then again "
                     "unchanged: each second request carries If-None-Match/If-Modified-Since and is answered 304, "
                     "so no body is read and no version made.")
