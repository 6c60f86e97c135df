"""The OpenAPI description as the API behaves: the error envelope it sends, never a 422 it does not,
and the export formats as an enum of the registered ones.

FastAPI documents a 422 ``HTTPValidationError`` on every route with parameters; this API answers
invalid input with 400 in its one envelope (api/errors.py); the CKAN Action API answers in CKAN's
(api/openapi_ckan.py describes it). The document is refined once, when first asked for.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

from api.openapi_ckan import HUB_ENVELOPE, document_ckan
from api.routes.ckan_calls import ACTIONS
from catalogue.query.exports import format_names

ENVELOPE = HUB_ENVELOPE
ERRORS = {
    "400": ("Invalid parameter or request.", "invalid-parameter",
            "Invalid value for limit: Input should be less than or equal to 1000."),
    "404": ("Nothing there: an unknown dataset, version or path.", "dataset-not-found",
            "Dataset 'no-such-dataset' not found."),
    "413": ("The request body is larger than allowed.", "payload-too-large",
            "The request body is larger than the maximum allowed."),
    "429": ("Too many requests from this client; Retry-After says when to try again.", "too-many-requests",
            "Too many requests; try again in 2 seconds."),
    "503": ("Busy: the database, query workers or a deadline; Retry-After says when to try again.", "database-busy",
            "The catalogue database is busy with other requests; try again in a moment."),
}
ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["error"], "title": ENVELOPE,
    "description": "Every error, in one envelope (the CKAN-compatible routes use CKAN's).",
    "properties": {"error": {"type": "object", "required": ["code", "status", "message"], "properties": {
        "code": {"type": "string", "description": "A stable kebab-case code, e.g. dataset-not-found."},
        "status": {"type": "integer", "description": "The HTTP status."},
        "message": {"type": "string", "description": "What went wrong, where, and how to fix it."},
        "details": {"type": "object", "description": "Machine-readable specifics (the parameter, limits, ...)."},
    }}},
}


def _object(example: dict[str, Any], **properties: dict[str, Any]) -> dict[str, Any]:
    """A 200 response: an object with the example's keys (each typed where given) and the example."""
    props = {key: properties.get(key, {}) for key in example}
    return {"description": "OK", "content": {"application/json": {
        "schema": {"type": "object", "required": list(example), "properties": props}, "example": example}}}


_LINKS = {"type": "object", "description": "`next` (and the Link header's `prev`): the following page's URL."}
_COUNT = {"type": "integer", "minimum": 0}
# The JSON answers of the main read routes (path after the API prefix): their shape and a real example.
SUCCESS = {
    "/datasets": _object({"total_count": 6, "limit": 1, "offset": 0, "results": [
        {"name": "car-parks", "title": "Parkhäuser", "title_en": "Car parks", "themes": ["TRAN"],
         "current_version": {"number": 1, "row_count": 6}}]},
        total_count=_COUNT, limit=_COUNT, offset=_COUNT, results={"type": "array", "items": {"type": "object"}}),
    "/datasets/{name}/records": _object({
        "dataset": "car-parks", "version": 1, "total_count": 6, "limit": 1, "offset": 0,
        "results": [{"lot_id": "P01", "capacity": 420}],
        "links": {"next": "https://hub.example/api/v1/datasets/car-parks/records?select=lot_id%2Ccapacity&version=1"
                          "&cursor=eyJ2IjoxLCJrIjowfQ.JAxs0hscSjfBBu4o4Os2kg&limit=1"}},
        dataset={"type": "string"}, version={"type": "integer"}, total_count=_COUNT, limit=_COUNT, offset=_COUNT,
        results={"type": "array", "items": {"type": "object"}}, links=_LINKS),
    "/datasets/{name}/facets": _object({"dataset": "car-parks", "version": 1, "facets": [
        {"name": "operator", "facets": [{"value": "Stadtwerke Musterstadt GmbH", "count": 5},
                                        {"value": "Parkhausgesellschaft Königstraße mbH", "count": 1}]}]},
        dataset={"type": "string"}, version={"type": "integer"}, facets={"type": "array", "items": {"type": "object"}}),
    "/datasets/{name}/versions": _object({"dataset": "car-parks", "total_count": 1, "results": [
        {"number": 1, "created_at": "2026-12-04T23:39:59.792928+00:00", "row_count": 6, "bytes": 3732,
         "sha256": "959982cd9b21bdf6fb05202abcd83b5366516606124a7b873b9b68de476beadb"}]},
        dataset={"type": "string"}, total_count=_COUNT, results={"type": "array", "items": {"type": "object"}}),
}


def _error(status: str) -> dict[str, Any]:
    description, code, message = ERRORS[status]
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{ENVELOPE}"},
        "example": {"error": {"code": code, "status": int(status), "message": message}}}}}


def _framework_422(response: dict[str, Any] | None) -> bool:
    """Whether ``response`` is FastAPI's automatic 422 (``HTTPValidationError``), which this API never sends."""
    schema = ((response or {}).get("content", {}).get("application/json", {}).get("schema", {}))
    return str(schema.get("$ref", "")).endswith("/HTTPValidationError")


def refine(document: dict[str, Any], formats: list[str], api_prefix: str = "/api/v1",
           ckan_actions: list[str] | None = None) -> dict[str, Any]:
    """``document`` with the error envelope on every operation, no 422, format enums, 200 examples; the CKAN
    routes with CKAN's envelopes and ``ckan_actions`` (api/openapi_ckan.py)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas[ENVELOPE] = ENVELOPE_SCHEMA
    document_ckan(document, ckan_actions or [])
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            success = SUCCESS.get(path.removeprefix(api_prefix)) if path.startswith(api_prefix) else None
            if success is not None and not responses.get("200", {}).get("content", {}).get(
                    "application/json", {}).get("schema", {}).get("properties"):
                responses["200"] = success
            if _framework_422(responses.get("422")):  # a route that does send a 422 declares its own
                responses.pop("422")
            wanted = ["400", "429", "503"] + (["404"] if "{" in path else []) + \
                (["413"] if "requestBody" in operation else [])
            for status in wanted:
                responses.setdefault(status, _error(status))
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "fmt" and path.endswith("/exports/{fmt}"):
                    parameter["schema"] = {"type": "string", "enum": formats, "title": "Export format"}
                elif parameter["name"] == "format" and path.endswith("/diff"):
                    parameter["schema"] = {"type": "string", "enum": ["json", "csv"], "default": "json"}
    if "HTTPValidationError" not in json.dumps(document.get("paths", {})):
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
    return document


def install_openapi(app: FastAPI) -> None:
    """Refine ``app``'s OpenAPI document (built once, on the first request for it)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            hub = app.state.hub
            app.openapi_schema = refine(build(), format_names(hub.registry), hub.settings.api_prefix, sorted(ACTIONS))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
