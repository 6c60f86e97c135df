"""Rules for every HTTP exchange, checked before any route and applied to every answer.

* Query parameters (and the path) must be valid UTF-8 once percent-decoded: Starlette would
  silently replace a stray ``%FF`` by U+FFFD and answer a different question with 200.
* A query parameter value has at most ``MAX_PARAM_CHARS`` characters (a 400 beyond).
* A ``Range`` header that is not a valid ``bytes`` ranges-specifier is ignored (RFC 9110
  §14.2: a full 200), and an unsatisfiable one is a 416 with ``Content-Range: bytes */size``
  in the JSON error envelope (Starlette answers both with bare text).
* ``HEAD`` wherever ``GET`` is (RFC 9110 §9.3.2): the request is answered as a GET and the body
  dropped; a streamed body stops being computed after its first chunk.
* CORS for public reads (``settings.cors_origins``, default any origin): a GET, HEAD or POST from a
  browser app gets ``Access-Control-Allow-Origin``, and an ``OPTIONS`` preflight is answered here.
  Never with credentials: a request carrying a cookie or an ``Authorization`` header gets no CORS
  headers, and a preflight asking to send ``Authorization`` is refused.
* Security headers: every answer carries ``X-Content-Type-Options: nosniff``, a framing ban
  and a referrer policy; site pages a strict Content-Security-Policy (the templates use no
  inline script or style and load nothing from elsewhere), API answers one that allows nothing.

A pure ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``: that one wraps every
response body in a stream and costs a task per request on the cached records path.
"""

from __future__ import annotations

import json
import re
from urllib.parse import unquote_to_bytes

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from catalogue.settings import Settings

# Far above any real filter; servers refuse longer request lines anyway (uvicorn's h11 reads at most
# 16 KiB of request head). A longer SQL statement goes by POST /sql.
MAX_PARAM_CHARS = 16_384

SITE_CSP = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; "
            "form-action 'self'; frame-ancestors 'none'")
# The SQL console pages (datasets/<name>/sql.html) and DuckDB-WASM's worker (a worker keeps the policy its
# own script was served with) compile WebAssembly: that, and nothing else, is allowed there beyond SITE_CSP
# (the page's own meta policy narrows it further).
SQL_CONSOLE_CSP = SITE_CSP + "; script-src 'self' 'wasm-unsafe-eval'"
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def _compiles_wasm(path: str) -> bool:
    return path.endswith("/sql.html") or "/static/vendor/duckdb/" in path
COMMON_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]

CORS_METHODS = "GET, HEAD, POST"
# Request headers a cross-origin read may send (beyond the CORS-safelisted ones); no Authorization, no Cookie.
CORS_REQUEST_HEADERS = ("accept", "accept-language", "content-language", "content-type", "range", "if-none-match",
                        "if-range", "if-modified-since")
CORS_EXPOSED = (b"ETag, Link, Content-Range, Content-Disposition, X-Dataset-Version, X-Cache, Retry-After, "
                b"RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, RateLimit-Policy")
CORS_MAX_AGE_S = 600


# RFC 9110 §14.1.2: bytes=first-last, first-, or -suffix, comma-separated (with optional spaces).
_RANGE_SPEC = r"[ \t]*(?:\d+-\d*|-\d+)[ \t]*"
_BYTE_RANGES = re.compile(rf"bytes=(?:{_RANGE_SPEC},)*{_RANGE_SPEC}", re.IGNORECASE)


def valid_byte_ranges(value: str) -> bool:
    """Whether ``value`` is a syntactically valid ``bytes`` Range (each first-pos at most its last-pos)."""
    if not _BYTE_RANGES.fullmatch(value.strip()):
        return False
    for spec in value.strip()[len("bytes="):].split(","):
        first, _, last = spec.strip().partition("-")
        if first and last and int(last) < int(first):
            return False
    return True


