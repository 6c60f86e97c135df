"""Conditional requests, retries with backoff and broken answers of an http-file source, over real HTTP.

An unchanged source costs one request and makes no version, whether it validates with ETag or only with
Last-Modified; a 503 or 429 is retried after the wait its Retry-After names, unless that lies beyond the
run's deadline; a body cut short fails the run. After each failure the current version is unchanged and
the job says why.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from sqlalchemy import select

from catalogue.hub import Hub
from catalogue.ingest.commit import current_version
from catalogue.meta.models import HarvestJob, HarvestSource
from harvesters.runner import harvest_source

NAME = "zaehlstellen"
SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "name", "type": "string"}], "primaryKey": ["id"]}
BODY = b"id,name\n1,Rathaus\n2,Hafen\n"
LAST_MODIFIED = "Wed, 02 Dec 2026 10:00:00 GMT"


def _catalogue(make: Callable[..., Hub], url: str, **settings: Any) -> Hub:
    return make(NAME, SCHEMA, {"type": "http-file", "url": url, "format": "csv"}, **settings)


def _job(hub: Hub, job_id: int | None) -> HarvestJob:
    with hub.sessions() as session:
        job = session.get(HarvestJob, job_id)
        assert job is not None
        session.expunge(job)
        return job


def _validating(etag: str | None, last_modified: str | None) -> Callable[[BaseHTTPRequestHandler, Any], None]:
    """A source answering 304 when the request's validators match its own, BODY otherwise."""
    def answer(handler: BaseHTTPRequestHandler, server: Any) -> None:
        same = ((etag is not None and handler.headers.get("If-None-Match") == etag)
                or (etag is None and last_modified is not None
                    and handler.headers.get("If-Modified-Since") == last_modified))
        handler.send_response(304 if same else 200)
        if etag:
            handler.send_header("ETag", etag)
        if last_modified:
            handler.send_header("Last-Modified", last_modified)
        handler.send_header("Content-Length", "0" if same else str(len(BODY)))
        handler.end_headers()
        if not same:
            handler.wfile.write(BODY)
    return answer


@pytest.mark.parametrize("etag, last_modified", [('"v1"', None), (None, LAST_MODIFIED), ('"v1"', LAST_MODIFIED)],
                         ids=["etag", "last-modified", "both"])
def test_an_unchanged_source_costs_one_request_and_makes_no_version(
        answering: Callable[..., Any], source_catalogue: Callable[..., Hub], etag: str | None,
        last_modified: str | None) -> None:
    server = answering(_validating(etag, last_modified))
    hub = _catalogue(source_catalogue, server.url + "z.csv")
    assert harvest_source(hub, NAME).status == "published"
    with hub.sessions() as session:
        source = session.scalar(select(HarvestSource).where(HarvestSource.name == NAME))
        assert (source.etag, source.last_modified) == (etag, last_modified)

    again = harvest_source(hub, NAME)

    assert (again.status, again.version) == ("unchanged", 1)
    assert len(server.hits) == 2  # one request per run
    sent = server.hits[1][1]
    assert (sent.get("If-None-Match"), sent.get("If-Modified-Since")) == (etag, last_modified)
    assert _job(hub, again.job_id).status == "unchanged"
    assert current_version(hub, NAME).number == 1  # type: ignore[union-attr]


def _busy_then_ok(busy: int, status: int, retry_after: str | None) -> Callable[[BaseHTTPRequestHandler, Any], None]:
    def answer(handler: BaseHTTPRequestHandler, server: Any) -> None:
        if len(server.hits) <= busy:
            handler.send_response(status)
            if retry_after is not None:
                handler.send_header("Retry-After", retry_after)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(BODY)))
        handler.end_headers()
        handler.wfile.write(BODY)
    return answer


@pytest.mark.parametrize("status, retry_after", [(503, "1"), (429, "0"), (502, None)])
def test_a_busy_source_is_retried_and_then_published(
        answering: Callable[..., Any], source_catalogue: Callable[..., Hub], status: int, retry_after: str | None) -> None:
    server = answering(_busy_then_ok(2, status, retry_after))
    hub = _catalogue(source_catalogue, server.url + "z.csv")
    outcome = harvest_source(hub, NAME)
    assert (outcome.status, outcome.version) == ("published", 1), outcome.message
    assert len(server.hits) == 3


