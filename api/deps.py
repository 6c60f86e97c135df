"""Request dependencies: the hub, a database session, the query engine, the kept results.

The getters of app state are ``async def``: FastAPI runs a plain ``def``
dependency in the threadpool, a thread hop per request for an attribute read.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from catalogue.hub import Hub
from catalogue.query.cached import KeptResults
from catalogue.query.engine import QueryEngine
from catalogue.query.result_cache import ResultCache


async def get_hub(request: Request) -> Hub:
    """The hub this app was created with."""
    return request.app.state.hub  # type: ignore[no-any-return]


async def get_engine(request: Request) -> QueryEngine:
    """The process-wide query engine."""
    return request.app.state.query_engine  # type: ignore[no-any-return]


async def get_result_cache(request: Request) -> ResultCache:
    """The process-wide cache of records and facets results."""
    return request.app.state.result_cache  # type: ignore[no-any-return]


async def get_kept_results(request: Request) -> KeptResults:
    """The result cache with its single flight and its version lookup."""
    return request.app.state.kept_results  # type: ignore[no-any-return]


def _open_session(request: Request) -> Iterator[Session]:
    hub: Hub = request.app.state.hub
    with hub.sessions() as session:
        yield session


async def get_session(session: Session = Depends(_open_session, scope="function")) -> Session:
    """One read-only database session, closed as soon as the route function returns.

    FastAPI closes a ``yield`` dependency after the response is sent unless it is
    function-scoped: a client reading slowly (or not at all) would hold a pooled
    connection for as long as it liked, and 16 unread downloads exhausted the pool.
    Declared here once, so every ``Depends(get_session)`` gets this scope.
    """
    return session
