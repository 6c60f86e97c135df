"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from sqlalchemy import func, select

from api.errors import install_error_handlers
from api.routes import catalog, data
from catalogue.hub import Hub, open_hub
from catalogue.models import Dataset
from catalogue.query import QueryEngine
from catalogue.settings import Settings


def create_app(settings: Settings, hub: Hub | None = None) -> FastAPI:
    """Build the app for ``settings``: API under ``settings.api_prefix``, the built site at ``/``."""
    hub = hub or open_hub(settings)
    engine = QueryEngine(hub)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.close()

    app = FastAPI(
        title="urbandata API",
        version="0.1.0",
        description="Validated, versioned open data of the city and its companies. "
        "Every version is immutable; pass `version=N` to pin one.",
        docs_url=None,  # FastAPI's docs page loads assets from a CDN; no request may leave the machine
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.hub = hub
    app.state.query_engine = engine
    install_error_handlers(app, settings.site_dir, settings.api_prefix)
    app.include_router(catalog.router, prefix=settings.api_prefix, tags=["catalogue"])
    app.include_router(data.router, prefix=settings.api_prefix, tags=["data"])

    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness and a count of datasets (touches the database)."""
        with hub.sessions() as session:
            count = session.scalar(select(func.count()).select_from(Dataset))
        return {"status": "ok", "datasets": count}

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    def unknown_api_route(rest: str) -> None:
        """Unknown API paths answer in the JSON envelope, not with the site's HTML page."""
        raise StarletteHTTPException(404)

    settings.site_dir.mkdir(parents=True, exist_ok=True)
    app.mount("/", StaticFiles(directory=settings.site_dir, html=True, check_dir=False), name="site")
    return app
