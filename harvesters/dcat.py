"""DCAT catalogues: DCAT-AP / DCAT-AP.de in Turtle, RDF/XML or JSON-LD, with Hydra paging.

Nothing in a catalogue document may make the harvester reach further than the page itself: XML
is checked with defusedxml before rdflib sees it (no DTD at all, so no entity expansion, no
external entities, no DTD fetching: a billion-laughs document fails at its DOCTYPE, before
anything is expanded), and a JSON-LD document naming a remote ``@context`` or ``@import`` is
refused instead of letting rdflib fetch it past the outbound guard. Pages follow
``hydra:next`` (or the older ``hydra:nextPage``). A dataset's change marker is a fingerprint of
its metadata (``dct:modified`` included), so a re-run fetches only changed datasets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring
from rdflib import BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCTERMS, FOAF, RDF

from catalogue.errors import MalformedFeed
from catalogue.ingest.pipeline import Delivery
from catalogue.settings import Settings
from harvesters.base import SourceSpec
from harvesters.catalogue_pages import get_document
from harvesters.catalogue_sources import CatalogueSpec, RemoteDataset, RemoteResource, data_format
from harvesters.http_file import HttpFileHarvester

DCAT = Namespace("http://www.w3.org/ns/dcat#")
HYDRA = Namespace("http://www.w3.org/ns/hydra/core#")
VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
RDF_FORMATS = {"turtle": "turtle", "ttl": "turtle", "xml": "xml", "rdf": "xml", "rdf+xml": "xml",
               "json-ld": "json-ld", "jsonld": "json-ld", "ld+json": "json-ld"}
ACCEPT = "text/turtle, application/rdf+xml;q=0.9, application/ld+json;q=0.8"
DEFAULT_MAX_PAGES = 1000


class DcatHarvester:
    """Lists a DCAT catalogue's datasets (``discover``) and downloads one distribution (``fetch``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def fetch(self, source: SourceSpec) -> Delivery | None:
        """The distribution's data, as the http-file harvester fetches any file (conditional, guarded, capped)."""
        return HttpFileHarvester(self.settings).fetch(source)

    def discover(self, catalogue: CatalogueSpec) -> Iterator[RemoteDataset]:
        """Every dcat:Dataset of every page, following Hydra's next links."""
        url: str | None = catalogue.url
        seen: set[str] = set()
        max_pages = int(catalogue.options.get("max_pages", DEFAULT_MAX_PAGES))
        while url is not None:
            if url in seen:
                raise MalformedFeed(f"Catalogue '{catalogue.name}': Hydra paging returns to {url}, a page read "
                                    "before (a loop); the listing is incomplete, nothing was changed.",
                                    details={"url": url})
            if len(seen) >= max_pages:
                raise MalformedFeed(f"Catalogue '{catalogue.name}' has more than {max_pages} pages; raise the "
                                    "catalogue's max_pages option if that is expected.", details={"url": url})
            seen.add(url)
            what = f"The DCAT catalogue '{catalogue.name}'"
            body, content_type = get_document(self.settings, url, what, ACCEPT)
            graph = parse_catalogue(body, rdf_format(catalogue, url, content_type), f"{what} at {url}")
            yield from (describe_dataset(graph, node) for node in listed_datasets(graph))
            url = next_page(graph, url)


def rdf_format(catalogue: CatalogueSpec, url: str, content_type: str) -> str:
    """turtle, xml or json-ld: the catalogue's ``rdf_format`` option, else the Content-Type, else the extension."""
    given = catalogue.options.get("rdf_format")
    if given:
        if given not in RDF_FORMATS:
            raise MalformedFeed(f"Catalogue '{catalogue.name}': rdf_format must be turtle, xml or json-ld, "
                                f"not '{given}'.")
        return RDF_FORMATS[given]
    kind = content_type.split(";")[0].strip().lower()
    by_type = {"text/turtle": "turtle", "application/x-turtle": "turtle", "application/rdf+xml": "xml",
               "application/xml": "xml", "text/xml": "xml", "application/ld+json": "json-ld"}
    if kind in by_type:
        return by_type[kind]
    extension = urlsplit(url).path.rsplit(".", 1)[-1].lower()
    if extension in RDF_FORMATS:
        return RDF_FORMATS[extension]
    raise MalformedFeed(f"Catalogue '{catalogue.name}' answered with Content-Type '{content_type}' at {url}; "
                        "set its rdf_format option (turtle, xml or json-ld).", details={"url": url})


def parse_catalogue(body: bytes, fmt: str, where: str) -> Graph:
    """The page as an RDF graph, parsed without entities, DTDs or remote contexts (MalformedFeed otherwise)."""
    if fmt == "xml":
        _check_xml(body, where)
    elif fmt == "json-ld":
        _check_json_ld(body, where)
    graph = Graph()
    try:
        graph.parse(data=body, format=fmt)
    except Exception as exc:  # noqa: BLE001 - rdflib's parsers raise many kinds; each means a malformed page
        raise MalformedFeed(f"{where} is not valid {fmt}: {type(exc).__name__}: {str(exc)[:300]}") from exc
    return graph


def _check_xml(body: bytes, where: str) -> None:
    try:
        fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise MalformedFeed(
            f"{where} declares a DTD or entities ({type(exc).__name__}), which catalogue harvests refuse: they "
            "are how XML bombs (billion laughs) and external-entity attacks work, and DCAT needs none. Ask the "
            "publisher to serve the catalogue without a DOCTYPE.", details={"refused": type(exc).__name__}) from exc
    except ParseError as exc:
        raise MalformedFeed(f"{where} is not well-formed XML: {exc}") from exc


