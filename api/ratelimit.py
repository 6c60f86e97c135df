"""Per-client rate limiting: a token bucket per client address, as ASGI middleware.

Each client (its IP address) may send ``rate_limit_per_minute`` requests a minute, in bursts of
up to as many; the bucket refills continuously. Every answer carries the IETF draft headers
(draft-ietf-httpapi-ratelimit-headers) ``RateLimit-Limit``, ``RateLimit-Remaining`` and
``RateLimit-Reset`` (seconds until the bucket is full again) plus ``RateLimit-Policy``; a request
over the quota gets 429 in the JSON error envelope with ``Retry-After``.

Buckets live in the process: each server process counts on its own (behind a load balancer with
N processes a client gets up to N times the quota). ``/health``, ``/ready`` and ``/metrics`` are never limited,
so monitoring cannot be locked out. ``X-Forwarded-For`` is only believed from the configured trusted proxies.

A small hand-written bucket rather than a library: ``limits`` offers fixed, moving and sliding windows
but no token bucket, and the bucket is twenty lines.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.middleware import error_body
from catalogue.errors import RateLimited
from catalogue.settings import Settings

EXEMPT_PATHS = ("/health", "/ready", "/metrics")
MAX_CLIENTS = 100_000  # buckets kept; beyond, the least recently seen client starts afresh


@dataclass(frozen=True)
class Decision:
    """What the bucket says about one request."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # until the bucket is full again
    retry_after_s: int  # until the next request is allowed (0 when this one was)


class TokenBuckets:
    """One token bucket per client key: ``capacity`` tokens, refilled at ``capacity`` per ``window_s``."""

    def __init__(self, capacity: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = MAX_CLIENTS) -> None:
        self.capacity, self.rate, self.clock, self.max_clients = capacity, capacity / window_s, clock, max_clients
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, when counted)

    def take(self, key: str) -> Decision:
        """Take one token for ``key`` if there is one."""
        now = self.clock()
        tokens, then = self.buckets.pop(key, (float(self.capacity), now))
        tokens = min(float(self.capacity), tokens + (now - then) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self.buckets[key] = (tokens, now)
        while len(self.buckets) > self.max_clients:
            self.buckets.popitem(last=False)
        retry = 0 if allowed else max(1, math.ceil((1.0 - tokens) / self.rate))
        return Decision(allowed, self.capacity, int(tokens), math.ceil((self.capacity - tokens) / self.rate), retry)


def _networks(entries: list[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


class RateLimit:
    """The ASGI middleware: limits every HTTP request but ``/health`` by client address."""

    def __init__(self, app: ASGIApp, per_minute: int, trusted_proxies: list[str],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.buckets = TokenBuckets(per_minute, clock=clock)
        self.trusted = _networks(trusted_proxies)

    def client(self, scope: Scope) -> str:
        """The client's address: the peer, or the address a trusted proxy forwarded for."""
        peer = str((scope.get("client") or ("unknown", 0))[0])
        if not self.trusted or not self._trusted(peer):
            return peer
        forwarded: list[str] = [value.decode("latin-1") for name, value in scope.get("headers", [])
                                if name == b"x-forwarded-for"]
        hops = [hop.strip() for value in forwarded for hop in value.split(",") if hop.strip()]
        # From the right: the first address no trusted proxy added is the client (the left ones it may have forged).
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop
        return peer

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        decision = self.buckets.take(self.client(scope))
        headers = [
            (b"ratelimit-limit", str(decision.limit).encode()),
            (b"ratelimit-remaining", str(decision.remaining).encode()),
            (b"ratelimit-reset", str(decision.reset_s).encode()),
            (b"ratelimit-policy", f"{decision.limit};w=60".encode()),
        ]
        if not decision.allowed:
            error = RateLimited(
                f"Too many requests from this client: at most {decision.limit} a minute. "
                f"Try again in {decision.retry_after_s} s.",
                retry_after_s=decision.retry_after_s, details={"retry_after_s": decision.retry_after_s},
            )
            body = error_body(error.code, error.status, error.message, error.details)
            await send({"type": "http.response.start", "status": error.status, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(decision.retry_after_s).encode()), *headers]})
            await send({"type": "http.response.body", "body": body})
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_rate_limit(app: FastAPI, settings: Settings) -> None:
    """Add the middleware to ``app`` when ``settings.rate_limit_per_minute`` is set (0: off, no headers)."""
    if settings.rate_limit_per_minute:
        app.add_middleware(RateLimit, per_minute=settings.rate_limit_per_minute,
                           trusted_proxies=settings.rate_limit_trusted_proxies)
