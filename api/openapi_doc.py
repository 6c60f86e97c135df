"""The API's OpenAPI document without serving it: for the static site's API documentation page."""

from __future__ import annotations

from typing import Any

from api.app import create_app
from catalogue.hub import Hub


def openapi_document(hub: Hub) -> dict[str, Any]:
    """The OpenAPI document of the app ``create_app`` makes for ``hub`` (nothing is started or served)."""
    app = create_app(hub.settings, hub)
    try:
        return app.openapi()
    finally:
        app.state.query_engine.close()
        app.state.sql_pool.close()
        app.state.loop_reads.close()
