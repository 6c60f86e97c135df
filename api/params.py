"""HTTP parameters: declared once, range-checked, and no parameter the route does not know.

* ``int_query`` / ``int_path``: every integer a client sends is bounded to what SQLite and
  DuckDB hold (a signed 64-bit integer), so an oversized number is a 400, never an overflow
  deep in a query.
* ``DATA_PARAMETERS``: the one declaration of the records, facets and export parameters.
  ``records_params``, ``facets_params`` and ``export_params`` are FastAPI dependencies made
  from it; each gives a ``DataParams`` from which the ``RecordsRequest`` (and through it the
  result-cache key) is derived. Adding a parameter is one entry here (and the field of the
  request it feeds), never an edit of every route and cache key.
* ``reject_unknown_params``: a dependency of the whole app; a query parameter the route does
  not declare is a 400 naming it and the known ones, rather than silently ignored.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import fields
from datetime import datetime
from typing import Annotated, Any

from fastapi import Header, Path, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import AfterValidator

from catalogue.errors import InvalidParameter
from catalogue.query.records import RecordsRequest

INT64_MAX = 2**63 - 1  # SQLite INTEGER and DuckDB BIGINT
INT64_MIN = -(2**63)


def int_query(default: Any, *, ge: int = 0, le: int = INT64_MAX, **kwargs: Any) -> Any:
    """A query parameter holding an integer in [ge, le]; ``le`` never above a 64-bit integer."""
    return Query(default, ge=max(ge, INT64_MIN), le=min(le, INT64_MAX), **kwargs)


def int_path(*, ge: int = INT64_MIN, le: int = INT64_MAX, **kwargs: Any) -> Any:
    """A path segment holding an integer in [ge, le], within a 64-bit integer.

    By default only the 64-bit range is checked: a number in range that names nothing is the
    route's 404 (or its own 400, as for version 0), as it was before the range check.
    """
    return Path(ge=max(ge, INT64_MIN), le=min(le, INT64_MAX), **kwargs)


def unicode_text(value: str) -> str:
    """``value`` if it is text UTF-8 can carry; a lone surrogate (``"\\ud800"`` in JSON) is refused.

    Query strings are checked as UTF-8 bytes by the middleware; a JSON body can still spell a
    surrogate with an escape, which no encoder downstream accepts.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"text holds a lone surrogate (U+{ord(value[exc.start]):04X}) at position {exc.start}; "
                         "send valid Unicode text") from None
    return value


UnicodeText = Annotated[str, AfterValidator(unicode_text)]


RECORDS, FACETS, EXPORTS = "records", "facets", "exports"
ROWS = (RECORDS, EXPORTS)  # the routes that answer with rows
ALL = (RECORDS, FACETS, EXPORTS)


def _param(routes: tuple[str, ...], name: str, annotation: Any, default: Any) -> tuple[tuple[str, ...], inspect.Parameter]:
    return routes, inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