def test_a_retry_after_beyond_the_deadline_fails_at_once_and_says_so(
        answering: Callable[..., Any], source_catalogue: Callable[..., Hub]) -> None:
    server = answering(_busy_then_ok(99, 503, "3600"))
    hub = _catalogue(source_catalogue, server.url + "z.csv", harvest_deadline_s=5.0)
    outcome = harvest_source(hub, NAME)
    assert (outcome.status, outcome.error_code) == ("failed", "source-unreachable")
    assert "answered HTTP 503" in outcome.message
    assert "retry after 3600 s, beyond the harvest deadline (5 s)" in outcome.message
    assert len(server.hits) == 1
    job = _job(hub, outcome.job_id)
    assert (job.status, job.error_code, job.errors[0]["type"]) == ("failed", "source-unreachable", "source-unreachable")
    assert current_version(hub, NAME) is None


def test_retries_end_after_the_configured_number(answering: Callable[..., Any],
                                                 source_catalogue: Callable[..., Hub]) -> None:
    server = answering(_busy_then_ok(99, 503, "0"))
    hub = source_catalogue(NAME, SCHEMA, {"type": "http-file", "url": server.url + "z.csv", "format": "csv",
                                          "options": {"retries": 3}})
    outcome = harvest_source(hub, NAME)
    assert (outcome.status, outcome.error_code) == ("failed", "source-unreachable")
    assert len(server.hits) == 4  # the first attempt and three retries


def test_a_truncated_body_fails_and_the_current_version_stays(
        answering: Callable[..., Any], source_catalogue: Callable[..., Hub]) -> None:
    def answer(handler: BaseHTTPRequestHandler, server: Any) -> None:
        body = BODY if len(server.hits) == 1 else BODY + b"3,Mark"  # the second answer promises more than it sends
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body) + (0 if len(server.hits) == 1 else 100)))
        handler.end_headers()
        handler.wfile.write(body)
        handler.wfile.flush()
        handler.close_connection = True

    server = answering(answer)
    hub = _catalogue(source_catalogue, server.url + "z.csv")
    first = harvest_source(hub, NAME)
    assert first.status == "published"
    before = current_version(hub, NAME)

    outcome = harvest_source(hub, NAME)

    assert (outcome.status, outcome.error_code) == ("failed", "source-unreachable")
    assert "broke off its answer" in outcome.message and "incomplete" in outcome.message
    assert _job(hub, outcome.job_id).message == outcome.message.split(": ", 1)[1]
    after = current_version(hub, NAME)
    assert (after.number, after.content_hash) == (before.number, before.content_hash)  # type: ignore[union-attr]
    assert list((hub.settings.data_dir / "incoming").iterdir()) == []


def test_credentials_in_the_source_url_never_reach_the_job(
        answering: Callable[..., Any], source_catalogue: Callable[..., Hub]) -> None:
    server = answering(_busy_then_ok(99, 404, None))
    url = server.url.replace("http://", "http://amt:geheim@") + "z.csv?apikey=s3cr3t&page=1"
    hub = _catalogue(source_catalogue, url)
    outcome = harvest_source(hub, NAME)
    job = _job(hub, outcome.job_id)
    assert outcome.status == "failed"
    shown = f"http://***@127.0.0.1:{server.url.rsplit(':', 1)[1].rstrip('/')}/z.csv?apikey=***&page=1"
    assert shown in job.message and shown == job.errors[0]["url"]
    assert "geheim" not in repr(job.errors) + job.message and "s3cr3t" not in repr(job.errors) + job.message


def _published_then(answering: Callable[..., Any], source_catalogue: Callable[..., Hub], broken: Callable[..., None],
                    **settings: Any) -> tuple[Hub, Any]:
    """A source published once, then answering with ``broken``; the hub and the second run's outcome."""
    def answer(handler: BaseHTTPRequestHandler, server: Any) -> None:
        if len(server.hits) > 1:
            broken(handler)
            return
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(BODY)))
        handler.end_headers()
        handler.wfile.write(BODY)

    server = answering(answer)
    hub = _catalogue(source_catalogue, server.url + "z.csv", **settings)
    assert harvest_source(hub, NAME).status == "published"
    return hub, harvest_source(hub, NAME)


def _endless(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)  # no Content-Length: the body streams until the cap stops it
    handler.end_headers()
    for _ in range(64):
        handler.wfile.write(b"9,x\n" * 4096)


