"""One error handler: every error, ours or the framework's, in one JSON envelope.

``{"error": {"code": "dataset-not-found", "status": 404, "message": "..."}}``.
Unknown paths outside the API get the site's HTML 404 page when it is built.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from sqlalchemy.exc import DataError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.middleware import API_CSP, COMMON_HEADERS
from catalogue.errors import DatabaseBusy, UrbandataError

log = logging.getLogger("urbandata.api")

API_SECURITY_POLICY = (b"content-security-policy", API_CSP.encode())
HTTP_CODES = {
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    413: "payload-too-large",
    416: "range-not-satisfiable",
    429: "too-many-requests",
}


def envelope(code: str, status: int, message: str, details: dict | None = None) -> JSONResponse:  # type: ignore[type-arg]
    """The JSON error response."""
    body: dict = {"code": code, "status": status, "message": message}  # type: ignore[type-arg]
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status)


def _printable(value: object) -> str:
    """The start of a refused input, as text JSON can carry (a lone surrogate would fail the encoder)."""
    return str(value)[:200].encode("utf-8", "backslashreplace").decode("utf-8")


def install_error_handlers(app: FastAPI, site_dir: Path, api_prefix: str) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(UrbandataError)
    async def _ours(request: Request, exc: UrbandataError) -> Response:
        if exc.status >= 500:
            log.error("%s: %s", exc.code, exc.message)
        response = envelope(exc.code, exc.status, exc.message, exc.details)
        retry_after = getattr(exc, "retry_after_s", None)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        response.headers.update(getattr(exc, "headers", None) or {})  # WWW-Authenticate on a 401
        return response

    @app.exception_handler(PoolTimeout)
    async def _pool_exhausted(request: Request, exc: PoolTimeout) -> Response:
        # Every pooled database connection stayed taken for the pool's (short) timeout: a moment's overload.
        return await _ours(request, DatabaseBusy(
            "The catalogue database is busy with other requests; try again in a moment.", retry_after_s=1))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()))
            problems.append({"parameter": where, "problem": err.get("msg", "invalid"), "input": _printable(err.get("input"))})
        first = problems[0] if problems else {"parameter": "?", "problem": "invalid"}
        return envelope(
            "invalid-parameter", 400,
            f"Invalid value for {first['parameter']}: {first['problem']}.",
            {"problems": problems},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        page = site_dir / ("en" if request.url.path.startswith("/en/") else "") / "404.html"
        if exc.status_code == 404 and not request.url.path.startswith((api_prefix, "/api/")) and page.is_file():
            return FileResponse(page, status_code=404, media_type="text/html")
        code = HTTP_CODES.get(exc.status_code, "http-error")
        message = str(exc.detail) if exc.detail else "HTTP error"
        if exc.status_code == 404:
            message = f"Nothing at {request.url.path}. The API starts at {api_prefix}/datasets; its description is at /openapi.json."
        if exc.status_code == 405 and exc.headers and "Allow" in exc.headers:
            message = f"{request.method} is not allowed on {request.url.path}; allowed: {exc.headers['Allow']}."
        response = envelope(code, exc.status_code, message)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(DataError)
    async def _out_of_range(request: Request, exc: DataError) -> Response:
        # A value the catalogue's database cannot hold (a number past its INTEGER columns...): the routes check
        # the ones they know (catalogue.meta.metadata.storable); this catches the class, logged to be fixed.
        log.warning("catalogue database refused a value on %s: %s", request.url.path, str(exc.orig).splitlines()[0])
        return envelope("invalid-parameter", 400, "A value in the request is out of the range the catalogue stores "
                        "(numbers up to 2147483647); check the numbers in the path and query.")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        response = envelope("internal-error", 500, "An unexpected error occurred; it has been logged.")
        # Starlette sends this answer from outside every middleware: the security headers are added here.
        response.headers.update({k.decode(): v.decode() for k, v in (*COMMON_HEADERS, API_SECURITY_POLICY)})
        return response