# The records, facets and export parameters, each declared once: the routes taking it, its name, type
# and OpenAPI declaration. A new parameter is one line here (and the RecordsRequest field it feeds).
_DECLARED = (
    _param(ROWS, "select", str | None, Query(
        None, description="Fields, expressions and aggregates, e.g. `lot_id, avg(free) as f`.")),
    _param(ALL, "where", str | None, Query(None, description="ODSQL filter, e.g. `lot_id = 'P01' and free > 10`.")),
    _param(ROWS, "group_by", str | None, Query(
        None, description="Group by fields or expressions, e.g. `date_trunc('hour', timestamp) as h`.")),
    _param(ROWS, "order_by", str | None, Query(None, description="Sort, e.g. `free desc, lot_id`.")),
    _param((RECORDS,), "limit", int | None, int_query(
        None, description="Rows per page (default 100, at most the configured maximum).")),
    _param((RECORDS,), "offset", int, int_query(
        0, description="Rows to skip (offset+limit at most 10,000; then use cursor).")),
    _param(ALL, "refine", list[str], Query([], description="Facet filter `field:value` (repeatable).")),
    _param(ALL, "exclude", list[str], Query([], description="Negative facet filter `field:value` (repeatable).")),
    _param((RECORDS,), "cursor", str | None, Query(
        None, description="Keyset cursor from links.next, to page past the offset wall.")),
    _param((FACETS,), "facet", list[str], Query(
        [], description="Field to count values of (repeatable); default: text and boolean fields.")),
    _param((FACETS,), "facet_limit", int | None, int_query(
        None, ge=1, le=1000, alias="limit", description="Values per facet (default 30).")),
    _param((EXPORTS,), "delimiter", str | None, Query(
        None, description="csv: one character between cells; default `,` (`;` for number_style=german).")),
    _param((EXPORTS,), "with_bom", bool | None, Query(
        None, description="csv: start with a UTF-8 byte order mark (helps Excel); default false.")),
    _param((EXPORTS,), "number_style", str | None, Query(
        None, description="csv: `international` (12345.67, default) or `german` (12345,67).")),
    _param(ALL, "version", int | None, int_query(
        None, ge=1, description="Version number to read; default: the current version.")),
    _param(ALL, "as_of", datetime | None, Query(
        None, description="Read the version that was current at this ISO 8601 time.")),
    _param(ALL, "if_none_match", str | None, Header(
        None, description="ETags of copies the client holds: 304 when one is current.")),
)
DATA_PARAMETERS: dict[str, inspect.Parameter] = {p.name: p for _, p in _DECLARED}


class DataParams:
    """The parameters one records, facets or export request was given (undeclared ones: None)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def __getattr__(self, name: str) -> Any:
        if name not in DATA_PARAMETERS:
            raise AttributeError(name)
        return self.values.get(name)

    def request(self, **overrides: Any) -> RecordsRequest:
        """The ``RecordsRequest`` of these parameters: every field of it the route declares, then ``overrides``."""
        given = {f.name: self.values[f.name] for f in fields(RecordsRequest) if f.name in self.values}
        return RecordsRequest(**{**given, **overrides})


def data_params(route: str) -> Callable[..., Awaitable[DataParams]]:
    """A dependency declaring the parameters ``route`` takes and giving them as one ``DataParams``.

    ``async``: a plain function would run in the threadpool, a thread hop per request.
    """
    async def dependency(**values: Any) -> DataParams:
        return DataParams(values)

    declared = [p for routes, p in _DECLARED if route in routes]
    dependency.__signature__ = inspect.Signature(declared)  # type: ignore[attr-defined]
    return dependency


records_params = data_params(RECORDS)
facets_params = data_params(FACETS)
export_params = data_params(EXPORTS)


def _query_names(dependant: Dependant) -> Iterator[str]:
    for param in dependant.query_params:
        yield param.alias
    for sub in dependant.dependencies:
        yield from _query_names(sub)


def known_query_params(route: APIRoute) -> frozenset[str]:
    """The query parameter names ``route`` declares, through its dependencies too (worked out once, kept on it)."""
    known: frozenset[str] | None = getattr(route, "_known_query_params", None)
    if known is None:
        known = frozenset(_query_names(route.dependant))
        route._known_query_params = known  # type: ignore[attr-defined]
    return known


# ``openapi_extra`` of a route that reads its query parameters itself and refuses unknown ones in its own
# error shape (the CKAN actions take any action's parameters; OGC items take a filter per property).
OWN_PARAMETERS = "x-checks-own-parameters"


async def reject_unknown_params(request: Request) -> None:
    """InvalidParameter (400) for a query parameter the route does not declare: naming it and the known ones.

    A mistyped name (``wehre=``) would otherwise be ignored and answer as if no filter had been given.
    Routes left out of the API description (the catch-all for unknown paths) are not checked.
    """
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not route.include_in_schema or OWN_PARAMETERS in (route.openapi_extra or {}):
        return
    known = known_query_params(route)
    unknown = [name for name in dict.fromkeys(request.query_params.keys()) if name not in known]
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise InvalidParameter(
            f"Unknown query parameter '{unknown[0]}' for {request.url.path}; known parameters: {listed}.",
            details={"parameter": unknown[0], "unknown": unknown, "known": sorted(known)},
        )