def _malformed(handler: BaseHTTPRequestHandler) -> None:
    body = b'id,name\n3,x,y\n'  # a cell beyond the header
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.mark.parametrize("broken, status, code, words", [
    (_endless, "failed", "feed-too-large", "more than the limit of 65536 bytes"),
    (_malformed, "quarantined", None, "1 validation errors"),
], ids=["oversized-without-length", "malformed"])
def test_after_a_broken_answer_the_version_stays_and_the_job_says_why(
        answering: Callable[..., Any], source_catalogue: Callable[..., Hub], broken: Callable[..., None], status: str,
        code: str | None, words: str) -> None:
    hub, outcome = _published_then(answering, source_catalogue, broken, harvest_max_bytes=65536)
    assert (outcome.status, outcome.error_code) == (status, code)
    job = _job(hub, outcome.job_id)
    assert (job.status, job.error_code) == (status, code)
    assert words in job.message and job.errors
    version = current_version(hub, NAME)
    assert (version.number, version.row_count) == (1, 2)  # type: ignore[union-attr]
    assert list((hub.settings.data_dir / "incoming").iterdir()) == []


def test_an_unreachable_source_is_retried_then_fails_and_the_version_stays(
        answering: Callable[..., Any], source_catalogue: Callable[..., Hub]) -> None:
    import socket

    server = answering(lambda handler, _: (handler.send_response(200), handler.send_header("Content-Length", str(len(BODY))),
                                           handler.end_headers(), handler.wfile.write(BODY)))
    hub = _catalogue(source_catalogue, server.url + "z.csv")
    assert harvest_source(hub, NAME).status == "published"
    with socket.socket() as refusing:  # bound, not listening: every connection is refused
        refusing.bind(("127.0.0.1", 0))
        with hub.sessions.begin() as session:
            session.scalar(select(HarvestSource).where(HarvestSource.name == NAME)).url = \
                f"http://127.0.0.1:{refusing.getsockname()[1]}/z.csv"
        outcome = harvest_source(hub, NAME)
    assert (outcome.status, outcome.error_code) == ("failed", "source-unreachable")
    job = _job(hub, outcome.job_id)
    assert "cannot be reached" in job.message and "ConnectError" in job.message
    assert current_version(hub, NAME).number == 1  # type: ignore[union-attr]


def test_an_unchanged_reharvest_of_the_demo_sends_one_conditional_request_per_source(tmp_path: Any) -> None:
    """What bench/phase_reharvest.py measures: every demo source again, unchanged, costs one request (a 304)."""
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from catalogue.hub import open_hub
    from catalogue.meta.definitions import load_definitions, sync_definitions
    from catalogue.settings import PROJECT_ROOT, Settings
    from harvesters.runner import list_sources

    seen: list[tuple[str, str | None, int]] = []

    class Counting(SimpleHTTPRequestHandler):
        def send_response(self, code: int, message: str | None = None) -> None:
            seen.append((self.path, self.headers.get("If-Modified-Since"), code))
            super().send_response(code, message)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Counting, directory=str(PROJECT_ROOT / "datasets")))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    hub = open_hub(Settings(data_dir=tmp_path / "var", feed_base_url=f"http://127.0.0.1:{httpd.server_address[1]}/",
                            harvest_allowed_hosts=["127.0.0.1"]))
    try:
        sync_definitions(hub, load_definitions(hub.settings.definitions_dir))
        names = list_sources(hub)
        assert {harvest_source(hub, n).status for n in names} == {"published"}
        seen.clear()
        assert {harvest_source(hub, n).status for n in names} == {"unchanged"}
    finally:
        hub.close()
        httpd.shutdown()
        httpd.server_close()
    assert len(seen) == len(names) == 6
    assert all(since is not None and code == 304 for _, since, code in seen)


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    from email.utils import format_datetime

    from catalogue.meta.models import utcnow
    from harvesters.http_file import retry_after

    assert (retry_after("7"), retry_after(None), retry_after(""), retry_after("soon")) == (7.0, None, None, None)
    later = retry_after(format_datetime(utcnow() + timedelta(seconds=120), usegmt=True))
    assert later is not None and 100 < later <= 120
    assert retry_after("Wed, 02 Dec 2020 10:00:00 GMT") == 0.0  # a date in the past: at once
