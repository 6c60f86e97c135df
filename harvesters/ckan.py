"""CKAN portals: datasets and their resources' data through the CKAN Action API (``package_search``).

The listing pages through ``package_search`` (``rows``/``start``, sorted by name so pages stay
stable), filtered by organisation and tags. Each package's ``metadata_modified`` is its change
marker: a package whose marker is unchanged since the last good harvest is not fetched again
(``harvesters.catalogue_sources``). Resources are downloaded by the http-file harvester, through
the same outbound guard.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from catalogue.errors import MalformedFeed
from catalogue.ingest.pipeline import Delivery
from catalogue.settings import Settings
from harvesters.base import SourceSpec
from harvesters.catalogue_pages import get_document
from harvesters.catalogue_sources import CatalogueSpec, RemoteDataset, RemoteResource, data_format
from harvesters.http_file import HttpFileHarvester

DEFAULT_ROWS = 100
MAX_ROWS = 1000  # CKAN's own ceiling (ckan.search.rows_max)


class CkanHarvester:
    """Lists a CKAN portal's packages (``discover``) and downloads one package's resource (``fetch``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def fetch(self, source: SourceSpec) -> Delivery | None:
        """The resource's data, as the http-file harvester fetches any file (conditional, guarded, capped)."""
        return HttpFileHarvester(self.settings).fetch(source)

    def discover(self, catalogue: CatalogueSpec) -> Iterator[RemoteDataset]:
        """Every active package matching the catalogue's filters, page by page."""
        rows = int(catalogue.options.get("rows", DEFAULT_ROWS))
        if not 1 <= rows <= MAX_ROWS:
            raise MalformedFeed(f"Catalogue '{catalogue.name}': option rows must be 1 to {MAX_ROWS}, not {rows}.")
        start, total = 0, None
        while total is None or start < total:
            page = self._page(catalogue, rows, start)
            total = page["count"]
            for package in page["results"]:
                if isinstance(package, dict) and package.get("state", "active") == "active":
                    yield self._dataset(catalogue, package, start)
            if not page["results"]:
                break  # fewer packages than counted (deleted while paging): nothing more to read
            start += len(page["results"])

    def _page(self, catalogue: CatalogueSpec, rows: int, start: int) -> dict[str, Any]:
        params = {"q": "*:*", "rows": rows, "start": start, "sort": "name asc"}
        fq = search_filter(catalogue.options)
        if fq:
            params["fq"] = fq
        url = f"{catalogue.url.rstrip('/')}/api/3/action/package_search?{urlencode(params)}"
        what = f"The CKAN portal of catalogue '{catalogue.name}'"
        body, _ = get_document(self.settings, url, what, "application/json")
        try:
            doc = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedFeed(f"{what} answered package_search (start={start}) with no valid JSON: {exc}. "
                                "Is the URL the portal's base URL (without /api/3)?", details={"url": url}) from exc
        result = doc.get("result") if isinstance(doc, dict) else None
        if not (isinstance(doc, dict) and doc.get("success") is True and isinstance(result, dict)
                and isinstance(result.get("count"), int) and isinstance(result.get("results"), list)):
            error = doc.get("error") if isinstance(doc, dict) else None
            raise MalformedFeed(f"{what} did not answer package_search (start={start}) as CKAN does "
                                f"(success, result.count, result.results){f': {error}' if error else ''}.",
                                details={"url": url})
        return result

    def _dataset(self, catalogue: CatalogueSpec, package: dict[str, Any], start: int) -> RemoteDataset:
        remote_id = str(package.get("id") or "")
        if not remote_id or not package.get("name"):
            return RemoteDataset(remote_id=remote_id, name=str(package.get("name") or f"(package near {start})"),
                                 title="", problem=f"Catalogue '{catalogue.name}': the package near position {start} "
                                 "has no id or no name; it was not harvested.")
        org = package.get("organization") or {}
        resources = tuple(
            RemoteResource(url=str(r.get("url") or ""), format=data_format(str(r.get("format") or r.get("mimetype")
                                                                              or ""), str(r.get("url") or "")))
            for r in package.get("resources") or [] if isinstance(r, dict))
        return RemoteDataset(
            remote_id=remote_id,
            name=str(package["name"]),
            title=str(package.get("title") or package["name"]),
            description=str(package.get("notes") or ""),
            keywords=tuple(str(t["name"]) for t in package.get("tags") or [] if isinstance(t, dict) and t.get("name")),
            themes=tuple(str(g["name"]) for g in package.get("groups") or [] if isinstance(g, dict) and g.get("name")),
            contact_name=str(package.get("maintainer") or package.get("author") or ""),
            contact_email=str(package.get("maintainer_email") or package.get("author_email") or ""),
            license=str(package.get("license_id") or package.get("license_url") or ""),
            publisher_name=str(org.get("name") or "") if isinstance(org, dict) else "",
            publisher_title=str(org.get("title") or "") if isinstance(org, dict) else "",
            modified=str(package.get("metadata_modified") or ""),
            resources=resources,
        )


def search_filter(options: dict[str, Any]) -> str:
    """The Solr filter query for the ``organization`` (one or any of several) and ``tags`` (all) options."""
    parts = []
    orgs = options.get("organization") or []
    orgs = [orgs] if isinstance(orgs, str) else list(orgs)
    if orgs:
        parts.append("(" + " OR ".join(f"organization:{_quoted(o)}" for o in orgs) + ")")
    tags = options.get("tags") or []
    parts += [f"tags:{_quoted(t)}" for t in ([tags] if isinstance(tags, str) else tags)]
    return " AND ".join(parts)


def _quoted(value: str) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
