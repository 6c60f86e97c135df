"""The CKAN Action API in the OpenAPI document: CKAN's envelope as the response model, the actions as an
enum, a real example of each answer, and which errors come in CKAN's shape and which in the hub's.

The action routes (api/routes/ckan.py) answer in CKAN's envelope ``{help, success, result}`` and fail in
CKAN's ``{help, success: false, error: {__type, message}}`` (400 unknown action or bad search query, 404
not found, 409 validation error, 403, 429 and 503 from the action itself). The server's own guards,
which act before any route (a body over the limit: 413, the rate limit: 429, a busy server: 503), answer
in the hub's envelope; those statuses document both shapes.
"""

from __future__ import annotations

from typing import Any

TAG = "CKAN Action API"
TAG_DESCRIPTION = ("CKAN's Action API (version 3) over the same catalogue, for ckanapi and CKAN harvesters: "
                   "`/api/3/action/{name}` (also `/api/action/{name}`), parameters as a query string or a JSON "
                   "object in a POST body; `help_show?name=<action>` documents each action. Answers and errors "
                   "come in CKAN's envelope.")
CKAN_ANSWER = "CkanAnswer"
CKAN_ERROR = "CkanError"
HUB_ENVELOPE = "ErrorEnvelope"  # api.openapi_schema.ENVELOPE (that module imports this one)
ACTION_PATHS = ("/api/3/action/{name}", "/api/action/{name}")
DUMP_PATH = "/datastore/dump/{resource_id}"

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object", "title": CKAN_ANSWER, "required": ["help", "success", "result"],
    "description": "CKAN's envelope of every answer of the Action API.",
    "properties": {
        "help": {"type": "string", "format": "uri", "description": "help_show of the action called."},
        "success": {"type": "boolean", "enum": [True]},
        "result": {"description": "The action's result: an object, a list or a text (help_show)."},
    },
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "title": CKAN_ERROR, "required": ["help", "success", "error"],
    "description": "CKAN's envelope of an error of the Action API.",
    "properties": {
        "help": {"type": "string", "format": "uri"},
        "success": {"type": "boolean", "enum": [False]},
        "error": {"type": "object", "required": ["__type", "message"], "additionalProperties": True, "properties": {
            "__type": {"type": "string", "enum": [
                "Bad Request", "Search Query Error", "Not Found Error", "Validation Error", "Authorization Error",
                "Rate Limited", "Service Unavailable", "Internal Server Error"]},
            "message": {"type": "string", "description": "What went wrong, and how to fix it."},
        }, "description": "A Validation Error also names the parameter (or ``data``) with its messages."},
    },
}

HELP = "https://hub.example/api/3/action/help_show?name="
# Real answers of the demo catalogue (Musterstadt), shortened where a list is long.
EXAMPLES: dict[str, dict[str, Any]] = {
    "status_show": {"summary": "status_show", "value": {"help": HELP + "status_show", "success": True, "result": {
        "ckan_version": "2.10.4", "site_url": "https://hub.example", "site_title": "urbandata",
        "site_description": "Validated, versioned open data of the city and its companies.",
        "locale_default": "de", "extensions": ["datastore"], "api_version": 3}}},
    "package_list": {"summary": "package_list?limit=3", "value": {"help": HELP + "package_list", "success": True,
                                                          "result": ["car-parks", "city-districts", "egovernment-services"]}},
    "datastore_search": {"summary": "datastore_search?resource_id=car-parks&limit=1&fields=lot_id,capacity",
                         "value": {"help": HELP + "datastore_search", "success": True, "result": {
                             "resource_id": "car-parks@1", "fields": [{"id": "lot_id", "type": "text"},
                                                                      {"id": "capacity", "type": "int"}],
                             "records": [{"lot_id": "P01", "capacity": 420}], "records_format": "objects",
                             "limit": 1, "offset": 0, "total": 6, "total_was_estimated": False, "_links": {"start": "/api/3/action/datastore_search?resource_id=car-parks@1",
                                                    "next": "/api/3/action/datastore_search?resource_id=car-parks@1"
                                                            "&offset=1"}}}},
}
ERRORS: dict[str, tuple[str, str, str]] = {  # status -> (description, CKAN's __type, message)
    "400": ("An unknown action, or a search query the engine refuses.", "Bad Request",
            "Bad request - Action name not known: package_shwo"),
    "403": ("A token that may not do this.", "Authorization Error", "This token may not read private datasets."),
    "404": ("No such dataset, resource or action documentation.", "Not Found Error",
            "Not found: There is no dataset 'no-such-dataset'; package_list lists them."),
    "409": ("Invalid or missing parameters (CKAN's Validation Error), naming the parameter.", "Validation Error",
            "Missing value: 'id' is required."),
}
BOTH_SHAPES = {  # statuses the server's guards send in the hub's envelope, and an action in CKAN's
    "400": "An unknown action or a refused search query (CKAN's envelope); a query string that is not UTF-8 "
           "or a value over 16,384 characters (the server's check, in the hub's envelope).",
    "413": "The request body is larger than allowed (the server's limit, in the hub's envelope).",
    "429": "Too many requests: the rate limit (hub's envelope) or a busy SQL sandbox (CKAN's); see Retry-After.",
    "503": "Busy: the server (hub's envelope) or the catalogue database or a deadline (CKAN's); see Retry-After.",
}
DUMP_FORMATS = ["csv", "tsv", "json", "xml"]
DUMP_TYPES = {"text/csv": "lot_id,capacity\nP01,420\n", "text/tab-separated-values": "lot_id\tcapacity\nP01\t420\n",
              "application/json": '[{"lot_id":"P01","capacity":420}]', "application/xml": "<data>…</data>"}


