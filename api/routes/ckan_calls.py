"""The machinery of the CKAN actions: their parameters, their context, their registry and CKAN's envelopes.

An action is a function ``(Context, Args) -> result`` registered by name with :func:`action`;
:mod:`api.routes.ckan` calls it and wraps the result or the error the way CKAN does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from catalogue.errors import InvalidParameter, NotFound, UrbandataError
from catalogue.hub import Hub
from catalogue.meta import ckan_mapping as mapping
from catalogue.meta import ckan_search as search
from catalogue.meta.models import Dataset
from catalogue.query.engine import QueryEngine
from catalogue.query.exports import export_format, format_names

JSON_PARAMETERS = {"filters", "facet.field", "fields", "q", "organizations", "groups"}


class Args:
    """One action's parameters: typed getters, and every name read so leftovers can be refused."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.read: set[str] = set()

    def get(self, name: str, default: Any = None) -> Any:
        self.read.add(name)
        return self.values.get(name, default)

    def text(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.get(name)
        if value is None or value == "":
            if required:
                raise InvalidParameter(f"Missing value: '{name}' is required.", details={"parameter": name})
            return default
        if not isinstance(value, str):
            raise InvalidParameter(f"{name} takes a text.", details={"parameter": name})
        return value

    def integer(self, name: str, default: int, *, lowest: int = 0, highest: int = 2**63 - 1) -> int:
        value = self.get(name)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise InvalidParameter(f"{name} takes a whole number; got '{str(value)[:40]}'.",
                                   details={"parameter": name}) from None
        if not lowest <= number <= highest:
            raise InvalidParameter(f"{name} must be between {lowest} and {highest}; got {number}.",
                                   details={"parameter": name})
        return number

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes", "on"):
            return True
        if str(value).lower() in ("false", "0", "no", "off"):
            return False
        raise InvalidParameter(f"{name} takes true or false; got '{str(value)[:40]}'.", details={"parameter": name})

    def listed(self, name: str) -> list[str] | None:
        """A list given as a JSON list, a JSON string, or comma-separated text."""
        value = self.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidParameter(f"{name} takes a list of names.", details={"parameter": name})
        return value

    def refuse_unread(self, action: str) -> None:
        unread = sorted(set(self.values) - self.read)
        if unread:
            raise InvalidParameter(f"{action} takes no parameter '{unread[0]}'; it takes "
                                   f"{', '.join(sorted(self.read)) or 'none'}.", details={"parameter": unread[0]})


@dataclass
class Context:
    """What an action works with."""

    hub: Hub
    engine: QueryEngine
    request: Request
    links: mapping.Links
    reader: int | None = None  # the publisher whose private datasets the caller's token may read

    def session(self) -> Session:
        return self.hub.sessions()


Action = Callable[[Context, Args], Any]
ACTIONS: dict[str, Action] = {}
SYNC: set[str] = set()  # actions that run in a thread (database or engine work)
SEARCH_ERRORS = {"package_search": {"q", "fq", "sort", "ext_bbox"}}


def action(name: str, *, threaded: bool = True) -> Callable[[Action], Action]:
    def register(func: Action) -> Action:
        ACTIONS[name] = func
        if threaded:
            SYNC.add(name)
        return func
    return register


def help_url(ctx: Context, name: str) -> str:
    return f"{ctx.links.public_url}/api/3/action/help_show?name={name}"


def ckan_error(help_url: str, status: int, kind: str, message: str, **fields: Any) -> JSONResponse:
    """CKAN's error envelope."""
    error = {"__type": kind, "message": message, **fields}
    return JSONResponse({"help": help_url, "success": False, "error": error}, status_code=status)


def error_response(name: str, help_url: str, exc: UrbandataError) -> JSONResponse:
    parameter = str(exc.details.get("parameter", "")) if exc.details else ""
    if isinstance(exc, NotFound):
        return ckan_error(help_url, 404, "Not Found Error", f"Not found: {exc.message}")
    if exc.status == 400 and parameter in SEARCH_ERRORS.get(name, ()):
        return ckan_error(help_url, 400, "Search Query Error", f"Search Query is invalid: {exc.message}")
    if exc.status in (400, 413, 422):
        return ckan_error(help_url, 409, "Validation Error", exc.message, **{parameter or "data": [exc.message]})
    kinds = {401: "Authorization Error", 403: "Authorization Error", 429: "Rate Limited",
             503: "Service Unavailable"}
    response = ckan_error(help_url, exc.status, kinds.get(exc.status, "Internal Server Error"), exc.message)
    retry_after = getattr(exc, "retry_after_s", None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


async def arguments(request: Request) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        if key in JSON_PARAMETERS and value[:1] in ("[", "{", '"'):
            try:
                value = json.loads(value)
            except ValueError:
                raise InvalidParameter(f"{key} is not valid JSON.", details={"parameter": key}) from None
        values[key] = value
    if request.method == "POST":
        body = await request.body()
        if body.strip():
            try:
                posted = json.loads(body)
            except ValueError:
                raise InvalidParameter("The request body must be a JSON object of the action's parameters.",
                                       details={"parameter": "body"}) from None
            if not isinstance(posted, dict):
                raise InvalidParameter("The request body must be a JSON object of the action's parameters.",
                                       details={"parameter": "body"})
            values.update(posted)
    return values


def links_of(request: Request) -> mapping.Links:
    hub: Hub = request.app.state.hub
    settings = hub.settings
    formats = tuple((f, export_format(hub.registry, f).media_type) for f in format_names(hub.registry))
    return mapping.Links(settings.public_url.rstrip("/"), settings.api_prefix, formats)



def visible_dataset(ctx: Context, session: Session, name: str) -> Dataset:
    """The dataset ``name`` if the caller may see it (a private one only with a read-private token of its
    publisher); else the same NotFound as for a dataset that does not exist."""
    dataset = session.scalar(search.select_packages(reader=ctx.reader).where(Dataset.name == name))
    if dataset is None:
        raise NotFound(f"There is no dataset '{name}'; package_list lists them.")
    return dataset
