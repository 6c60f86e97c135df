"""How the app is served: uvicorn with bounds on idle, slow and surplus connections.

uvicorn closes a keep-alive connection that stays idle after a response, but
a connection that never sends a request, or sends half a request head (or
body) and stops, stays open for ever: 500 of them were still open after
60 s, and 1,100 stopped a server whose limit was 1,024 open files. So:

- a request must arrive whole (head and body) within ``read_timeout_s`` of
  the connection opening or of the previous response ending; trickling bytes
  does not extend the deadline. Then the connection is closed;
- beyond ``max_connections`` open connections (derived from the open-files
  limit, so sockets never take the descriptors the query engine needs for
  Parquet files and the database), a new connection gets a JSON 503 with
  Retry-After and ``Connection: close`` at its first request, and a short
  deadline to send it;
- keep-alive connections idle for ``KEEP_ALIVE_S`` after a response are closed
  (uvicorn's own timer), and a shutdown waits at most ``GRACEFUL_SHUTDOWN_S``
  for downloads still streaming.
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from catalogue.errors import ServerBusy

READ_TIMEOUT_S = 10.0
SURPLUS_READ_TIMEOUT_S = 1.0
KEEP_ALIVE_S = 5
GRACEFUL_SHUTDOWN_S = 10
MAX_CONNECTIONS = 1000
# Requests whose head or body is still arriving: h11 is waiting for more of the client's bytes.
READING = (h11.IDLE, h11.SEND_BODY)


def max_connections_for(open_files: int) -> int:
    """Connections to accept with ``open_files`` descriptors: a quarter (at least 64) stays for files."""
    return max(16, min(MAX_CONNECTIONS, open_files - max(64, open_files // 4)))


def raise_open_files_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit (as far as allowed); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass  # not allowed here: keep the soft limit and size the connection limit by it
    return soft


async def _busy(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The answer to every request on a connection beyond the limit."""
    error = ServerBusy("The server has too many open connections; try again in a moment.", retry_after_s=1)
    body = json.dumps({"error": error.to_dict()}).encode()
    await send({"type": "http.response.start", "status": error.status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(error.retry_after_s).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# Set in a request's scope by a route whose answer never ends by itself (a stream of live values): an
# asyncio.Event the route's stream watches, set when the server shuts down so the stream ends at once.
ENDLESS_STREAM = "urbandata.endless_stream"


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for reading each request and a cap on open connections."""

    read_timeout_s = READ_TIMEOUT_S
    max_connections = MAX_CONNECTIONS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.app = _busy
            self._arm(SURPLUS_READ_TIMEOUT_S)
        else:
            self._arm(self.read_timeout_s)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state not in READING:
            self._disarm()  # the request is read whole; the deadline starts again after its response

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state in READING:
            self._arm(self.read_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        cycle = self.cycle
        closing = cycle.scope.get(ENDLESS_STREAM) if cycle is not None and not cycle.response_complete else None
        if isinstance(closing, asyncio.Event):
            # An event stream would hold the shutdown for GRACEFUL_SHUTDOWN_S and then be cancelled: it ends
            # now, completing its response (its client reconnects with Last-Event-ID).
            closing.set()
        super().shutdown()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._read_deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _expire(self) -> None:
        self._read_deadline = None
        if not self.transport.is_closing() and self.conn.their_state in READING:
            self.transport.close()  # a route waiting for the body sees the client disconnect


def make_server(app: Any, host: str = "127.0.0.1", port: int = 8000, *, read_timeout_s: float = READ_TIMEOUT_S,
                max_connections: int | None = None, log_level: str = "warning") -> uvicorn.Server:
    """A uvicorn server for ``app`` with the connection bounds above (``max_connections``: from the files limit)."""
    limit = max_connections or max_connections_for(raise_open_files_limit())
    protocol = type("GuardedH11", (GuardedH11Protocol,), {"read_timeout_s": read_timeout_s, "max_connections": limit})
    config = uvicorn.Config(
        app, host=host, port=port, http=protocol, log_level=log_level, lifespan="on",
        timeout_keep_alive=KEEP_ALIVE_S, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    return uvicorn.Server(config)


def run_server(server: uvicorn.Server, sock: socket.socket | None = None) -> None:
    """Serve until stopped (Ctrl-C or SIGTERM); ``sock``: an already bound socket to serve on."""
    try:
        server.run(sockets=[sock] if sock is not None else None)
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it already handled by shutting down cleanly
