"""Request dependencies: the hub, a database session, the query engine."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.orm import Session

from catalogue.hub import Hub
from catalogue.query import QueryEngine


def get_hub(request: Request) -> Hub:
    """The hub this app was created with."""
    return request.app.state.hub  # type: ignore[no-any-return]


def get_engine(request: Request) -> QueryEngine:
    """The process-wide query engine."""
    return request.app.state.query_engine  # type: ignore[no-any-return]


def get_session(request: Request) -> Iterator[Session]:
    """One read-only database session per request."""
    hub: Hub = request.app.state.hub
    with hub.sessions() as session:
        yield session