def query_problem(query_string: bytes) -> tuple[str, str] | None:
    """(parameter, problem) for the first parameter that is not valid UTF-8 or is too long, else None."""
    for pair in query_string.split(b"&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        try:
            name = unquote_to_bytes(raw_name.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return (unquote_to_bytes(raw_name).decode("utf-8", "backslashreplace"),
                    "its name is not valid UTF-8 once percent-decoded")
        try:
            value = unquote_to_bytes(raw_value.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError as exc:
            return (name, f"its value is not valid UTF-8 once percent-decoded (byte {exc.object[exc.start]:#04x} "
                    f"at position {exc.start}); send text as UTF-8 and percent-encode each byte")
        if len(value) > MAX_PARAM_CHARS:
            return (name, f"its value has {len(value)} characters, more than the {MAX_PARAM_CHARS} allowed "
                    "(send a longer SQL statement with POST /sql)")
    return None


def with_vary(headers: list[tuple[bytes, bytes]], *names: bytes) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``names`` added to its Vary: the values already there (from any number of Vary lines)
    kept, in order, once each, in one Vary line (``Vary: *`` stays as it is)."""
    values: list[bytes] = []
    for name, value in headers:
        if name.lower() == b"vary":
            values += [v.strip() for v in value.split(b",") if v.strip()]
    if b"*" in values:
        return headers
    seen = {v.lower() for v in values}
    for name in names:
        if name.lower() not in seen:
            values.append(name)
            seen.add(name.lower())
    return [(k, v) for k, v in headers if k.lower() != b"vary"] + [(b"vary", b", ".join(values))]


def error_body(code: str, status: int, message: str, details: dict[str, object] | None = None) -> bytes:
    """The JSON error envelope as bytes (the same shape as ``api.errors.envelope``)."""
    error: dict[str, object] = {"code": code, "status": status, "message": message}
    if details:
        error["details"] = details
    return json.dumps({"error": error}, ensure_ascii=False, separators=(",", ":")).encode()


class _HeadAnswered(Exception):
    """Raised into a streaming HEAD answer once its headers are sent: the rest of its body is not wanted."""


class HttpRules:
    """The ASGI middleware applying the rules above."""

    def __init__(self, app: ASGIApp, api_prefix: str, cors_origins: tuple[str, ...] = ("*",)) -> None:
        self.app = app
        self.api_prefixes = (api_prefix, "/api/", "/ogc", "/openapi.json", "/health", "/ready", "/metrics")
        self.cors_origins = cors_origins

    def cors_headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """The CORS headers of an answer to ``scope`` (none without an allowed Origin, or with credentials)."""
        headers = dict(scope.get("headers", []))
        origin = headers.get(b"origin")
        if origin is None or b"authorization" in headers or b"cookie" in headers:
            return []
        if "*" in self.cors_origins:
            return [(b"access-control-allow-origin", b"*"), (b"access-control-expose-headers", CORS_EXPOSED)]
        if origin.decode("latin-1") in self.cors_origins:
            return [(b"access-control-allow-origin", origin), (b"vary", b"Origin"),
                    (b"access-control-expose-headers", CORS_EXPOSED)]
        return []

    async def preflight(self, scope: Scope, send: Send, extra: list[tuple[bytes, bytes]]) -> None:
        """Answer a CORS preflight: 204 with what a cross-origin read may do, or 403 saying what is refused."""
        headers = dict(scope.get("headers", []))
        method = headers.get(b"access-control-request-method", b"").decode("latin-1").upper()
        asked = [h.strip().lower() for h in headers.get(b"access-control-request-headers", b"").decode("latin-1")
                 .split(",") if h.strip()]
        allowed = self.cors_headers(scope)
        refused = [h for h in asked if h not in CORS_REQUEST_HEADERS]
        if not allowed or method not in CORS_METHODS.split(", ") or refused:
            why = ("the origin is not among the configured CORS origins" if not allowed else
                   f"the method {method} is not one of {CORS_METHODS}" if method not in CORS_METHODS.split(", ") else
                   f"the header(s) {', '.join(refused)} may not be sent cross-origin (only public reads are)")
            body = error_body("cors-refused", 403, f"Cross-origin request refused: {why}.")
            await _send_json(send, 403, body, extra)
            return
        await send({"type": "http.response.start", "status": 204, "headers": [
            *allowed, (b"access-control-allow-methods", CORS_METHODS.encode()),
            (b"access-control-allow-headers", ", ".join(CORS_REQUEST_HEADERS).encode()),
            (b"access-control-max-age", str(CORS_MAX_AGE_S).encode()), *extra]})
        await send({"type": "http.response.body", "body": b""})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_api = scope["path"].startswith(self.api_prefixes)
        policy = API_CSP if is_api else SQL_CONSOLE_CSP if _compiles_wasm(scope["path"]) else SITE_CSP
        extra = [*COMMON_HEADERS, (b"content-security-policy", policy.encode()),
                 *self.cors_headers(scope)]
        if scope["method"] == "OPTIONS" and any(n == b"access-control-request-method" for n, _ in scope["headers"]):
            await self.preflight(scope, send, [h for h in extra if not h[0].startswith(b"access-control")])
            return
        problem = query_problem(scope.get("query_string", b""))
        if problem is None and not _utf8(unquote_to_bytes(scope.get("raw_path") or b"")):
            problem = ("path", "it is not valid UTF-8 once percent-decoded")
        if problem is not None:
            name, why = problem
            body = error_body("invalid-parameter", 400, f"Invalid value for {name}: {why}.", {"parameter": name})
            await _send_json(send, 400, body, extra)
            return
        scope = _without_invalid_range(scope)
        head = scope["method"] == "HEAD"
        if head:
            scope = {**scope, "method": "GET"}
        answered_416 = False
        body_sent = False

        async def send_with_rules(message: Message) -> None:
            nonlocal answered_416, body_sent
            if answered_416:
                return  # the JSON 416 replaced the body Starlette meant to send
            if head and message["type"] == "http.response.body":
                if body_sent:
                    raise _HeadAnswered
                body_sent = True
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if message["status"] == 416:
                    answered_416 = True
                    size = dict(headers).get(b"content-range", b"bytes */?").decode("latin-1")
                    body = error_body("range-not-satisfiable", 416,
                                      f"The requested range lies outside the file ({size}); ask for bytes "
                                      "between 0 and the size less one, or send no Range for the whole file.")
                    await _send_json(send, 416, body, [*extra, (b"content-range", size.encode("latin-1"))])
                    return
                present = {name.lower() for name, _ in headers}
                headers += [h for h in extra if h[0] not in present]
                varies = [value for name, value in extra if name == b"vary"]
                message = {**message, "headers": with_vary(headers, *varies) if varies else headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_rules)
        except _HeadAnswered:
            pass
        except BaseExceptionGroup as group:  # raised inside a task group of a streaming response
            rest = group.subgroup(lambda exc: not isinstance(exc, _HeadAnswered))
            if rest is not None:
                raise rest from None


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _without_invalid_range(scope: Scope) -> Scope:
    """``scope`` without a Range header that is not a valid bytes range (RFC 9110: such a Range is ignored)."""
    headers = scope.get("headers", [])
    for name, value in headers:
        if name == b"range" and not valid_byte_ranges(value.decode("latin-1")):
            return {**scope, "headers": [(n, v) for n, v in headers if n != b"range"]}
    return scope


async def _send_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def install_http_rules(app: FastAPI, settings: Settings) -> None:
    """Add the middleware to ``app``."""
    app.add_middleware(HttpRules, api_prefix=settings.api_prefix, cors_origins=tuple(settings.cors_origins))
