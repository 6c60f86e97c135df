"""Harvest a file (CSV, JSON array, GeoJSON) over HTTP with httpx."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import httpx

from catalogue.meta.definitions import expand_env
from catalogue.errors import FeedTooLarge, SourceUnreachable, TooManyRedirects
from catalogue.meta.models import utcnow
from catalogue.settings import Settings
from catalogue.ingest.pipeline import Delivery
from harvesters.base import SourceSpec
from harvesters.guard import ACCEPT_ENCODING, Deadline, OutboundGuard, WatchedStream, decoded_pieces, guarded_client


class HttpFileHarvester:
    """GET a URL through the outbound guard, with a total deadline, size caps and a conditional request (ETag)."""

    def __init__(self, settings: Settings, *, guard: OutboundGuard | None = None) -> None:
        self.settings = settings
        self.guard = guard

    def fetch(self, source: SourceSpec) -> Delivery | None:
        headers = {k: expand_env(v) for k, v in source.options.get("headers", {}).items()}
        headers.setdefault("User-Agent", "urbandata-harvester/0.1")
        headers["Accept-Encoding"] = ACCEPT_ENCODING  # the ones decoded here, in bounded pieces
        if source.etag:
            headers["If-None-Match"] = source.etag
        cap = self.settings.harvest_max_bytes
        deadline = Deadline(self.settings.harvest_deadline_s, f"Downloading source '{source.name}' ({source.url})")
        try:
            with guarded_client(self.settings, deadline, self.guard) as client:
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
                    assert isinstance(response.stream, httpx.SyncByteStream)  # a sync client's stream
                    response.stream = WatchedStream(response.stream, deadline, cap,
                                                    lambda received: FeedTooLarge(self._too_large(source, received)))
                    path, size, digest = self._save(source, response)
                    etag = response.headers.get("ETag")
        except httpx.TooManyRedirects as exc:
            raise TooManyRedirects(
                f"Source '{source.name}' redirected more than {self.settings.harvest_max_redirects} times "
                f"({source.url}), most likely in a loop. Put the final URL in the dataset definition, or raise "
                "URBANDATA_HARVEST_MAX_REDIRECTS.",
                details={"url": source.url, "max_redirects": self.settings.harvest_max_redirects},
            ) from exc
        except httpx.TimeoutException as exc:
            deadline.check(slack=0.05)  # each wait is cut to the time left: then the deadline ended it
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

    def _save(self, source: SourceSpec, response: httpx.Response) -> tuple[Path, int, str]:
        """Stream the body to a file in the data directory (memory stays flat for any size).

        The response's stream checks the deadline and the bytes received after every read; here
        the bytes once decoded are counted (``harvest_max_decoded_bytes``: a gzip bomb stops there),
        decoded in pieces of at most 1 MiB. Reads are taken as they arrive: chunking them would wait
        for a whole MiB of a dripping source.
        """
        decoded_cap = self.settings.harvest_max_decoded_bytes
        incoming = self.settings.data_dir / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"{source.name}-", suffix=f".{source.format}", dir=incoming)
        path, size, digest = Path(name), 0, hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in decoded_pieces(response.iter_raw(), response.headers.get("Content-Encoding", "")):
                    size += len(chunk)
                    if size > decoded_cap:
                        raise FeedTooLarge(
                            f"Source '{source.name}' decompresses to more than {decoded_cap} bytes "
                            f"(from {response.num_bytes_downloaded} bytes received), more than the limit; "
                            "stopped there. Raise URBANDATA_HARVEST_MAX_DECODED_BYTES if this is expected.",
                            details={"url": source.url, "max_decoded_bytes": decoded_cap},
                        )
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
