"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from starlette.routing import Match, Mount
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import PrivateAnswers, hide_private_datasets
from api.errors import install_error_handlers
from api.logs import configure_logging
from api.metrics import Metrics, ObserveRequests, RecordRoute
from api.middleware import install_http_rules
from api.openapi_schema import install_openapi
from api.params import reject_unknown_params
from api.ratelimit import install_rate_limit
from api.routes import catalog, data, live, sql
from api.routes import manage, push, tokens
from api.routes import packages
from api.routes import dcat
from api.routes import ckan, ogc
from api.routes import harvest
from api.routes import ops
from api.site_files import SiteFiles
from catalogue.ingest.gc import Collector
from catalogue.hub import Hub, open_hub
from catalogue.meta.loop_reads import LoopReads
from catalogue.pg_notices import start_commit_listener
from catalogue.query.cached import KeptResults
from catalogue.query.engine import QueryEngine
from catalogue.query.result_cache import ResultCache
from catalogue.settings import Settings
from catalogue.sql.pool import SqlPool


def create_app(settings: Settings, hub: Hub | None = None) -> FastAPI:
    """Build the app for ``settings``: API under ``settings.api_prefix``, the built site at ``/``."""
    hub = hub or open_hub(settings)
    engine = QueryEngine(hub)
    sql_pool = SqlPool(settings)  # worker processes start on the first SQL query
    reads = LoopReads(hub.engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_format)  # a server starts here (uvicorn's loggers are set up by now)
        collector = Collector(hub).start()  # collects leftovers at start-up, then every hour
        listener = start_commit_listener(hub.engine)  # other replicas' and workers' commits (PostgreSQL)
        yield
        if listener is not None:
            listener.stop()
        collector.stop()
        engine.close()
        sql_pool.close()
        reads.close()

    app = FastAPI(
        title="urbandata API",
        version="0.1.0",
        description="Validated, versioned open data of the city and its companies. "
        "Every version is immutable; pass `version=N` to pin one.",
        docs_url=None,  # FastAPI's docs page loads assets from a CDN; no request may leave the machine
        redoc_url=None,
        lifespan=lifespan,
        # An unknown query parameter is a 400 on every route; a private dataset is a 404 to all but its publisher.
        dependencies=[Depends(reject_unknown_params), Depends(hide_private_datasets)],
    )
    app.state.hub = hub
    app.state.query_engine = engine
    app.state.result_cache = ResultCache(settings.result_cache_mb * 1024 * 1024)
    app.state.kept_results = KeptResults(reads, app.state.result_cache)
    app.state.sql_pool = sql_pool
    app.state.loop_reads = reads
    app.state.metrics = Metrics(hub, sql_pool)
    app.add_middleware(RecordRoute)  # innermost: sees which route answered
    install_error_handlers(app, settings.site_dir, settings.api_prefix)
    install_rate_limit(app, settings)  # inside the HTTP rules: a 429 carries the security headers too
    install_http_rules(app, settings)
    app.add_middleware(PrivateAnswers)  # an answer to a token is no shared cache's to keep
    app.add_middleware(ObserveRequests, metrics=app.state.metrics)  # outermost: request id, metrics, request log
    install_openapi(app)  # the error envelope, no 422, format enums
    app.include_router(dcat.dataset_router, prefix=settings.api_prefix)  # before catalog's /datasets/{name}
    app.include_router(dcat.router)  # DCAT-AP.de: /catalog.ttl|.jsonld|.rdf
    app.include_router(catalog.router, prefix=settings.api_prefix, tags=["catalogue"])
    app.include_router(data.router, prefix=settings.api_prefix, tags=["data"])
    app.include_router(sql.router, prefix=settings.api_prefix, tags=["sql"])
    app.include_router(push.router, prefix=settings.api_prefix, tags=["push"])
    app.include_router(harvest.router, prefix=settings.api_prefix, tags=["harvest"])
    app.include_router(tokens.router, prefix=settings.api_prefix, tags=["tokens"])
    app.include_router(manage.router, prefix=settings.api_prefix, tags=["push"])
    app.include_router(live.router, prefix=settings.api_prefix, tags=["live"])
    app.include_router(packages.router, prefix=settings.api_prefix, tags=["packages"])  # Frictionless Data Packages
    app.include_router(ckan.router, tags=["ckan"])  # CKAN's Action API at /api/3/action, its DataStore dump
    app.include_router(ogc.router, tags=["ogc"])  # OGC API Features at /ogc
    app.include_router(ops.router)  # /ready, /metrics

    @app.get("/health", tags=["service"])
    async def health() -> dict[str, Any]:
        """Liveness and a count of datasets (touches the database, never waits for the request pool)."""
        return {"status": "ok", "datasets": await reads.dataset_count()}

    @app.api_route("/api/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                   include_in_schema=False)
    def unknown_api_route(request: Request, rest: str) -> None:
        """Unknown API paths answer in the JSON envelope (405 where only the method is wrong)."""
        others = [r for r in app.router.routes if getattr(r, "name", "") != "unknown_api_route" and not isinstance(r, Mount)]
        allowed = sorted({method for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE") for route in others
                          if route.matches({**request.scope, "method": method})[0] == Match.FULL})
        if allowed:
            raise StarletteHTTPException(405, headers={"Allow": ", ".join(allowed)})
        raise StarletteHTTPException(404)

    settings.site_dir.mkdir(parents=True, exist_ok=True)
    app.mount("/", SiteFiles(directory=settings.site_dir, html=True, check_dir=False), name="site")
    return app

