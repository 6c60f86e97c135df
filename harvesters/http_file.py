"""Harvest a file (CSV, JSON array, GeoJSON) over HTTP with httpx."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import httpx

from catalogue.meta.definitions import expand_env
from catalogue.errors import FeedTooLarge, SourceUnreachable
from catalogue.meta.models import utcnow
from catalogue.settings import Settings
from catalogue.ingest.pipeline import Delivery
from harvesters.base import SourceSpec


class HttpFileHarvester:
    """GET a URL with a timeout, a size cap and a conditional request (ETag)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def fetch(self, source: SourceSpec) -> Delivery | None:
        headers = {k: expand_env(v) for k, v in source.options.get("headers", {}).items()}
        headers.setdefault("User-Agent", "urbandata-harvester/0.1")
        if source.etag:
            headers["If-None-Match"] = source.etag
        cap = self.settings.harvest_max_bytes
        try:
            with httpx.Client(timeout=self.settings.harvest_timeout_s, follow_redirects=True) as client:
                with client.stream("GET", source.url, headers=headers) as response:
                    if response.status_code == 304:
                        return None
                    if response.status_code >= 400:
                        raise SourceUnreachable(
                            f"Source '{source.name}' answered HTTP {response.status_code} for {source.url}. "
                            "Check the URL in the dataset definition, or ask the publisher whether the feed moved.",
                            details={"url": source.url, "http_status": response.status_code},
                        )
                    declared = response.headers.get("Content-Length")
                    if declared and declared.isdigit() and int(declared) > cap:
                        raise FeedTooLarge(self._too_large(source, int(declared)))
                    path, size, digest = self._save(source, response, cap)
                    etag = response.headers.get("ETag")
        except httpx.TimeoutException as exc:
            raise SourceUnreachable(
                f"Source '{source.name}' did not answer within {self.settings.harvest_timeout_s:g} s ({source.url}). "
                "Try again later or raise URBANDATA_HARVEST_TIMEOUT_S.",
                details={"url": source.url},
            ) from exc
        except httpx.HTTPError as exc:
            raise SourceUnreachable(
                f"Source '{source.name}' cannot be reached at {source.url}: {type(exc).__name__}. "
                "Check the URL and that the server is running.",
                details={"url": source.url},
            ) from exc
        provenance = {
            "source": source.name,
            "source_url": source.url,
            "etag": etag,
            "received_at": utcnow().isoformat(),
            "delivery_sha256": digest,
            "delivery_bytes": size,
        }
        return Delivery(content=b"", path=path, format=source.format, options=source.options, mode=source.mode,
                        provenance=provenance)

    def _save(self, source: SourceSpec, response: httpx.Response, cap: int) -> tuple[Path, int, str]:
        """Stream the body to a file in the data directory (memory stays flat for any size)."""
        incoming = self.settings.data_dir / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"{source.name}-", suffix=f".{source.format}", dir=incoming)
        path, size, digest = Path(name), 0, hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in response.iter_bytes(1 << 20):
                    size += len(chunk)
                    if size > cap:
                        raise FeedTooLarge(self._too_large(source, size))
                    digest.update(chunk)
                    handle.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path, size, digest.hexdigest()

    def _too_large(self, source: SourceSpec, size: int) -> str:
        return (
            f"Source '{source.name}' delivers at least {size} bytes, more than the limit of "
            f"{self.settings.harvest_max_bytes} bytes. Raise URBANDATA_HARVEST_MAX_BYTES if this is expected."
        )
