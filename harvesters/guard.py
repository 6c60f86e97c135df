"""The outbound guard of harvests: only public addresses, a total deadline, a redirect limit.

A harvest URL, and every redirect hop, may only reach addresses on the public internet unless
the operator allow-lists the host (``harvest_allowed_hosts``). The check runs on the address the
name *resolves to*, at connect time, inside the HTTP client's network backend: the connection is
then opened to exactly that checked address, so a DNS answer that changes between check and
connect (DNS rebinding) cannot slip an inside address in. Numeric hosts (``2130706433``,
``0x7f.1``), IPv4-mapped IPv6 (``::ffff:127.0.0.1``) and names resolving inside all resolve to
an inside address and are refused like the address itself.
"""

from __future__ import annotations

import ipaddress
import socket
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx

from catalogue.errors import HarvestDeadlineExceeded, MalformedFeed, SourceRefused
from catalogue.settings import Settings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[IpAddress]]


def resolve(host: str, port: int) -> list[IpAddress]:
    """Every address ``host`` resolves to (the system resolver, TCP)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # The scope of a link-local IPv6 answer (fe80::1%eth0) is dropped: such an address is refused anyway.
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))


def inside_reason(address: IpAddress) -> str | None:
    """Why ``address`` is inside the network (``"loopback"``, ``"private"``...), or None when it is public."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return inside_reason(embedded)
    for reason, flag in (("loopback", address.is_loopback), ("link-local", address.is_link_local),
                         ("private", address.is_private), ("multicast", address.is_multicast),
                         ("unspecified", address.is_unspecified), ("reserved", address.is_reserved)):
        if flag:
            return reason
    # is_global also excludes the shared address space of carrier NAT (100.64.0.0/10) and similar.
    return None if address.is_global else "not globally reachable"


def _embedded_ipv4(address: IpAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (IPv4-mapped, 6to4, Teredo), which is where it leads."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


@dataclass(frozen=True)
class OutboundGuard:
    """Which hosts a harvest may reach; ``resolver`` and ``backend`` can be swapped in tests."""

    allowed_names: frozenset[str] = frozenset()
    allowed_networks: tuple[IpNetwork, ...] = ()
    resolver: Resolver = resolve
    backend: httpcore.NetworkBackend = field(default_factory=httpcore.SyncBackend)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> OutboundGuard:
        """The guard for ``settings.harvest_allowed_hosts``."""
        names, networks = set(), []
        for entry in settings.harvest_allowed_hosts:
            try:
                networks.append(ipaddress.ip_network(entry.strip().strip("[]"), strict=False))
            except ValueError:
                names.add(_normal_host(entry))
        return cls(frozenset(names), tuple(networks), **overrides)

    def allowed_host(self, host: str) -> bool:
        """Whether the operator allow-listed ``host`` as written in the URL."""
        host = _normal_host(host)
        if host in self.allowed_names:
            return True
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(literal in network for network in self.allowed_networks)

    def addresses(self, host: str, port: int) -> list[IpAddress]:
        """The addresses to connect to for ``host``; raises SourceRefused when any of them is inside."""
        try:
            found = self.resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not found:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        if self.allowed_host(host):
            return found
        for address in found:
            reason = inside_reason(address)
            if reason is not None:
                embedded = _embedded_ipv4(address)
                shown = f"{address} ({embedded})" if embedded is not None else str(address)
                raise SourceRefused(
                    f"The harvest was refused before connecting: {host} resolves to {shown}, a {reason} address "
                    "inside the network, which harvests may not reach. If this source is trusted, add its host to "
                    "URBANDATA_HARVEST_ALLOWED_HOSTS.",
                    details={"host": host, "address": str(address), "reason": reason},
                )
        return found


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network backend that resolves and checks each host, then connects to a checked address."""

    def __init__(self, guard: OutboundGuard) -> None:
        self.guard = guard

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        last: Exception | None = None
        for address in self.guard.addresses(host, port):
            try:
                # The checked address itself, never the name again: nothing can re-resolve it elsewhere.
                return self.guard.backend.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        raise SourceRefused("Harvests do not connect to Unix sockets.")

    def sleep(self, seconds: float) -> None:
        self.guard.backend.sleep(seconds)


class Deadline:
    """The total time one harvest download may take."""

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds, self.what = seconds, what
        self.ends = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left (0 when past)."""
        return max(0.0, self.ends - time.monotonic())

    def backoff(self, seconds: float) -> None:
        """Wait ``seconds`` before a retry (never past the deadline; then ``check`` raises)."""
        time.sleep(min(seconds, self.remaining()))
        self.check()

    def check(self, slack: float = 0.0) -> None:
        """Raise HarvestDeadlineExceeded once the deadline has passed (or is at most ``slack`` seconds away)."""
        if self.ends - time.monotonic() <= slack:
            raise HarvestDeadlineExceeded(
                f"{self.what} took longer than the harvest deadline of {self.seconds:g} s and was stopped; "
                "nothing was published. If the source is slow but sound, raise URBANDATA_HARVEST_DEADLINE_S.",
                details={"deadline_s": self.seconds},
            )


def guarded_client(settings: Settings, deadline: Deadline, guard: OutboundGuard | None = None) -> httpx.Client:
    """An httpx client whose every connection passes the guard, with the redirect limit and the deadline.

    Each hop's timeouts are cut to the time left, so no single wait outlasts the deadline; between reads
    of the body the caller checks ``deadline`` (httpx's timeouts are per read, not per download).
    """
    guard = guard or OutboundGuard.from_settings(settings)
    transport = httpx.HTTPTransport(trust_env=False)
    # httpx takes no network backend; its pool is rebuilt with ours (the same defaults otherwise).
    transport._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(), max_connections=10,
                                              network_backend=GuardedBackend(guard))

    def before_each_hop(request: httpx.Request) -> None:
        deadline.check()
        wait = min(settings.harvest_timeout_s, max(deadline.remaining(), 0.001))
        request.extensions = {**request.extensions, "timeout": httpx.Timeout(wait).as_dict()}

    return httpx.Client(transport=transport, follow_redirects=True, max_redirects=settings.harvest_max_redirects,
                        trust_env=False, event_hooks={"request": [before_each_hop]})


