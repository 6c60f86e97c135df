"""OGC API Features, Part 1 Core with GeoJSON, under /ogc: every dataset with a geometry is a collection.

Claims only what holds (tested with OWSLib): Core and GeoJSON; from Part 3 queryables, property
filters, and CQL2 text filters in the parts ODSQL can say (basic CQL2, LIKE/IN/BETWEEN,
S_INTERSECTS). The items route reads its own query parameters: ``limit``, ``offset``, ``cursor`` (from ``next`` links), ``bbox``, ``bbox-crs`` (CRS84
only), ``datetime``, ``filter`` (CQL2 text; ``filter-lang``, ``filter-crs``), ``f``, and one equality
filter per property; anything else is a 400.

Private datasets are collections only to a ``read-private`` token of their publisher (``Authorization:
Bearer udt_…``, api/auth.py); to anyone else one is absent: the 404 of a collection that does not exist.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import bindparam, select
from sqlalchemy.orm import selectinload

from api.auth import get_credential, private_of
from api.params import OWN_PARAMETERS
from catalogue.errors import InvalidParameter, NotFound
from catalogue.hub import Hub
from catalogue.meta.metadata import VERSION_FACTS, visible
from catalogue.meta.models import Dataset, Version
from catalogue.meta.tokens import Credential
from catalogue.query.cursors import settings_secret
from catalogue.query.engine import QueryEngine, VersionRef
from catalogue.query import ogc_features as ogc
from catalogue.query.records import plan_records, run_records
from catalogue.schema.model import TableSchema

router = APIRouter()
GEOJSON = "application/geo+json"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    # Part 3, as far as catalogue.query.cql2 maps CQL2 text onto ODSQL (tests/api/test_ogc_api.py holds each).
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
]
ITEMS_PARAMETERS = {"limit", "offset", "cursor", "bbox", "bbox-crs", "datetime", "f", "filter", "filter-lang",
                    "filter-crs"}
DEFAULT_LIMIT = 10


def _root(hub: Hub) -> str:
    return hub.settings.public_url.rstrip("/") + "/ogc"


def _json(body: dict[str, Any], media_type: str = "application/json") -> Response:
    return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), media_type=media_type)


def _check_f(request: Request, allowed: tuple[str, ...]) -> None:
    unknown = [k for k in request.query_params if k != "f"]
    if unknown:
        raise InvalidParameter(f"Unknown query parameter '{unknown[0]}' for {request.url.path}; known: f.",
                               details={"parameter": unknown[0]})
    if request.query_params.get("f", allowed[0]) not in allowed:
        raise InvalidParameter(f"f must be one of {', '.join(allowed)}.", details={"parameter": "f"})


@router.get("/ogc", response_model=None, openapi_extra={OWN_PARAMETERS: True}, summary="OGC API landing page")
@router.get("/ogc/", response_model=None, include_in_schema=False)
def landing(request: Request) -> Response:
    """The OGC API Features landing page: links to the API description, conformance and collections."""
    _check_f(request, ("json",))
    hub: Hub = request.app.state.hub
    root = _root(hub)
    return _json({
        "title": "urbandata – OGC API Features",
        "description": "Every dataset of the hub that has a geometry, as a feature collection (current version).",
        "links": [
            {"href": root, "rel": "self", "type": "application/json", "title": "This document"},
            {"href": hub.settings.public_url.rstrip("/") + "/openapi.json", "rel": "service-desc",
             "type": "application/vnd.oai.openapi+json;version=3.0", "title": "The API description"},
            {"href": f"{root}/conformance", "rel": "conformance", "type": "application/json",
             "title": "Conformance classes"},
            {"href": f"{root}/collections", "rel": "data", "type": "application/json", "title": "Collections"},
        ],
    })


@router.get("/ogc/conformance", response_model=None, openapi_extra={OWN_PARAMETERS: True},
            summary="OGC API conformance classes")
def conformance(request: Request) -> Response:
    """The conformance classes this API implements."""
    _check_f(request, ("json",))
    return _json({"conformsTo": CONFORMANCE})


def _collection(root: str, dataset: Dataset) -> dict[str, Any]:
    items = f"{root}/collections/{dataset.name}/items"
    return {
        "id": dataset.name, "title": dataset.title, "description": dataset.description,
        "keywords": list(dataset.keywords), "itemType": "feature", "crs": [ogc.CRS84],
        "extent": ogc.extent(dict(dataset.spatial), dataset.temporal_start.isoformat() if dataset.temporal_start
                             else None, dataset.temporal_end.isoformat() if dataset.temporal_end else None),
        "links": [
            {"href": f"{root}/collections/{dataset.name}", "rel": "self", "type": "application/json",
             "title": dataset.title},
            {"href": items, "rel": "items", "type": GEOJSON, "title": f"{dataset.title} (GeoJSON)"},
            {"href": f"{root}/collections/{dataset.name}/queryables", "rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
             "type": "application/schema+json", "title": "Queryables"},
            {"href": dataset.license, "rel": "license", "type": "text/html", "title": "Licence"},
        ],
    }


async def reader_of(credential: Credential | None = Depends(get_credential)) -> int | None:
    """The publisher whose private datasets the request may read (None: public datasets only)."""
    return private_of(credential)


def _collections(hub: Hub, reader: int | None, name: str | None = None) -> list[Dataset]:
    """The collections ``reader`` may see (all, or the one called ``name``: a 404 when it is none of them)."""
    query = (select(Dataset).where(visible(reader), Dataset.current_version_id.is_not(None)).order_by(Dataset.name)
             .options(selectinload(Dataset.current_version)))
    if name is not None:
        query = query.where(Dataset.name == name)
    with hub.sessions() as session:
        found = [d for d in session.scalars(query) if d.schema.geometry_fields]
        session.expunge_all()
    if name is not None and not found:
        raise _no_collection(name)
    return found


def _no_collection(name: str) -> NotFound:
    return NotFound(f"There is no collection '{name}': collections are the datasets with a geometry field, "
                    "listed at /ogc/collections.")


# The items routes' collection and its current version in one indexed query, built once: the dataset's
# visibility and the facts a query needs of the version (catalogue.meta.metadata.VERSION_FACTS). Two queries
# (the check, then the version) took a quarter of an uncached bbox request's time in 8 concurrent ones.
_COLLECTION = select(Dataset.private, Dataset.publisher_id, *VERSION_FACTS).join(
    Version, Dataset.current_version_id == Version.id).where(Dataset.name == bindparam("name"))


def _collection_version(hub: Hub, reader: int | None, name: str) -> VersionRef:
    """The current version of collection ``name``, if ``reader`` may see it (else the 404 of :func:`_collections`).

    One indexed query, read as plain columns: the items routes need no ORM objects of the dataset and its
    version (with them, an uncached page of 1,000 features took 4 % more instructions). The reader's
    visibility is tested here, as meta.metadata.visible says.
    """
    with hub.engine.connect() as connection:
        found = connection.execute(_COLLECTION, {"name": name}).first()
    if found is None or (found.private and found.publisher_id != reader):
        raise _no_collection(name)
    ref = VersionRef.of(hub, name, found)
    if not ref.schema.geometry_fields:
        raise _no_collection(name)
    return ref


@router.get("/ogc/collections", response_model=None, openapi_extra={OWN_PARAMETERS: True},
            summary="OGC API feature collections")
def collections(request: Request, reader: int | None = Depends(reader_of)) -> Response:
    """Every dataset with a geometry field, as a feature collection."""
    _check_f(request, ("json",))
    hub: Hub = request.app.state.hub
    root = _root(hub)
    return _json({
        "links": [{"href": f"{root}/collections", "rel": "self", "type": "application/json", "title": "Collections"}],
        "collections": [_collection(root, d) for d in _collections(hub, reader)],
    })


@router.get("/ogc/collections/{name}", response_model=None, openapi_extra={OWN_PARAMETERS: True},
            summary="One OGC API feature collection")
def collection(request: Request, name: str, reader: int | None = Depends(reader_of)) -> Response:
    """One dataset with a geometry field, as a feature collection."""
    _check_f(request, ("json",))
    hub: Hub = request.app.state.hub
    return _json(_collection(_root(hub), _collections(hub, reader, name)[0]))


@router.get("/ogc/collections/{name}/queryables", response_model=None, openapi_extra={OWN_PARAMETERS: True},
            summary="The queryables of an OGC API collection")
def queryables(request: Request, name: str, reader: int | None = Depends(reader_of)) -> Response:
    """The properties a filter may name, as a JSON Schema (Part 3)."""
    _check_f(request, ("json",))
    hub: Hub = request.app.state.hub
    dataset = _collections(hub, reader, name)[0]
    url = f"{_root(hub)}/collections/{name}/queryables"
    return _json(ogc.queryables(dataset.current_version.schema if dataset.current_version else dataset.schema, url,
                                dataset.title), "application/schema+json")


def _items_query(request: Request) -> tuple[ogc.ItemsQuery, int | None, int, str | None]:
    params = request.query_params
    for key in params:
        if len(params.getlist(key)) > 1:
            raise InvalidParameter(f"{key} is given more than once.", details={"parameter": key})
    if params.get("f", "json") not in ("json", "geojson"):
        raise InvalidParameter("f must be json or geojson.", details={"parameter": "f"})
    for crs in ("bbox-crs", "filter-crs"):
        if params.get(crs, ogc.CRS84) != ogc.CRS84:
            raise InvalidParameter(f"{crs}: only {ogc.CRS84} is supported.", details={"parameter": crs})
    if params.get("filter-lang", "cql2-text") != "cql2-text":
        raise InvalidParameter("filter-lang: only cql2-text is supported.", details={"parameter": "filter-lang"})
    numbers = {}
    for key in ("limit", "offset"):
        text = params.get(key)
        if text is not None:
            if not text.isdigit() or len(text) > 18 or (key == "limit" and int(text) < 1):
                raise InvalidParameter(f"{key} takes a whole number{' from 1' if key == 'limit' else ''}; got "
                                       f"'{text[:20]}'.", details={"parameter": key})
            numbers[key] = int(text)
    query = ogc.ItemsQuery(
        bbox=ogc.parse_bbox(params["bbox"]) if "bbox" in params else None, datetime=params.get("datetime"),
        properties=tuple((k, v) for k, v in params.items() if k not in ITEMS_PARAMETERS), filter=params.get("filter"))
    return query, numbers.get("limit"), numbers.get("offset", 0), params.get("cursor")


@router.get("/ogc/collections/{name}/items", response_model=None, openapi_extra={OWN_PARAMETERS: True},
            summary="Features of an OGC API collection")
async def items(request: Request, name: str, reader: int | None = Depends(reader_of)) -> Response:
    """A page of features (GeoJSON): limit, offset, bbox, datetime and property filters; links.next pages on."""
    hub: Hub = request.app.state.hub
    engine: QueryEngine = request.app.state.query_engine
    query, asked, offset, cursor = _items_query(request)
    settings = hub.settings
    # Part 1 (/req/core/fc-limit-response-1): a limit above the maximum is served as the maximum, not refused.
    limit = min(asked or DEFAULT_LIMIT, settings.max_returned_rows)
    if cursor is None and offset + limit > settings.max_offset_rows:
        raise InvalidParameter(f"offset+limit may be at most {settings.max_offset_rows}; follow the next links, "
                               "which carry a cursor past that.", details={"parameter": "offset"})

    def compute() -> tuple[int, dict[str, Any]]:
        ref = _collection_version(hub, reader, name)
        if cursor is not None and not ref.schema.primary_key:
            raise InvalidParameter("cursor: this collection has no key, so its features are numbered by position; "
                                   "page it with offset.", details={"parameter": "cursor"})
        secret = settings_secret(settings)
        request_ = ogc.items_request(ref.schema, query, limit=limit, offset=offset, cursor=cursor)
        plan = plan_records(request_, ref.schema, list(ref.uris), ref.number, row_count=ref.row_count,
                            cursor_secret=secret)
        render = ogc.feature_sql(ref.schema)
        found = engine.run(lambda cur: run_records(cur, ogc.items_plan(cur, hub.storage, ref, query, plan),
                                                   version=ref.number, limit=limit,
                                                   time_limit_ms=settings.query_time_limit_ms, cursor_secret=secret,
                                                   **({"render": render} if render else {})))
        # The features' JSON text as DuckDB made it, or (see feature_sql) made here from the records.
        found["features_json"] = found["results_json"] if render else json.dumps(
            ogc.features(ref.schema, found["results_json"], offset + 1), ensure_ascii=False, separators=(",", ":"))
        # Without a key a feature's id is its position, which a cursor page does not know: such a collection
        # pages by offset alone.
        found["keyed"] = bool(ref.schema.primary_key)
        return ref.number, found

    number, found = await run_in_threadpool(compute)
    root = _root(hub)
    here = f"{root}/collections/{name}/items"
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in ("offset", "cursor", "limit")]
    place = [("cursor", cursor)] if cursor is not None else [("offset", offset)]
    links = [{"href": f"{here}?{urlencode(kept + [('limit', limit), *place])}", "rel": "self",
              "type": GEOJSON, "title": "This page"},
             {"href": f"{root}/collections/{name}", "rel": "collection", "type": "application/json",
              "title": "The collection"}]
    following = None
    if found["next_cursor"] is not None and found["keyed"]:
        following = kept + [("limit", limit), ("cursor", found["next_cursor"])]
    elif cursor is None and offset + limit < min(found["total_count"], settings.max_offset_rows):
        # The last page before the offset wall is shortened to end at it (a page past it is refused).
        following = kept + [("limit", min(limit, settings.max_offset_rows - offset - limit)), ("offset", offset + limit)]
    if following is not None:
        links.append({"href": f"{here}?{urlencode(following)}", "rel": "next", "type": GEOJSON, "title": "Next page"})
    rest = {"numberMatched": found["total_count"], "numberReturned": found["returned"], "timeStamp": _now(),
            "links": links}
    body = ('{"type":"FeatureCollection","features":' + found["features_json"] + ","
            + json.dumps(rest, ensure_ascii=False, separators=(",", ":"))[1:])
    response = Response(body, media_type=GEOJSON)
    response.headers["X-Dataset-Version"] = str(number)
    return response


@router.get("/ogc/collections/{name}/items/{identifier}", response_model=None,
            openapi_extra={OWN_PARAMETERS: True}, summary="One feature of an OGC API collection")
async def item(request: Request, name: str, identifier: str, reader: int | None = Depends(reader_of)) -> Response:
    """One feature by id (its primary key values, joined with ~ when there are several)."""
    _check_f(request, ("json", "geojson"))
    hub: Hub = request.app.state.hub
    engine: QueryEngine = request.app.state.query_engine

    def compute() -> tuple[TableSchema, list[dict[str, Any]]]:
        ref = _collection_version(hub, reader, name)
        found_request = ogc.id_request(ref.schema, identifier)
        plan = plan_records(found_request, ref.schema, list(ref.uris), ref.number, row_count=ref.row_count)
        found = engine.run(lambda cur: run_records(cur, plan, version=ref.number, limit=1,
                                                   time_limit_ms=hub.settings.query_time_limit_ms))
        return ref.schema, ogc.features(ref.schema, found["results_json"], found_request.offset + 1)

    _, found = await run_in_threadpool(compute)
    if not found:
        raise NotFound(f"Collection '{name}' has no feature '{identifier}'.")
    root = _root(hub)
    feature = {**found[0], "links": [
        {"href": f"{root}/collections/{name}/items/{quote(identifier, safe='~')}", "rel": "self", "type": GEOJSON, "title": "This feature"},
        {"href": f"{root}/collections/{name}", "rel": "collection", "type": "application/json", "title": "The collection"},
    ]}
    return _json(feature, GEOJSON)


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
