"""AnsweringServer: a real HTTP server on a free loopback port whose answers a test writes (feeds that drip,
stall, fail or count their requests)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class AnsweringServer:
    """A real HTTP server on loopback at a free port; ``answer(handler, server)`` writes each response.

    ``hits`` keeps each request's path and headers, in order.
    """

    def __init__(self, answer: Callable[[BaseHTTPRequestHandler, AnsweringServer], None]) -> None:
        self.hits: list[tuple[str, dict[str, str]]] = []
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                server.hits.append((self.path, dict(self.headers)))
                try:
                    answer(self, server)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the harvester hung up

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
