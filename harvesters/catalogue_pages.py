"""One page of a remote catalogue (CKAN JSON, DCAT RDF) read whole through the outbound guard."""

from __future__ import annotations

import httpx

from catalogue.errors import FeedTooLarge, MalformedFeed, SourceUnreachable, TooManyRedirects
from catalogue.settings import Settings
from harvesters.guard import ACCEPT_ENCODING, Deadline, WatchedStream, decoded_pieces, guarded_client

PAGE_CAP_BYTES = 64 << 20  # one catalogue page (JSON or RDF) is parsed whole: never more than this


def get_document(settings: Settings, url: str, what: str, accept: str) -> tuple[bytes, str]:
    """A catalogue page through the outbound guard (deadline, caps, redirects): its bytes and content type."""
    cap = min(settings.harvest_max_bytes, PAGE_CAP_BYTES)
    deadline = Deadline(settings.harvest_deadline_s, f"Reading {what} ({url})")
    headers = {"User-Agent": "urbandata-harvester/0.1", "Accept": accept, "Accept-Encoding": ACCEPT_ENCODING}

    def too_large(size: int) -> FeedTooLarge:
        return FeedTooLarge(f"{what} ({url}) is larger than {cap} bytes ({size} received); stopped there.",
                            details={"url": url, "max_bytes": cap})
    try:
        with guarded_client(settings, deadline) as client, client.stream("GET", url, headers=headers) as response:
            if response.status_code >= 400:
                raise SourceUnreachable(
                    f"{what} answered HTTP {response.status_code} for {url}. Check the catalogue's URL.",
                    details={"url": url, "http_status": response.status_code})
            assert isinstance(response.stream, httpx.SyncByteStream)
            response.stream = WatchedStream(response.stream, deadline, cap, too_large)
            body = bytearray()
            for piece in decoded_pieces(response.iter_raw(), response.headers.get("Content-Encoding", "")):
                body += piece
                if len(body) > cap:
                    raise too_large(len(body))
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and not response.headers.get("Content-Encoding") and int(declared) != len(body):
                raise MalformedFeed(f"{what} ({url}) was cut off: {len(body)} of {declared} bytes arrived.",
                                    details={"url": url})
            return bytes(body), response.headers.get("Content-Type", "")
    except httpx.TooManyRedirects as exc:
        raise TooManyRedirects(f"{what} ({url}) redirected more than {settings.harvest_max_redirects} times.",
                               details={"url": url}) from exc
    except httpx.TimeoutException as exc:
        deadline.check(slack=0.05)
        raise SourceUnreachable(f"{what} ({url}) did not answer within {settings.harvest_timeout_s:g} s.",
                                details={"url": url}) from exc
    except httpx.RemoteProtocolError as exc:
        raise MalformedFeed(f"{what} ({url}) broke off its answer or sent a broken one ({exc}); the page is "
                            "incomplete, nothing was changed. Try again later.", details={"url": url}) from exc
    except httpx.HTTPError as exc:
        raise SourceUnreachable(f"{what} cannot be reached at {url}: {type(exc).__name__} ({exc}). "
                                "Check the URL and that the server is running.", details={"url": url}) from exc
