"""The outbound guard of harvests (issue 12, defect 6): deadline, caps, redirect limit, inside addresses refused.

Every server here is real and listens on loopback at a free port. Addresses outside loopback
(169.254.169.254, 10.0.0.1) are only ever named: the harvester for them runs with a network
backend that fails the test if anything but the allow-listed origin is dialled, so no packet
could leave the machine even if the guard were broken.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import shutil
import threading
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpcore
import pytest
from sqlalchemy import select

from api.feed_server import FeedServer
from catalogue.errors import MalformedFeed, SourceRefused
from catalogue.hub import Hub, open_hub
from catalogue.ingest.commit import current_version
from catalogue.meta.definitions import load_definitions, sync_definitions
from catalogue.meta.models import HarvestJob, HarvestSource
from catalogue.settings import PROJECT_ROOT, Settings
from harvesters.base import SourceSpec
from harvesters.guard import OutboundGuard, decoded_pieces, inside_reason, resolve
from harvesters.http_file import HttpFileHarvester
from harvesters.runner import harvest_source


NAME = "egovernment-services"
ALLOWED = ["127.0.0.1"]


Answer = Callable[[BaseHTTPRequestHandler, "Server"], None]


class Server:
    """A real HTTP server on ``host`` at a free port; ``answer(handler, server)`` writes each response."""

    def __init__(self, answer: Answer, host: str = "127.0.0.1") -> None:
        self.hits: list[str] = []
        self.sent = 0  # body bytes a dripping answer got out
        self.stop = threading.Event()  # set when the test is over: a waiting answer ends
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                server.hits.append(self.path)
                try:
                    answer(self, server)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the harvester hung up, as it should

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """A catalogue whose source NAME was harvested once from a loopback feed server."""
    root = tmp_path_factory.mktemp("guard")
    shutil.copytree(PROJECT_ROOT / "datasets" / "feeds", root / "feeds-root" / "feeds")
    with FeedServer(root / "feeds-root") as feeds:
        hub = open_hub(Settings(data_dir=root / "var", feed_base_url=feeds.url, harvest_allowed_hosts=ALLOWED))
        sync_definitions(hub, load_definitions(hub.settings.definitions_dir))
        assert harvest_source(hub, NAME).status == "published"
    yield hub
    hub.close()


def variant(hub: Hub, guard: OutboundGuard | None = None, **settings: Any) -> Hub:
    """``hub`` with other settings (and, if given, a harvester using ``guard``)."""
    changed = hub.settings.model_copy(update=settings)
    registry = copy.deepcopy(hub.registry)
    if guard is not None:
        class Guarded(HttpFileHarvester):
            def __init__(self, s: Settings) -> None:
                super().__init__(s, guard=guard)

        registry.register("harvesters", "http-file", Guarded)
    return dataclasses.replace(hub, settings=changed, registry=registry)


def harvest_fails(hub: Hub, url: str, code: str) -> str:
    """Harvest NAME from ``url``; assert it failed with ``code``, its job says so, and version 1 stayed."""
    before = current_version(hub, NAME)
    with hub.sessions.begin() as session:
        session.scalar(select(HarvestSource).where(HarvestSource.name == NAME)).url = url
    outcome = harvest_source(hub, NAME)
    assert (outcome.status, outcome.error_code) == ("failed", code), outcome.message
    with hub.sessions() as session:
        job = session.get(HarvestJob, outcome.job_id)
        assert job is not None
        assert (job.status, job.error_code, job.message) == ("failed", code, outcome.message.split(": ", 1)[1])
    after = current_version(hub, NAME)
    assert before is not None and after is not None
    assert (after.number, after.content_hash) == (before.number, before.content_hash) == (1, before.content_hash)
    assert list((hub.settings.data_dir / "incoming").glob(f"{NAME}-*")) == []  # no download left behind
    return outcome.message


# --- the total deadline ---------------------------------------------------------------------------------

def _drip(body: bytes, encoding: str | None) -> Answer:
    def answer(handler: BaseHTTPRequestHandler, server: Server) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        if encoding:
            handler.send_header("Content-Encoding", encoding)
        handler.end_headers()
        for byte in body:  # one byte a second; the body is short, so the server ends even if the harvester never did
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            server.sent += 1
            if server.stop.wait(1.0):
                return
    return answer


@pytest.mark.parametrize("encoding", [None, "gzip"], ids=["plain", "gzip-dripped"])
def test_a_dripping_source_stops_at_the_total_deadline(base: Hub, encoding: str | None) -> None:
    # A gzip body dripped byte by byte decodes to nothing for many reads: the deadline is checked on each read anyway.
    body = (b"id,name\n" + b"1,x\n" * 10) if encoding is None else zlib.compress(b"id,name\n" * 50, wbits=31)
    with Server(_drip(body[:30], encoding)) as server:
        message = harvest_fails(variant(base, harvest_deadline_s=2.0), server.url + "drip.csv", "harvest-deadline-exceeded")
        sent = server.sent
    assert "took longer than the harvest deadline of 2 s" in message
    assert "URBANDATA_HARVEST_DEADLINE_S" in message
    assert 0 < sent < 30  # stopped in the middle of the body, not by the server ending it


def test_a_source_that_never_sends_its_headers_stops_at_the_deadline_not_the_read_timeout(base: Hub) -> None:
    def silent(handler: BaseHTTPRequestHandler, server: Server) -> None:
        server.stop.wait(60)  # answers nothing until the test is over

    with Server(silent) as server:
        hub = variant(base, harvest_deadline_s=1.0, harvest_timeout_s=120.0)
        harvest_fails(hub, server.url + "silent.csv", "harvest-deadline-exceeded")
        assert server.hits == ["/silent.csv"]


# --- caps -----------------------------------------------------------------------------------------------

def test_a_gzip_bomb_stops_at_the_decoded_cap(base: Hub) -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = packer.compress(b"id,name\n") + b"".join(packer.compress(b"0" * (1 << 20)) for _ in range(64)) + packer.flush()
    assert len(bomb) < 200_000  # 64 MiB of text in well under 1 % of it

    def answer(handler: BaseHTTPRequestHandler, server: Server) -> None:
        handler.send_response(200)
        handler.send_header("Content-Encoding", "gzip")
        handler.send_header("Content-Length", str(len(bomb)))
        handler.end_headers()
        handler.wfile.write(bomb)

    with Server(answer) as server:
        message = harvest_fails(variant(base, harvest_max_decoded_bytes=1 << 20), server.url + "bomb.csv",
                                "feed-too-large")
    assert f"decompresses to more than {1 << 20} bytes" in message
    assert "URBANDATA_HARVEST_MAX_DECODED_BYTES" in message


# --- redirects ------------------------------------------------------------------------------------------

def test_a_redirect_loop_stops_at_the_redirect_limit(base: Hub) -> None:
    def loop(handler: BaseHTTPRequestHandler, server: Server) -> None:
        handler.send_response(302)
        handler.send_header("Location", "/b" if handler.path == "/a" else "/a")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    with Server(loop) as server:
        message = harvest_fails(variant(base, harvest_max_redirects=3), server.url + "a", "too-many-redirects")
    assert "redirected more than 3 times" in message
    assert server.hits == ["/a", "/b", "/a", "/b"]  # the first request and three redirects, no more


def _redirect_to(target: str) -> Answer:
    def answer(handler: BaseHTTPRequestHandler, server: Server) -> None:
        handler.send_response(302)
        handler.send_header("Location", target)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return answer


def _ok(handler: BaseHTTPRequestHandler, server: Server) -> None:
    body = b"fetched"
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.mark.parametrize("target, address", [
    ("http://127.0.0.2:{port}/feed.csv", "127.0.0.2"),
    ("http://localhost:{port}/feed.csv", None),  # 127.0.0.1 or ::1, whichever the resolver gives first
    ("http://[::ffff:127.0.0.1]:{port}/feed.csv", "::ffff:7f00:1 (127.0.0.1)"),
    ("http://2130706433:{port}/feed.csv", "127.0.0.1"),
    ("http://0x7f.1:{port}/feed.csv", "127.0.0.1"),
], ids=["127.0.0.2", "localhost", "ipv4-mapped", "decimal", "hex"])
def test_a_redirect_from_an_allowed_server_to_loopback_is_refused_before_connecting(
    base: Hub, target: str, address: str | None
) -> None:
    # A real server waits where the redirect points: had the guard let the harvest through, it would count a hit.
    inside_host = "127.0.0.2" if "127.0.0.2" in target else "127.0.0.1"
    with Server(_ok, host=inside_host) as inside, Server(_redirect_to(target.format(port=inside.port))) as origin:
        message = harvest_fails(base, origin.url + "feed.csv", "source-address-refused")
        assert (origin.hits, inside.hits) == (["/feed.csv"], [])
    assert "a loopback" in message and "URBANDATA_HARVEST_ALLOWED_HOSTS" in message
    if address:
        assert f"resolves to {address}," in message


class DialLog(httpcore.NetworkBackend):
    """A network backend that dials only the allow-listed loopback origin and fails the test on anything else."""

    def __init__(self) -> None:
        self.dialled: list[tuple[str, int]] = []
        self.real = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        self.dialled.append((host, port))
        if host != "127.0.0.1":
            raise AssertionError(f"the guard let a connection to {host}:{port} through")
        return self.real.connect_tcp(host, port, timeout, local_address, socket_options)


@pytest.mark.parametrize("target, reason", [
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://10.0.0.1/feed.csv", "private"),
    ("http://192.168.1.1/feed.csv", "private"),
    ("http://172.16.0.1/feed.csv", "private"),
    ("http://[fd00::1]/feed.csv", "private"),
    ("http://[fe80::1]/feed.csv", "link-local"),
], ids=["metadata", "10", "192.168", "172.16", "ula", "ipv6-link-local"])
def test_a_redirect_to_a_private_or_metadata_address_is_refused_and_never_dialled(
    base: Hub, target: str, reason: str
) -> None:
    dials = DialLog()
    guard = OutboundGuard.from_settings(base.settings, backend=dials)
    with Server(_redirect_to(target)) as origin:
        message = harvest_fails(variant(base, guard=guard), origin.url + "feed.csv", "source-address-refused")
        assert dials.dialled == [("127.0.0.1", origin.port)]
    assert f"a {reason} address" in message


def test_a_name_resolving_inside_is_refused_and_an_allowed_name_connects_to_the_address_checked(tmp_path: Path) -> None:
    # An injected resolver stands in for DNS: no name here exists anywhere, so a connection that arrives
    # can only have gone to the address the guard resolved and checked (pinned), never to a new lookup.
    answers = {"intern.example": "10.0.0.1", "feeds.example": "127.0.0.1"}

    def resolver(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address(answers[host])]

    dials = DialLog()
    settings = Settings(data_dir=tmp_path, harvest_allowed_hosts=["feeds.example"])
    guard = OutboundGuard.from_settings(settings, resolver=resolver, backend=dials)
    with Server(_ok) as server:
        harvester = HttpFileHarvester(settings, guard=guard)
        with pytest.raises(SourceRefused) as refused:
            harvester.fetch(SourceSpec("s", "d", f"http://intern.example:{server.port}/f.csv", "csv"))
        assert refused.value.details == {"host": "intern.example", "address": "10.0.0.1", "reason": "private"}
        assert dials.dialled == [] and server.hits == []
        delivery = harvester.fetch(SourceSpec("s", "d", f"http://feeds.example:{server.port}/f.csv", "csv"))
        assert delivery is not None and delivery.path is not None
        assert delivery.path.read_bytes() == b"fetched"  # the allowed name's answer
        assert dials.dialled == [("127.0.0.1", server.port)] and server.hits == ["/f.csv"]


def test_the_first_url_is_guarded_too(base: Hub) -> None:
    with Server(_ok, host="127.0.0.2") as inside:
        harvest_fails(base, inside.url + "feed.csv", "source-address-refused")
        assert inside.hits == []


# --- what counts as inside ------------------------------------------------------------------------------

@pytest.mark.parametrize("address, reason", [
    ("127.0.0.2", "loopback"), ("::1", "loopback"), ("10.0.0.1", "private"), ("192.168.1.1", "private"),
    ("172.16.0.1", "private"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("fd12::1", "private"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"), ("2002:a00:1::", "private"),
    ("0.0.0.0", "private"), ("224.0.0.1", "multicast"), ("100.64.0.1", "not globally reachable"),
    ("93.184.216.34", None), ("2606:4700:4700::1111", None), ("::ffff:93.184.216.34", None),
])
def test_inside_reason(address: str, reason: str | None) -> None:
    assert inside_reason(ipaddress.ip_address(address)) == reason


def test_numeric_hosts_resolve_to_the_address_they_encode() -> None:
    assert resolve("2130706433", 80) == [ipaddress.ip_address("127.0.0.1")]
    assert resolve("0x7f.1", 80) == [ipaddress.ip_address("127.0.0.1")]


def test_allow_list_entries_are_names_addresses_or_networks() -> None:
    guard = OutboundGuard.from_settings(Settings(harvest_allowed_hosts=["Feeds.Example.", "127.0.0.1", "10.1.0.0/16", "[::1]"]))
    assert [guard.allowed_host(h) for h in ("feeds.example", "127.0.0.1", "10.1.2.3", "::1", "[::1]")] == [True] * 5
    assert [guard.allowed_host(h) for h in ("localhost", "127.0.0.2", "2130706433", "::ffff:127.0.0.1", "10.2.0.1",
                                            "other.example")] == [False] * 6


# --- decoding in bounded pieces -------------------------------------------------------------------------

def test_a_gzip_bomb_is_decoded_in_bounded_pieces() -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = b"".join(packer.compress(b"0" * (1 << 20)) for _ in range(16)) + packer.flush()
    reads = [bomb[i:i + 65536] for i in range(0, len(bomb), 65536)]  # as the network hands them over
    sizes = [len(piece) for piece in decoded_pieces(reads, "gzip", piece=1 << 18)]
    assert (max(sizes), sum(sizes)) == (1 << 18, 16 << 20)  # httpx would hand out all 16 MiB of one read at once


@pytest.mark.parametrize("encoding, pack", [
    ("gzip", lambda data: zlib.compress(data, wbits=31)),
    ("deflate", lambda data: zlib.compress(data)),  # zlib-wrapped, as the RFC says
    ("deflate", lambda data: zlib.compress(data, wbits=-15)),  # raw, as some servers send it
    ("identity", lambda data: data),
    ("", lambda data: data),
], ids=["gzip", "deflate-zlib", "deflate-raw", "identity", "none"])
def test_encoded_bodies_decode_to_the_original(encoding: str, pack: Callable[[bytes], bytes]) -> None:
    original = b"".join(b"%d,Dienst %d\n" % (i, i) for i in range(20_000))
    packed = pack(original)
    reads = [packed[i:i + 1000] for i in range(0, len(packed), 1000)]
    assert b"".join(decoded_pieces(reads, encoding, piece=4096)) == original


@pytest.mark.parametrize("encoding, body, problem", [
    ("br", b"\x0b\x02\x80hello\x03", "Content-Encoding 'br', which harvests do not decode"),
    ("gzip", b"\x1f\x8b\x08\x00 this is not gzip at all", "gzip body is corrupt"),
])
def test_unknown_or_corrupt_encodings_are_a_malformed_feed(encoding: str, body: bytes, problem: str) -> None:
    with pytest.raises(MalformedFeed) as caught:
        b"".join(decoded_pieces([body], encoding))
    assert problem in caught.value.message


def test_a_gzip_feed_is_harvested_as_its_decoded_bytes(tmp_path: Path) -> None:
    original = (PROJECT_ROOT / "datasets" / "feeds" / f"{NAME}.csv").read_bytes()
    packed = zlib.compress(original, wbits=31)
    seen: list[str] = []

    def answer(handler: BaseHTTPRequestHandler, server: Server) -> None:
        seen.append(handler.headers.get("Accept-Encoding", ""))
        handler.send_response(200)
        handler.send_header("Content-Encoding", "gzip")
        handler.send_header("Content-Length", str(len(packed)))
        handler.end_headers()
        handler.wfile.write(packed)

    with Server(answer) as server:
        settings = Settings(data_dir=tmp_path, harvest_allowed_hosts=ALLOWED)
        delivery = HttpFileHarvester(settings).fetch(SourceSpec("s", "d", server.url + "f.csv", "csv"))
    assert delivery is not None and delivery.path is not None
    assert delivery.path.read_bytes() == original
    assert (delivery.provenance["delivery_bytes"], seen) == (len(original), ["gzip, deflate"])
