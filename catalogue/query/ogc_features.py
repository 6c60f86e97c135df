"""OGC API Features (Part 1 Core, GeoJSON) over a version: items requests as records requests, rows as features.

A collection is a dataset with a geometry field; its first geometry field is each feature's geometry
and the other fields its properties. A feature's id is its primary key (several key fields joined
with ``~``), or its position in the version when the dataset has none. ``bbox`` becomes the records
request's box filter (``in_bbox()`` without its text), ``datetime`` a comparison on the first date or date-time field, a property
filter (``?district=Altstadt``) a refine, and a CQL2 text ``filter`` (:mod:`catalogue.query.cql2`) an
ODSQL ``where``; paging is the records planner's, so past the offset wall
the ``next`` link carries a keyset cursor.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb

from catalogue.errors import InvalidParameter, NotFound
from catalogue.query import by_space
from catalogue.query.cql2 import odsql_where
from catalogue.query.engine import VersionRef
from catalogue.query.planning import Plan, RecordsRequest
from catalogue.schema.model import TableSchema
from catalogue.schema.sql_text import ident, json_value, literal
from catalogue.store.storage import Storage

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
ID_SEPARATOR = "~"
OPEN = ("", "..")
INSTANT = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9:.]+([Zz]|[+-][0-9]{2}:?[0-9]{2})?)?$")


@dataclass(frozen=True)
class ItemsQuery:
    """The filters of one items request (limit and paging stay with the caller)."""

    bbox: tuple[float, float, float, float] | None = None  # west, south, east, north (CRS84)
    datetime: str | None = None
    properties: tuple[tuple[str, str], ...] = ()
    filter: str | None = None  # CQL2 text (Part 3)


def geometry_field(schema: TableSchema) -> str | None:
    """The field whose values are the features' geometries (None: the dataset is no collection)."""
    return schema.geometry_fields[0] if schema.geometry_fields else None


def time_field(schema: TableSchema) -> str | None:
    """The field ``datetime`` filters on: the first date-time field, else the first date field."""
    for kind in ("datetime", "date"):
        for f in schema.fields:
            if f.type == kind:
                return f.name
    return None


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``bbox=minlon,minlat,maxlon,maxlat`` in CRS84 (a 3D box takes its horizontal part)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) == 6:
        values = [values[0], values[1], values[3], values[4]]
    if len(values) != 4:
        raise InvalidParameter(f"bbox takes four numbers minlon,minlat,maxlon,maxlat (CRS84); got '{text[:80]}'.",
                               details={"parameter": "bbox"})
    west, south, east, north = values
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= north <= 90):
        raise InvalidParameter("bbox: longitudes within -180..180, latitudes within -90..90, south not above north.",
                               details={"parameter": "bbox"})
    return west, south, east, north


def _instant(text: str, kind: str) -> str:
    if not INSTANT.match(text):
        raise InvalidParameter(f"datetime takes an RFC 3339 date or date-time, or an interval of them "
                               f"(start/end, '..' for open); got '{text[:60]}'.", details={"parameter": "datetime"})
    if kind == "date":
        return f"date'{text[:10]}'"
    return f"timestamp'{text.replace('t', 'T').replace('z', 'Z')}'"


def _datetime_filter(schema: TableSchema, text: str) -> str:
    name = time_field(schema)
    if name is None:
        raise InvalidParameter("datetime: this collection has no date or date-time field to filter on.",
                               details={"parameter": "datetime"})
    kind = next(f.type for f in schema.fields if f.name == name)
    if "/" not in text:
        return f"`{name}` = {_instant(text, kind)}"
    start, _, end = text.partition("/")
    if start in OPEN and end in OPEN:
        return "true"
    parts = ([f"`{name}` >= {_instant(start, kind)}"] if start not in OPEN else []) + (
        [f"`{name}` <= {_instant(end, kind)}"] if end not in OPEN else [])
    return " and ".join(parts)


def items_request(schema: TableSchema, query: ItemsQuery, *, limit: int, offset: int,
                  cursor: str | None = None) -> RecordsRequest:
    """The records request answering one items page."""
    where = []
    geometry = geometry_field(schema)
    box = (geometry, *query.bbox) if query.bbox is not None and geometry is not None else None
    if query.datetime:
        where.append(_datetime_filter(schema, query.datetime))
    if query.filter is not None:
        where.append(odsql_where(schema, query.filter))
    known = {f.name: f for f in schema.fields}
    for name, _ in query.properties:
        if name not in known or known[name].is_geometry:
            raise InvalidParameter(
                f"Unknown query parameter '{name}': neither an items parameter (limit, offset, bbox, datetime) nor "
                f"a property of this collection ({', '.join(n for n, f in known.items() if not f.is_geometry)}).",
                details={"parameter": name})
    return RecordsRequest(where=" and ".join(f"({w})" for w in where) or None, limit=limit, offset=offset,
                          refine=[f"{n}:{v}" for n, v in query.properties], cursor=cursor, bbox=box)


