"""Harvest a file over HTTP with httpx: CSV, JSON, NDJSON, GeoJSON or Excel, or one of them inside a .zip.

Every request passes the outbound guard (``harvesters.guard``) with the run's
total deadline; transient failures (no connection, 429, 502-504) are retried
with backoff, honouring ``Retry-After`` while the deadline allows; the
request is conditional (``If-None-Match`` and ``If-Modified-Since``), so an
unchanged source costs one request and makes no version.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx

from catalogue.errors import FeedTooLarge, HarvestDeadlineExceeded, MalformedFeed, SourceUnreachable, TooManyRedirects
from catalogue.ingest.pipeline import Delivery
from catalogue.meta.definitions import expand_env
from catalogue.meta.models import utcnow
from catalogue.settings import Settings
from harvesters.base import SourceSpec
from harvesters.guard import ACCEPT_ENCODING, Deadline, OutboundGuard, WatchedStream, decoded_pieces, guarded_client
from catalogue.redact import redact_url

RETRY_STATUSES = {429, 502, 503, 504}
DEFAULT_RETRIES = 2  # attempts after the first; the source option ``retries`` changes it
BACKOFF_S = 0.5  # the first wait; doubled each time
PIECE_BYTES = 1 << 20


class Retry(Exception):
    """A transient failure worth another attempt after ``wait`` seconds (None: the backoff decides)."""

    def __init__(self, error: Exception, wait: float | None = None) -> None:
        super().__init__(str(error))
        self.error, self.wait = error, wait


class HttpFileHarvester:
    """GET a URL through the outbound guard, with a total deadline, size caps, retries and a conditional request."""

    def __init__(self, settings: Settings, *, guard: OutboundGuard | None = None) -> None:
        self.settings = settings
        self.guard = guard

    def fetch(self, source: SourceSpec) -> Delivery | None:
        deadline = Deadline(self.settings.harvest_deadline_s, f"Downloading source '{source.name}' "
                                                              f"({redact_url(source.url)})")
        retries = int(source.options.get("retries", DEFAULT_RETRIES))
        attempt = 0
        while True:
            try:
                return self._attempt(source, deadline)
            except Retry as retry:
                attempt += 1
                if attempt > retries:
                    raise retry.error from None
                wait = retry.wait if retry.wait is not None else BACKOFF_S * 2 ** (attempt - 1)
                if wait >= deadline.remaining():
                    raise SourceUnreachable(
                        f"{retry.error} It asked to retry after {wait:g} s, beyond the harvest deadline "
                        f"({self.settings.harvest_deadline_s:g} s); harvest again later.",
                        details=dict(getattr(retry.error, "details", {}) or {}, retry_after_s=wait)) from None
                deadline.backoff(wait)

    def _headers(self, source: SourceSpec) -> dict[str, str]:
        headers = {k: expand_env(v) for k, v in source.options.get("headers", {}).items()}
        headers.setdefault("User-Agent", "urbandata-harvester/0.1")
        headers["Accept-Encoding"] = ACCEPT_ENCODING  # the ones decoded here, in bounded pieces
        if source.etag:
            headers["If-None-Match"] = source.etag
        last_modified = getattr(source, "last_modified", None)
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        return headers

    def _attempt(self, source: SourceSpec, deadline: Deadline) -> Delivery | None:
        shown = redact_url(source.url)
        cap = self.settings.harvest_max_bytes
        try:
            with guarded_client(self.settings, deadline, self.guard) as client:
                with client.stream("GET", source.url, headers=self._headers(source)) as response:
                    if response.status_code == 304:
                        return None
                    if response.status_code >= 400:
                        error = SourceUnreachable(
                            f"Source '{source.name}' answered HTTP {response.status_code} for {shown}. "
                            "Check the URL in the dataset definition, or ask the publisher whether the feed moved.",
                            details={"url": shown, "http_status": response.status_code},
                        )
                        if response.status_code in RETRY_STATUSES:
                            raise Retry(error, retry_after(response.headers.get("Retry-After")))
                        raise error
                    declared = response.headers.get("Content-Length")
                    if declared and declared.isdigit() and int(declared) > cap:
                        raise FeedTooLarge(self._too_large(source, int(declared)))
                    assert isinstance(response.stream, httpx.SyncByteStream)  # a sync client's stream
                    response.stream = WatchedStream(response.stream, deadline, cap,
                                                    lambda received: FeedTooLarge(self._too_large(source, received)))
                    path, size, digest = self._save(source, response)
                    etag, last_modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
        except httpx.TooManyRedirects as exc:
            raise TooManyRedirects(
                f"Source '{source.name}' redirected more than {self.settings.harvest_max_redirects} times "
                f"({shown}), most likely in a loop. Put the final URL in the dataset definition, or raise "
                "URBANDATA_HARVEST_MAX_REDIRECTS.",
                details={"url": shown, "max_redirects": self.settings.harvest_max_redirects},
            ) from exc
        except httpx.TimeoutException as exc:
            deadline.check(slack=0.05)  # each wait is cut to the time left: then the deadline ended it
            raise SourceUnreachable(
                f"Source '{source.name}' did not answer within {self.settings.harvest_timeout_s:g} s ({shown}). "
                "Try again later or raise URBANDATA_HARVEST_TIMEOUT_S.",
                details={"url": shown},
            ) from exc
        except httpx.RemoteProtocolError as exc:
            raise SourceUnreachable(
                f"Source '{source.name}' broke off its answer ({shown}): {exc}. The download was incomplete and "
                "nothing was published; harvest again later, or ask the publisher to check the server.",
                details={"url": shown},
            ) from exc
        except httpx.TransportError as exc:
            raise Retry(SourceUnreachable(
                f"Source '{source.name}' cannot be reached at {shown}: {type(exc).__name__}. "
                "Check the URL and that the server is running.",
                details={"url": shown},
            )) from exc
        except httpx.HTTPError as exc:
            raise SourceUnreachable(
                f"Source '{source.name}' cannot be reached at {shown}: {type(exc).__name__}. "
                "Check the URL and that the server is running.",
                details={"url": shown},
            ) from exc
        member = source.options.get("zip_member")
        if member:
            path, size, digest = self._unzip(source, path, member)
        provenance = {
            "source": source.name,
            "source_url": shown,
            "etag": etag,
            "last_modified": last_modified,
            "received_at": utcnow().isoformat(),
            "delivery_sha256": digest,
            "delivery_bytes": size,
        }
        return Delivery(content=b"", path=path, format=source.format, options=source.options, mode=source.mode,
                        provenance=provenance)

    def _new_file(self, source: SourceSpec) -> tuple[int, Path]:
        incoming = self.settings.data_dir / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"{source.name}-", suffix=f".{source.format}", dir=incoming)
        return fd, Path(name)

    def _save(self, source: SourceSpec, response: httpx.Response) -> tuple[Path, int, str]:
        """Stream the body to a file in the data directory (memory stays flat for any size).

        The response's stream checks the deadline and the bytes received after every read; here
        the bytes once decoded are counted (``harvest_max_decoded_bytes``: a gzip bomb stops there),
        decoded in pieces of at most 1 MiB. Reads are taken as they arrive: chunking them would wait
        for a whole MiB of a dripping source.
        """
        decoded_cap = self.settings.harvest_max_decoded_bytes
        fd, path = self._new_file(source)
        size, digest = 0, hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in decoded_pieces(response.iter_raw(), response.headers.get("Content-Encoding", "")):
                    size += len(chunk)
                    if size > decoded_cap:
                        raise FeedTooLarge(
                            f"Source '{source.name}' decompresses to more than {decoded_cap} bytes "
                            f"(from {response.num_bytes_downloaded} bytes received), more than the limit; "
                            "stopped there. Raise URBANDATA_HARVEST_MAX_DECODED_BYTES if this is expected.",
                            details={"url": redact_url(source.url), "max_decoded_bytes": decoded_cap},
                        )
                    digest.update(chunk)
                    handle.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path, size, digest.hexdigest()

    def _unzip(self, source: SourceSpec, archive: Path, member: str) -> tuple[Path, int, str]:
        """The named member of a downloaded .zip, as a file of its own; decompressed bytes counted against the cap.

        The sizes a zip declares are not trusted: the member is read in pieces and stops at the cap
        (a zip bomb stops there, whatever its header says).
        """
        cap = self.settings.harvest_max_decoded_bytes
        fd, path = self._new_file(source)
        size, digest = 0, hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(archive) as zipped:
                names = zipped.namelist()
                if member not in names:
                    raise MalformedFeed(
                        f"The archive of source '{source.name}' has no member '{member}'; it holds: "
                        f"{', '.join(names[:20]) or 'nothing'}. Set the source option zip_member to one of them.",
                        details={"zip_member": member})
                with zipped.open(member) as inner:
                    for piece in iter(lambda: inner.read(PIECE_BYTES), b""):
                        size += len(piece)
                        if size > cap:
                            raise FeedTooLarge(
                                f"Member '{member}' of source '{source.name}' decompresses to more than {cap} bytes, "
                                "more than the limit; stopped there. Raise URBANDATA_HARVEST_MAX_DECODED_BYTES if "
                                "this is expected.", details={"zip_member": member, "max_decoded_bytes": cap})
                        digest.update(piece)
                        handle.write(piece)
        except zipfile.BadZipFile as exc:
            path.unlink(missing_ok=True)
            raise MalformedFeed(f"Source '{source.name}' did not deliver a readable .zip archive ({exc}); check "
                                "the URL, or drop zip_member from the source options if the file is not zipped.",
                                details={"zip_member": member}) from exc
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            archive.unlink(missing_ok=True)
        return path, size, digest.hexdigest()

    def _too_large(self, source: SourceSpec, size: int) -> str:
        return (
            f"Source '{source.name}' delivers at least {size} bytes, more than the limit of "
            f"{self.settings.harvest_max_bytes} bytes. Raise URBANDATA_HARVEST_MAX_BYTES if this is expected."
        )


def retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - utcnow()).total_seconds()) if when.tzinfo else None