def _ckan_error(status: str) -> dict[str, Any]:
    description, kind, message = ERRORS[status]
    error: dict[str, Any] = {"__type": kind, "message": message}
    if status == "409":
        error["id"] = [message]
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{CKAN_ERROR}"},
        "example": {"help": HELP + "package_show", "success": False, "error": error}}}}


def _either(status: str) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": {"oneOf": [{"$ref": f"#/components/schemas/{HUB_ENVELOPE}"},
                                                    {"$ref": f"#/components/schemas/{CKAN_ERROR}"}]}}
    if status in ERRORS:
        content["example"] = _ckan_error(status)["content"]["application/json"]["example"]
    return {"description": BOTH_SHAPES[status], "content": {"application/json": content}}


def _errors(statuses: tuple[str, ...]) -> dict[str, Any]:
    return {s: _either(s) if s in BOTH_SHAPES else _ckan_error(s) for s in statuses}


def is_ckan(operation: dict[str, Any]) -> bool:
    """Whether ``operation`` belongs to the CKAN Action API (its errors are CKAN's, not the hub's envelope)."""
    return TAG in operation.get("tags", ())


def document_ckan(document: dict[str, Any], actions: list[str]) -> dict[str, Any]:
    """``document`` with the CKAN routes described: tag, envelopes, action enum, examples, request body.

    The routes carry the tag; the app includes their router under its own "ckan" tag too, which is
    dropped here so that each operation is listed once.
    """
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas[CKAN_ANSWER], schemas[CKAN_ERROR] = ANSWER_SCHEMA, ERROR_SCHEMA
    tags = document.setdefault("tags", [])
    if not any(t.get("name") == TAG for t in tags):
        tags.append({"name": TAG, "description": TAG_DESCRIPTION,
                     "externalDocs": {"url": "https://docs.ckan.org/en/2.10/api/", "description": "CKAN's API"}})
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if not is_ckan(operation):
                continue
            operation["tags"] = [TAG]
            responses = operation.setdefault("responses", {})
            if path in ACTION_PATHS:
                for parameter in operation.get("parameters", []):
                    if parameter["name"] == "name" and parameter["in"] == "path":
                        parameter["schema"] = {"type": "string", "enum": actions, "title": "Action"}
                        parameter["description"] = "The action; help_show?name=<action> documents it."
                responses["200"] = {"description": "The action's result in CKAN's envelope.", "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{CKAN_ANSWER}"},
                                         "examples": EXAMPLES}}}
                if method == "post":
                    operation["requestBody"] = {"required": False, "description": "The action's parameters.",
                                                "content": {"application/json": {"schema": {
                                                    "type": "object", "additionalProperties": True},
                                                    "example": {"id": "car-parks"}}}}
                responses.update(_errors(("400", "403", "404", "409", "429", "503")
                                         + (("413",) if method == "post" else ())))
            elif path == DUMP_PATH:
                for parameter in operation.get("parameters", []):
                    if parameter["name"] == "format":
                        parameter["schema"] = {"type": "string", "enum": DUMP_FORMATS, "default": "csv"}
                responses["200"] = {"description": "Every row of the resource's table (a download).", "content": {
                    media: {"schema": {"type": "string"}, "example": example} for media, example in DUMP_TYPES.items()}}
                responses.update(_errors(("400", "403", "404", "409", "429", "503")))
    return document
