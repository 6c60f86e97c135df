"""Request dependencies: the hub, a database session, the query engine, the result cache.

The getters of app state are ``async def``: FastAPI runs a plain ``def``
dependency in the threadpool, a thread hop per request for an attribute read.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.orm import Session

from catalogue.hub import Hub
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


def get_session(request: Request) -> Iterator[Session]:
    """One read-only database session per request."""
    hub: Hub = request.app.state.hub
    with hub.sessions() as session:
        yield session
