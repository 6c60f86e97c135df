"""DCAT-AP.de 3.0: the catalogue (/catalog.ttl|.jsonld|.rdf, paged with Hydra) and each dataset
(/datasets/{name}.ttl|.jsonld|.rdf, and by content negotiation on /datasets/{name})."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.orm import Session

from api.deps import get_session
from api.params import int_query
from api.routes.data import held_tags
from catalogue.errors import NotFound
from catalogue.hub import Hub
from catalogue.meta.dcat import EXTENSIONS, MEDIA_TYPES, catalog_page, dataset_graph, serialise
from catalogue.meta.metadata import get_dataset, page_datasets
from catalogue.query.exports import format_names

router = APIRouter()  # at the app's root: /catalog.ttl
dataset_router = APIRouter()  # under the API prefix: /datasets/{name}.ttl

Extension = Literal["ttl", "jsonld", "rdf"]
RDF_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"description": "The DCAT-AP.de document.", "content": {
    "text/turtle": {}, "application/ld+json": {}, "application/rdf+xml": {}}}}


def _answer(request: Request, body: bytes, syntax: str) -> Response:
    """The document with an ETag (a hash of it): a harvester holding the same bytes gets a bodiless 304."""
    etag = f'"{hashlib.blake2b(body, digest_size=16).hexdigest()}"'
    headers = {"Cache-Control": "public, no-cache", "Vary": "Accept", "ETag": etag}
    if etag in held_tags(request.headers.get("if-none-match")):
        return Response(status_code=304, headers=headers)
    media_type = MEDIA_TYPES[syntax] + ("; charset=utf-8" if syntax != "json-ld" else "")
    return Response(body, media_type=media_type, headers=headers)


def rdf_syntax(accept: str) -> str | None:
    """The RDF syntax ``accept`` prefers over JSON (turtle, json-ld, xml), or None for the JSON answer."""
    ranked: list[tuple[float, int, str]] = []
    for order, item in enumerate(accept.split(",")):
        media, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranked.append((q, -order, media.strip().lower()))
    for q, _, media in sorted(ranked, reverse=True):
        if q <= 0:
            break
        for syntax, rdf_media in MEDIA_TYPES.items():
            if media == rdf_media:
                return syntax
        if media in ("application/json", "*/*", "application/*", "text/html"):
            return None
    return None


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def dataset_rdf(request: Request, session: Session, name: str, syntax: str) -> Response:
    """One dataset in DCAT-AP.de, its versions and their distributions (private datasets are 404s app-wide)."""
    hub = hub_of(request)
    graph = dataset_graph(session, hub.settings, get_dataset(session, name), format_names(hub.registry))
    return _answer(request, serialise(graph, syntax), syntax)


@router.get("/catalog.{extension}", tags=["dcat"], response_class=Response, responses=RDF_RESPONSES)
def catalog(
    request: Request, extension: Extension, session: Session = Depends(get_session),
    page: int = int_query(1, ge=1, description="Page of the catalogue (settings.dcat_page_size datasets each)."),
) -> Response:
    """The DCAT-AP.de catalogue, one page of datasets at a time (Hydra paging: first, next, previous, last)."""
    hub = hub_of(request)
    size = hub.settings.dcat_page_size
    total, datasets = page_datasets(session, size, (page - 1) * size)
    if not datasets and page > 1:
        raise NotFound(f"The catalogue has {total} datasets, {size} a page: page {page} is past its end.")
    url = f"{hub.settings.public_url.rstrip('/')}/catalog.{extension}"
    graph = catalog_page(session, hub.settings, datasets, total, page, size, format_names(hub.registry), url)
    return _answer(request, serialise(graph, EXTENSIONS[extension]), EXTENSIONS[extension])


@dataset_router.get("/datasets/{name}.{extension}", tags=["dcat"], response_class=Response, responses=RDF_RESPONSES)
def dataset(request: Request, name: str, extension: Extension, session: Session = Depends(get_session)) -> Response:
    """One dataset in DCAT-AP.de (Turtle, JSON-LD or RDF/XML), with its versions as dcat:hasVersion."""
    return dataset_rdf(request, session, name, EXTENSIONS[extension])