class WatchedStream(httpx.SyncByteStream):
    """A response body that checks the deadline and the byte cap after every read from the network.

    It sits below httpx's decoding, so it counts bytes as received and sees every read, also
    those that decode to nothing yet (a gzip body dripped one byte at a time).
    """

    def __init__(self, inner: httpx.SyncByteStream, deadline: Deadline, max_bytes: int,
                 too_large: Callable[[int], Exception]) -> None:
        self.inner, self.deadline, self.max_bytes, self.too_large = inner, deadline, max_bytes, too_large

    def __iter__(self) -> Iterator[bytes]:
        received = 0
        for chunk in self.inner:
            self.deadline.check()
            received += len(chunk)
            if received > self.max_bytes:
                raise self.too_large(received)
            yield chunk

    def close(self) -> None:
        self.inner.close()


ACCEPT_ENCODING = "gzip, deflate"  # the encodings decoded_pieces undoes; asked for explicitly
PIECE_BYTES = 1 << 20


def decoded_pieces(raw: Iterable[bytes], encoding: str, piece: int = PIECE_BYTES) -> Iterator[bytes]:
    """The body undone from its Content-Encoding, in pieces of at most ``piece`` bytes.

    httpx decodes each network read whole, so 64 KiB of a gzip bomb become 64 MiB in memory at once;
    here zlib never hands out more than ``piece`` bytes at a time and memory stays flat whatever the
    ratio, while the caller counts the pieces against its cap.
    """
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        yield from raw
        return
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise MalformedFeed(
            f"The source sent its body with Content-Encoding '{encoding}', which harvests do not decode "
            f"(they ask for {ACCEPT_ENCODING}). Ask the publisher to serve it uncompressed, gzip or deflate.",
            details={"content_encoding": encoding},
        )
    gzip = encoding != "deflate"
    decoder = zlib.decompressobj(zlib.MAX_WBITS | 16 if gzip else zlib.MAX_WBITS)
    first = True
    try:
        for data in raw:
            if first and not gzip and data:
                try:  # deflate is meant to be zlib-wrapped; some servers send it raw (as httpx, accept both)
                    zlib.decompressobj().decompress(data[:2])
                except zlib.error:
                    decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                first = False
            while True:
                out = decoder.decompress(data, piece)
                if out:
                    yield out
                data = decoder.unconsumed_tail
                if not data and len(out) < piece:
                    break
        tail = decoder.flush()
    except zlib.error as exc:
        raise MalformedFeed(
            f"The source's {encoding} body is corrupt ({exc}); ask the publisher to check the feed.",
            details={"content_encoding": encoding},
        ) from exc
    if tail:
        yield tail