def items_plan(cur: duckdb.DuckDBPyConnection, storage: Storage, ref: VersionRef, query: ItemsQuery,
               plan: Plan) -> Plan:
    """``plan`` (of :func:`items_request`), moved onto the parts' by-space copies when its bbox is small
    (:mod:`catalogue.query.by_space`: the same page, read from fewer rows)."""
    geometry = geometry_field(ref.schema)
    if query.bbox is None or geometry is None or not plan.keyed:
        return plan
    try:
        found = by_space.copies(cur, storage, ref.keys, geometry)
    except duckdb.Error:
        return plan  # a copy that cannot be written: the parts answer alike (the next request tries again)
    if not by_space.small(query.bbox, [extent for _, extent in found]):
        return plan
    return by_space.space_plan(plan, dict(zip(ref.uris, (uri for uri, _ in found))), query.bbox, geometry) or plan


JSON_TYPES = {"string": ("string", None), "integer": ("integer", None), "number": ("number", None),
              "boolean": ("boolean", None), "date": ("string", "date"), "datetime": ("string", "date-time"),
              "time": ("string", "time"), "year": ("integer", None), "geopoint": (None, "geometry-point"),
              "geojson": (None, "geometry-any")}


def queryables(schema: TableSchema, url: str, title: str) -> dict[str, object]:
    """The collection's queryables (Part 3) as a JSON Schema: every field, the geometry one by its format."""
    properties: dict[str, object] = {}
    for f in schema.fields:
        kind, fmt = JSON_TYPES.get(f.type, ("string", None))
        entry: dict[str, object] = {"title": f.title or f.name}
        if kind is not None:
            entry["type"] = kind
        if fmt is not None:
            entry["format"] = fmt
        if f.description:
            entry["description"] = f.description
        properties[f.name] = entry
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": url, "type": "object",
            "title": title, "properties": properties, "additionalProperties": False}


def feature_id(schema: TableSchema, row: dict[str, Any], position: int) -> str | int:
    """A feature's id: its key values (joined with ``~``), or its 1-based position without a key."""
    key = list(schema.primary_key)
    if not key:
        return position
    return ID_SEPARATOR.join(str(row.get(k)) for k in key)


def id_request(schema: TableSchema, identifier: str) -> RecordsRequest:
    """The records request finding the one feature ``identifier`` names."""
    key = list(schema.primary_key)
    if not key:
        if not identifier.isdigit() or int(identifier) < 1:
            raise NotFound(f"Feature '{identifier}' does not exist: features of this collection are numbered from 1.")
        return RecordsRequest(limit=1, offset=int(identifier) - 1)
    values = identifier.split(ID_SEPARATOR, len(key) - 1)
    if len(values) != len(key):
        raise NotFound(f"Feature '{identifier}' does not exist: ids are the values of {', '.join(key)}"
                       f"{' joined with ' + ID_SEPARATOR if len(key) > 1 else ''}.")
    return RecordsRequest(limit=1, refine=[f"{k}:{v}" for k, v in zip(key, values)])


def features(schema: TableSchema, rows_json: str, first_position: int) -> list[dict[str, Any]]:
    """Records (JSON text from the records planner) as GeoJSON features."""
    geometry = geometry_field(schema)
    out = []
    for i, row in enumerate(json.loads(rows_json)):
        shape = row.pop(geometry, None) if geometry else None
        out.append({"type": "Feature", "id": feature_id(schema, row, first_position + i), "geometry": shape,
                    "properties": row})
    return out


# Key types whose text in DuckDB (CAST AS VARCHAR) is the text feature_id makes of their JSON value.
SQL_ID_TYPES = frozenset({"integer", "string"})


def feature_sql(schema: TableSchema) -> Callable[[list[tuple[str, str]]], str] | None:
    """For run_records' ``render``: each row as its GeoJSON feature's text, made in DuckDB (the page is
    then spliced into the answer, never parsed in Python: at 1,000 features a page, parsing and
    re-serialising took more time than the query). None where :func:`features` must do it in Python:
    no key (ids are positions), a key of another type, or no property beside the geometry.
    """
    geometry = geometry_field(schema)
    types = {f.name: f.type for f in schema.fields}
    key = list(schema.primary_key)
    if geometry is None or not key or any(types.get(k) not in SQL_ID_TYPES for k in key):
        return None

    def render(columns: list[tuple[str, str]]) -> str:
        kinds = dict(columns)
        props = [(n, k) for n, k in columns if n != geometry]
        if not props or any(k not in kinds for k in key):
            return "NULL"  # never asked for: an items page selects every field
        shape = json_value(f"q.{ident(geometry)}", kinds[geometry]) if geometry in kinds else "NULL::JSON"
        ids = ", ".join(f"CAST(q.{ident(k)} AS VARCHAR)" for k in key)
        identifier = f"concat_ws({literal(ID_SEPARATOR)}, {ids})" if len(key) > 1 else ids
        struct = ", ".join(f"{literal(n)}: {json_value(f'q.{ident(n)}', k)}" for n, k in props)
        return (f"to_json({{'type': 'Feature', 'id': {identifier}, 'geometry': {shape}, "
                f"'properties': {{{struct}}}}})::VARCHAR")

    return render


def extent(spatial: dict[str, Any], start: str | None, end: str | None) -> dict[str, Any]:
    """A collection's extent: the dataset's bbox (CRS84) and its temporal coverage."""
    found: dict[str, Any] = {}
    if "bbox" in spatial:
        found["spatial"] = {"bbox": [list(spatial["bbox"])], "crs": CRS84}
    if start or end:
        found["temporal"] = {"interval": [[start, end]], "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"}
    return found