def _check_json_ld(body: bytes, where: str) -> None:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedFeed(f"{where} is not valid JSON(-LD): {exc}") from exc
    remote = _remote_context(doc)
    if remote:
        raise MalformedFeed(f"{where} names the remote JSON-LD context {remote}; harvests do not fetch contexts. "
                            "Ask the publisher to inline it, or serve Turtle or RDF/XML.", details={"context": remote})


def _remote_context(node: Any) -> str | None:
    """The first context reference by URL (``@context`` or ``@import`` holding a string) in a JSON-LD document."""
    if isinstance(node, list):
        return next((found for item in node if (found := _remote_context(item))), None)
    if not isinstance(node, dict):
        return None
    for key in ("@context", "@import"):
        value = node.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, list) and (text := next((v for v in value if isinstance(v, str)), None)):
            return text
    return next((found for value in node.values() if (found := _remote_context(value))), None)


def next_page(graph: Graph, url: str) -> str | None:
    """The page after this one (hydra:next, or hydra:nextPage of the older vocabulary), absolute."""
    for predicate in (HYDRA.next, HYDRA.nextPage):
        target = next(iter(graph.objects(None, predicate)), None)
        if target is not None:
            return urljoin(url, str(target))
    return None


def listed_datasets(graph: Graph) -> list[Any]:
    """The page's datasets, without the versions of datasets (DCAT 3 types a version as dcat:Dataset too).

    A dcat:Dataset that is ``dcat:isVersionOf`` another, or another's ``dcat:hasVersion``, is a
    version of a dataset, not one of its own, unless a dcat:Catalog lists it with dcat:dataset.
    """
    listed = set(graph.objects(None, DCAT.dataset))
    versions = set(graph.subjects(DCAT.isVersionOf, None)) | set(graph.objects(None, DCAT.hasVersion))
    return sorted({node for node in graph.subjects(RDF.type, DCAT.Dataset) if node in listed or node not in versions},
                  key=str)


def slug_of(identifier: str, node: Any) -> str:
    """What a dataset's name here is made from: its dct:identifier, or the last path segment of its IRI.

    An identifier that is itself an IRI (DCAT-AP.de catalogues often give the dataset's IRI, as
    the hub's own does) contributes its last path segment, as the dataset IRI would: a name made
    of the whole IRI (``http-127-0-0-1-8000-api-v1-datasets-car-parks``) is no name.
    """
    if identifier and not _is_iri(identifier):
        return identifier
    return urlsplit(identifier or str(node)).path.rstrip("/").rsplit("/", 1)[-1]


def _is_iri(text: str) -> bool:
    return urlsplit(text).scheme in ("http", "https") and bool(urlsplit(text).netloc)


def describe_dataset(graph: Graph, node: Any) -> RemoteDataset:
    """One dcat:Dataset as a RemoteDataset (a record without a usable id carries its problem instead)."""
    identifier = _text(graph, node, DCTERMS.identifier)
    remote_id = identifier if isinstance(node, BNode) else str(node)
    slug_source = slug_of(identifier, node)
    title = _text(graph, node, DCTERMS.title)
    if not remote_id or not slug_source:
        return RemoteDataset(remote_id="", name=title or "(dataset without identifier)", title=title,
                             problem=f"A dcat:Dataset ({title or 'untitled'}) has neither a URI nor a dct:identifier; "
                             "it was not harvested.")
    publisher = graph.value(node, DCTERMS.publisher)
    contact = graph.value(node, DCAT.contactPoint)
    publisher_title = _text(graph, publisher, FOAF.name) if publisher is not None else ""
    publisher_name = publisher_title or (urlsplit(str(publisher)).path.rstrip("/").rsplit("/", 1)[-1]
                                         if isinstance(publisher, URIRef) else "")
    resources = []
    licenses = [str(v) for v in graph.objects(node, DCTERMS.license)]
    for dist in sorted(graph.objects(node, DCAT.distribution), key=str):
        url = graph.value(dist, DCAT.downloadURL) or graph.value(dist, DCAT.accessURL)
        declared = graph.value(dist, DCTERMS.format) or graph.value(dist, DCAT.mediaType) or ""
        license_ = graph.value(dist, DCTERMS.license)
        licenses += [str(license_)] if license_ is not None else []
        if url is not None:
            resources.append(RemoteResource(url=str(url), format=data_format(str(declared), str(url)),
                                            license=str(license_ or "")))
    return RemoteDataset(
        remote_id=remote_id,
        name=slug_source,
        title=title,
        description=_text(graph, node, DCTERMS.description),
        keywords=tuple(sorted({str(k) for k in graph.objects(node, DCAT.keyword)})),
        themes=tuple(sorted(str(t) for t in graph.objects(node, DCAT.theme))),
        contact_name=_text(graph, contact, VCARD.fn) if contact is not None else "",
        contact_email=str(graph.value(contact, VCARD.hasEmail) or "") if contact is not None else "",
        license=licenses[0] if licenses else "",
        publisher_name=publisher_name,
        publisher_title=publisher_title,
        modified="",  # the marker is the fingerprint of everything here, dct:modified included (revision)
        revision=_text(graph, node, DCTERMS.modified),
        resources=tuple(resources),
    )


def _text(graph: Graph, node: Any, predicate: URIRef) -> str:
    """The German literal of ``predicate`` if there is one, else one without a language, else any."""
    values = [v for v in graph.objects(node, predicate) if isinstance(v, Literal)]
    for wanted in ("de", None):
        chosen = [v for v in values if v.language == wanted]
        if chosen:
            return str(sorted(chosen)[0]).strip()
    return str(sorted(values)[0]).strip() if values else ""
