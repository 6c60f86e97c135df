"""8. Catalogue harvests: a CKAN portal and a DCAT catalogue on a local server, as many datasets as the
smaller site build (``--catalogue-sizes``: 1,000 by default, 200 in quick mode).

The portal runs in a thread of this process (a real HTTP server on a free loopback port); each
harvest runs in a fresh process (``python -m bench.phase_catalogue_harvest KIND URL DATA_DIR``),
which prints one JSON line: its seconds and peak RSS, once for the first run (every dataset new:
its resource read to infer a schema, then harvested) and once for an unchanged re-run (the
listing alone). Every dataset is a 20-row CSV, so the figures measure the per-dataset cost.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bench.context import Context
from bench.measure import Figure, bench_pythonpath, mib

SECTION = "catalogue-harvest"
PAGE = 100  # datasets per listing page (CKAN rows, DCAT Hydra page)
DCAT_PREFIXES = ("@prefix dcat: <http://www.w3.org/ns/dcat#> .\n@prefix dct: <http://purl.org/dc/terms/> .\n"
                 "@prefix foaf: <http://xmlns.com/foaf/0.1/> .\n@prefix hydra: <http://www.w3.org/ns/hydra/core#> .\n")


def _csv(i: int) -> bytes:
    rows = "".join(f"S{i}-{r};2026-11-{1 + r % 28:02d};{(i * 31 + r) % 997}.5\n" for r in range(20))
    return ("station;datum;wert\n" + rows).encode()


def _package(base: str, i: int) -> dict[str, Any]:
    return {"id": f"pkg-{i:05d}", "name": f"datensatz-{i:05d}", "title": f"Datensatz {i}", "state": "active",
            "notes": f"Messwerte der Station {i}.", "metadata_modified": "2026-11-20T09:30:01.551092",
            "license_id": "http://dcat-ap.de/def/licenses/dl-by-de/2.0", "tags": [{"name": "Umwelt"}],
            "organization": {"name": "stadt-musterstadt", "title": "Stadt Musterstadt"},
            "resources": [{"format": "CSV", "url": f"{base}/data/{i}.csv"}]}


def _dcat_page(base: str, n: int, page: int) -> bytes:
    first, last = page * PAGE, min(n, (page + 1) * PAGE)
    out = [DCAT_PREFIXES]
    if last < n:
        out.append(f"<{base}/catalog.ttl?page={page}> hydra:next <{base}/catalog.ttl?page={page + 1}> .\n")
    for i in range(first, last):
        out.append(
            f"<{base}/dataset/{i}> a dcat:Dataset ; dct:identifier \"datensatz-{i:05d}\" ; "
            f"dct:title \"Datensatz {i}\"@de ; dct:description \"Messwerte der Station {i}.\"@de ; "
            f"dct:publisher <{base}/org> ; dcat:keyword \"Umwelt\"@de ; dcat:distribution <{base}/dist/{i}> .\n"
            f"<{base}/dist/{i}> dcat:downloadURL <{base}/data/{i}.csv> ; dct:format "
            "<http://publications.europa.eu/resource/authority/file-type/CSV> ; "
            "dct:license <http://dcat-ap.de/def/licenses/dl-by-de/2.0> .\n")
    out.append(f"<{base}/org> foaf:name \"Stadt Musterstadt\" .\n")
    return "".join(out).encode()


@contextmanager
def portal(n: int) -> Iterator[str]:
    """A CKAN portal and a DCAT catalogue of ``n`` datasets on one local server; yields its base URL."""
    state: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            parts, base = urlsplit(self.path), state["base"]
            query = parse_qs(parts.query)
            if parts.path == "/api/3/action/package_search":
                start, rows = int(query["start"][0]), int(query["rows"][0])
                results = [_package(base, i) for i in range(start, min(n, start + rows))]
                kind, body = "application/json", json.dumps({"success": True, "result": {"count": n,
                                                                                         "results": results}}).encode()
            elif parts.path == "/catalog.ttl":
                kind, body = "text/turtle", _dcat_page(base, n, int(query.get("page", ["0"])[0]))
            elif parts.path.startswith("/data/"):
                kind, body = "text/csv", _csv(int(parts.path[6:].split(".")[0]))
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state["base"] = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["base"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _harvest_in_child(kind: str, url: str, data_dir: Path) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.phase_catalogue_harvest", kind, url, str(data_dir)], capture_output=True,
        text=True, timeout=3600, env={**os.environ, "PYTHONPATH": bench_pythonpath()})
    if completed.returncode != 0:
        raise RuntimeError(f"catalogue harvest ({kind}) failed: {completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(ctx: Context) -> None:
    res = ctx.results
    # The smaller catalogue size: 1,000 by default, 200 in quick mode, a few in the bench's own test (whose
    # 1,000-dataset harvests took most of its run).
    n = min(ctx.catalogue_sizes)
    with portal(n) as base:
        for kind, url in (("ckan", base), ("dcat", f"{base}/catalog.ttl?page=0")):
            first: list[float] = []
            again: list[float] = []
            rss: list[float] = []
            turns = min(ctx.heavy, 2)  # a first harvest of 1,000 datasets takes minutes
            for i in range(turns):
                data_dir = ctx.work / f"catalogue-harvest-{kind}"
                shutil.rmtree(data_dir, ignore_errors=True)
                ctx.step(f"catalogue harvest: {kind}, {n:,} datasets, repeat {i + 1}/{turns}")
                got = _harvest_in_child(kind, url, data_dir)
                if got["first"]["published"] != n or got["again"]["skipped"] != n:
                    raise RuntimeError(f"{kind} harvest did not publish then skip all {n} datasets: {got}")
                first.append(n / got["first"]["seconds"])
                again.append(n / got["again"]["seconds"])
                rss.append(mib(got["peak_rss"]))
                shutil.rmtree(data_dir, ignore_errors=True)
            res.add(Figure(f"harvest.{kind}.first", f"{kind.upper()} first harvest of {n:,} datasets (each new)",
                           "datasets/s", first, higher_is_better=True))
            res.add(Figure(f"harvest.{kind}.unchanged", f"{kind.upper()} unchanged re-run of {n:,} datasets "
                           "(listing only)", "datasets/s", again, higher_is_better=True))
            res.add(Figure(f"harvest.{kind}.peak_rss", f"{kind.upper()} harvest of {n:,} datasets, peak RSS of the "
                           "harvesting process (both runs)", "MiB", rss))
    res.note(SECTION, f"A local server (a thread of the bench process) serves a CKAN `package_search` and a "
             f"Hydra-paged DCAT-AP Turtle catalogue of {n:,} datasets, {PAGE} per page, each with one 20-row CSV "
             "resource. `harvest_catalogue` runs in a fresh process with a fresh SQLite catalogue: the first run "
             "creates every dataset (its resource downloaded twice: once to infer its schema, once by the runner), "
             "the second finds every dataset's metadata unchanged and fetches no data. Peak RSS is the harvesting "
             "process's ru_maxrss, imports included.")


def _child(kind: str, url: str, data_dir: str) -> None:
    from catalogue.hub import open_hub
    from catalogue.settings import Settings
    from harvesters.catalogue_sources import CatalogueSpec, harvest_catalogue

    hub = open_hub(Settings(data_dir=Path(data_dir), harvest_allowed_hosts=["127.0.0.1"]))
    spec = CatalogueSpec(name=f"bench-{kind}", type=kind, url=url, options={"rows": PAGE} if kind == "ckan" else {})
    runs = {}
    try:
        for label in ("first", "again"):
            started = time.perf_counter()
            outcome = harvest_catalogue(hub, spec)
            runs[label] = {"seconds": time.perf_counter() - started, "status": outcome.status,
                           **{s: outcome.count(s) for s in ("published", "skipped", "failed")}}
    finally:
        hub.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(json.dumps({**runs, "peak_rss": peak}))


if __name__ == "__main__":
    _child(*sys.argv[1:4])
