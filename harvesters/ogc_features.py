"""Harvest a collection of an OGC API Features server (``/collections/{id}/items``), page by page.

Pages are followed through their ``next`` links, each through the outbound guard, under one total
deadline and one byte cap for the whole run. The features are written, as they arrive, into one
GeoJSON FeatureCollection in the data directory's ``incoming/``, which the pipeline reads as any
GeoJSON delivery: the geometry becomes the ``geojson`` field and the parts GeoParquet. An
unchanged collection yields the same rows, so no new version (the pipeline compares them).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import httpx

from catalogue.errors import FeedTooLarge, MalformedFeed, SourceUnreachable, TooManyRedirects
from catalogue.ingest.pipeline import Delivery
from catalogue.meta.models import utcnow
from catalogue.settings import Settings
from harvesters.base import SourceSpec
from harvesters.guard import ACCEPT_ENCODING, Deadline, OutboundGuard, WatchedStream, decoded_pieces, guarded_client

PAGE_SIZE = 1000
ACCEPT = "application/geo+json, application/json;q=0.9"
NEXT_TYPES = ("", "application/geo+json", "application/json")


class OgcFeaturesHarvester:
    """Every feature of one collection, following ``next`` links (``options.collection``, ``options.page_size``)."""

    def __init__(self, settings: Settings, *, guard: OutboundGuard | None = None) -> None:
        self.settings = settings
        self.guard = guard

    def items_url(self, source: SourceSpec) -> str:
        """The first page's URL: ``<landing page>/collections/<collection>/items?limit=<page_size>``."""
        collection = source.options.get("collection")
        if not collection:
            raise MalformedFeed(
                f"Source '{source.name}' (ogc-features) names no collection. Add `options: {{collection: <id>}}` "
                f"to its definition; the server lists its collections at {source.url.rstrip('/')}/collections.",
                details={"url": source.url},
            )
        size = int(source.options.get("page_size", PAGE_SIZE))
        return f"{source.url.rstrip('/')}/collections/{quote(str(collection), safe='')}/items?limit={size}"

    def fetch(self, source: SourceSpec) -> Delivery:
        url: str | None = self.items_url(source)
        deadline = Deadline(self.settings.harvest_deadline_s, f"Harvesting source '{source.name}' ({source.url})")
        incoming = self.settings.data_dir / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"{source.name}-", suffix=".geojson", dir=incoming)
        path, digest = Path(name), hashlib.sha256()
        seen: set[str] = set()
        received = features = pages = 0
        try:
            with os.fdopen(fd, "wb") as out, guarded_client(self.settings, deadline, self.guard) as client:
                out.write(b'{"type": "FeatureCollection", "features": [\n')
                while url is not None:
                    if url in seen:
                        raise MalformedFeed(
                            f"Source '{source.name}' links back to a page it already sent ({url}): its `next` links "
                            "form a loop. Ask the publisher to fix the server's paging.",
                            details={"url": url, "pages": pages},
                        )
                    seen.add(url)
                    body = self._page(client, source, url, deadline, received)
                    received += len(body)
                    page, url = self._features(source, url, body)
                    pages += 1
                    if not page:  # an empty page ends the collection, whatever its links say
                        url = None
                    for feature in page:
                        text = (b",\n" if features else b"") + json.dumps(feature, ensure_ascii=False).encode()
                        digest.update(text)
                        out.write(text)
                        features += 1
                out.write(b"\n]}\n")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        provenance = {
            "source": source.name, "source_url": source.url, "collection": source.options.get("collection"),
            "pages": pages, "features": features, "received_at": utcnow().isoformat(),
            "delivery_sha256": digest.hexdigest(), "delivery_bytes": received,
        }
        return Delivery(content=b"", path=path, format="geojson", options={}, mode=source.mode, provenance=provenance)

    def _page(self, client: httpx.Client, source: SourceSpec, url: str, deadline: Deadline, received: int) -> bytes:
        """One page's body, counted against what the run may still receive."""
        budget = self.settings.harvest_max_bytes - received
        too_large = lambda size: FeedTooLarge(  # noqa: E731
            f"Source '{source.name}' delivers more than {self.settings.harvest_max_bytes} bytes over its pages, "
            "more than the limit. Raise URBANDATA_HARVEST_MAX_BYTES if this is expected.",
            details={"url": url, "max_bytes": self.settings.harvest_max_bytes},
        )
        try:
            with client.stream("GET", url, headers={"Accept": ACCEPT, "Accept-Encoding": ACCEPT_ENCODING,
                                                    "User-Agent": "urbandata-harvester/0.1"}) as response:
                if response.status_code >= 400:
                    raise SourceUnreachable(
                        f"Source '{source.name}' answered HTTP {response.status_code} for {url}. Check the "
                        "landing page URL and the collection id in the dataset definition.",
                        details={"url": url, "http_status": response.status_code},
                    )
                assert isinstance(response.stream, httpx.SyncByteStream)
                response.stream = WatchedStream(response.stream, deadline, budget, lambda n: too_large(n + received))
                return self._read(response, budget, too_large)
        except httpx.TooManyRedirects as exc:
            raise TooManyRedirects(
                f"Source '{source.name}' redirected more than {self.settings.harvest_max_redirects} times ({url}).",
                details={"url": url},
            ) from exc
        except httpx.TimeoutException as exc:
            deadline.check(slack=0.05)
            raise SourceUnreachable(
                f"Source '{source.name}' did not answer within {self.settings.harvest_timeout_s:g} s ({url}). "
                "Try again later or raise URBANDATA_HARVEST_TIMEOUT_S.", details={"url": url},
            ) from exc
        except httpx.HTTPError as exc:
            raise SourceUnreachable(
                f"Source '{source.name}' cannot be reached at {url}: {type(exc).__name__}. "
                "Check the URL and that the server is running.", details={"url": url},
            ) from exc

    def _read(self, response: httpx.Response, budget: int, too_large: Any) -> bytes:
        body = bytearray()
        for piece in decoded_pieces(response.iter_raw(), response.headers.get("Content-Encoding", "")):
            body += piece
            if len(body) > min(budget, self.settings.harvest_max_decoded_bytes):
                raise too_large(len(body))
        return bytes(body)

    def _features(self, source: SourceSpec, url: str, body: bytes) -> tuple[list[Any], str | None]:
        """The page's features and the URL of the next page (None on the last)."""
        try:
            doc = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedFeed(
                f"Source '{source.name}' sent a page that is not JSON ({url}): {exc}. Ask the publisher to check "
                "the server; the items must be GeoJSON.", details={"url": url},
            ) from exc
        if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
            raise MalformedFeed(
                f"Source '{source.name}' sent a page that is no GeoJSON FeatureCollection with a `features` list "
                f"({url}). Check that the URL is the API's landing page and the collection holds features.",
                details={"url": url},
            )
        return doc["features"], _next_link(doc, url)


def _next_link(doc: dict[str, Any], url: str) -> str | None:
    """The ``next`` link of a page (a GeoJSON or JSON one), resolved against the page's URL."""
    for link in doc.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == "next" and link.get("type", "") in NEXT_TYPES:
            href = link.get("href")
            if isinstance(href, str) and href:
                return urljoin(url, href)
    return None
