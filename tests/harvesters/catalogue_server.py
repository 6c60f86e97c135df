"""A real HTTP server on a free loopback port for the CKAN and DCAT harvester tests.

``routes`` maps a path to a function of the query string returning (status, content type, body);
``files`` maps a path to (content type, body); ``log`` keeps every path+query asked for.
A path in ``truncated`` is answered with a Content-Length larger than its body; one in ``redirects``
with a 302 to its Location. Also what both tests share on the catalogue side: a hub allowed to harvest
from loopback, and readers of a harvest's outcome and the versions it made.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

from catalogue.hub import Hub, open_hub
from catalogue.meta.models import Dataset, Version
from catalogue.settings import Settings
from harvesters.catalogue_sources import CatalogueOutcome

# The data of three small datasets, as their resources (distributions) serve them.
TREES_CSV = "baum_id;art;pflanzjahr;hoehe_m\nB1;Linde;1990;12.5\nB2;Weißdorn;2001;8.25\n".encode("cp1252")
PLAYGROUNDS = {"type": "FeatureCollection", "features": [
    {"type": "Feature", "properties": {"spielplatz_id": "S1", "name": "Am Teich", "geraete": 4},
     "geometry": {"type": "Point", "coordinates": [9.95, 53.55]}},
    {"type": "Feature", "properties": {"spielplatz_id": "S2", "name": "Lindenhof", "geraete": 7},
     "geometry": {"type": "Point", "coordinates": [10.01, 53.58]}}]}
GAUGES = [{"pegel": "P1", "datum": "2026-11-01", "stand_m": 2.31}, {"pegel": "P2", "datum": "2026-11-01", "stand_m": 1.07}]

Route = Callable[[dict[str, list[str]]], tuple[int, str, bytes]]


@dataclass
class CatalogueServer:
    url: str = ""
    routes: dict[str, Route] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    truncated: set[str] = field(default_factory=set)
    redirects: dict[str, str] = field(default_factory=dict)  # path → Location (a 302)
    log: list[str] = field(default_factory=list)

    def paths(self) -> list[str]:
        """The paths asked for, without query strings, in order."""
        return [entry.split("?", 1)[0] for entry in self.log]


def _handler(state: CatalogueServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            state.log.append(self.path)
            parts = urlsplit(self.path)
            if parts.path in state.redirects:
                self.send_response(302)
                self.send_header("Location", state.redirects[parts.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if parts.path in state.routes:
                status, kind, body = state.routes[parts.path](parse_qs(parts.query))
            elif parts.path in state.files:
                status, (kind, body) = 200, state.files[parts.path]
            else:
                status, kind, body = 404, "text/plain", b"not found"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            cut = parts.path in state.truncated
            self.send_header("Content-Length", str(len(body) + (1000 if cut else 0)))
            self.end_headers()
            self.wfile.write(body)
            if cut:
                self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def catalogue_server() -> Iterator[CatalogueServer]:
    """Serve a CatalogueServer on 127.0.0.1 and a free port; stopped on exit."""
    state = CatalogueServer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port held bound but not listening: connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@contextmanager
def harvesting_hub(tmp_path: Path) -> Iterator[Hub]:
    """An empty catalogue under ``tmp_path`` that may harvest from 127.0.0.1; closed on exit."""
    hub = open_hub(Settings(data_dir=tmp_path / "var", harvest_allowed_hosts=["127.0.0.1"]))
    try:
        yield hub
    finally:
        hub.close()


def statuses(outcome: CatalogueOutcome) -> dict[str, str]:
    """Each harvested dataset's status in a catalogue harvest's outcome."""
    return {d.dataset: d.status for d in outcome.datasets}


def versions(hub: Hub) -> dict[str, list[tuple[int, int]]]:
    """(number, rows) of every version of every dataset, by dataset name, oldest first."""
    with hub.sessions() as session:
        rows = session.execute(select(Dataset.name, Version.number, Version.row_count).join(Version.dataset)
                               .order_by(Dataset.name, Version.number)).all()
    found: dict[str, list[tuple[int, int]]] = {}
    for name, number, count in rows:
        found.setdefault(name, []).append((number, count))
    return found
