"""Bearer tokens on requests, and private datasets hidden from everyone but their publisher.

``Authorization: Bearer udt_…`` is optional on reads (anonymous reads of public
data need no token) and checked whenever it is sent: a wrong, revoked or
expired token is a 401 saying which, never silently anonymous. A route that
needs a token asks for ``require_scope(...)``: no token is a 401, a valid one
without the scope a 403.

``hide_private_datasets`` runs before every route (api/app.py): on every path
with a ``/datasets/{name}`` a private dataset is a 404, the very answer a
dataset that does not exist gets there (both are answered by it, before any
other check), unless the request carries a token of its publisher with the
``read-private`` scope (or, to write, any valid token of its publisher: the
route then checks the scope it needs). The OGC API and CKAN routes have no
``/datasets/{name}`` path: they take the token through ``get_credential`` and
``private_of`` and filter with ``catalogue.meta.metadata.visible`` themselves,
with the same 404 for a private dataset as for a missing one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from api.middleware import with_vary
from catalogue.errors import TokenInvalid, TokenMissing, Unauthorized, WrongPublisher
from catalogue.hub import Hub
from catalogue.meta.metadata import dataset_not_found
from catalogue.meta.tokens import PREFIX, Credential, verify_token

READ_METHODS = ("GET", "HEAD")
CHALLENGE = 'Bearer realm="urbandata"'


async def get_credential(request: Request) -> Credential | None:
    """The request's token checked (None without one); 401 for a wrong, revoked or expired one."""
    if hasattr(request.state, "credential"):
        return request.state.credential  # type: ignore[no-any-return]
    header = request.headers.get("authorization")
    credential = None
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _with_challenge(TokenInvalid(
                f"The Authorization header must be 'Bearer {PREFIX}…' (an urbandata API token)."))
        hub: Hub = request.app.state.hub
        try:
            credential = await run_in_threadpool(verify_token, hub, value.strip())
        except Unauthorized as exc:  # every 401 names the scheme to use (RFC 9110)
            raise _with_challenge(exc) from None
    request.state.credential = credential
    return credential


def _with_challenge(exc: Exception) -> Exception:
    exc.headers = {"WWW-Authenticate": CHALLENGE}  # type: ignore[attr-defined]
    return exc


def private_of(credential: Credential | None) -> int | None:
    """The publisher whose private datasets ``credential`` may read (None: public datasets only)."""
    if credential is not None and "read-private" in credential.scopes:
        return credential.publisher_id
    return None


async def hide_private_datasets(request: Request, credential: Credential | None = Depends(get_credential)) -> None:
    """On a ``/datasets/{name}`` path, a private dataset its reader may not see is a 404 (app-wide dependency)."""
    route = request.scope.get("route")
    if "/datasets/{name}" not in getattr(route, "path", ""):
        return
    name = request.path_params.get("name")
    if not isinstance(name, str):
        return
    access = await request.app.state.loop_reads.dataset_access(name)
    if access is None:  # answered here too, so a missing and a hidden dataset get the same answer, at the same step
        raise dataset_not_found(name)
    if not access[0]:
        return
    owner = credential is not None and credential.publisher_id == access[1]
    if owner and (request.method not in READ_METHODS or "read-private" in credential.scopes):  # type: ignore[union-attr]
        return
    raise dataset_not_found(name)


def require_scope(scope: str) -> Callable[..., Awaitable[Credential]]:
    """A dependency: the request's credential, which must exist (401) and have ``scope`` (403)."""

    async def dependency(credential: Credential | None = Depends(get_credential)) -> Credential:
        if credential is None:
            raise _with_challenge(TokenMissing(
                f"This needs an API token with the '{scope}' scope: send 'Authorization: Bearer {PREFIX}…'. "
                "A publisher's administrator makes one with 'urbandata token create'."))
        credential.require(scope)
        return credential

    dependency.__name__ = f"require_{scope.replace('-', '_')}"
    return dependency


def require_publisher(credential: Credential, publisher_id: int, publisher: str, what: str) -> None:
    """403 unless ``credential`` speaks for ``publisher`` (the dataset is visible, so saying so reveals nothing)."""
    if credential.publisher_id != publisher_id:
        raise WrongPublisher(
            f"This token belongs to publisher '{credential.publisher}'; {what} belongs to '{publisher}'. "
            f"Use a token of '{publisher}'.",
            details={"token_publisher": credential.publisher, "publisher": publisher})


class PrivateAnswers:
    """ASGI middleware: every answer says it varies with ``Authorization``, and an answer to a request with
    a token is never stored by a shared cache.

    An answer may depend on the token (a listing, a search, a private dataset's rows or its 404), so every
    answer carries ``Vary: Authorization`` (merged with the Vary values already there): a shared cache then
    never serves a token holder the anonymous answer nor the reverse. The routes mark their answers
    ``public``, and RFC 9111 lets a shared cache keep a ``public`` answer even to a request with
    ``Authorization``; so answers to a token become ``private, no-cache`` (the client may still revalidate
    with its ETag). Anonymous answers never hold a private dataset and keep their Cache-Control.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with_token = any(name == b"authorization" for name, _ in scope.get("headers", ()))

        async def send_marked(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if with_token:
                    headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
                    headers.append((b"cache-control", b"private, no-cache"))
                message = {**message, "headers": with_vary(headers, b"Authorization")}
            await send(message)

        await self.app(scope, receive, send_marked)
