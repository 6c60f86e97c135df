"""A bounded HTTP load generator: fixed concurrency, fixed duration, loopback only.

``wrk`` is used when it is installed (C, so the generator is never the
bottleneck); otherwise this module's own asyncio client runs in a second
process (``python -m bench.loadgen URL --concurrency C --duration S``):
keep-alive HTTP/1.1 connections, each sending one request after the other.

Given several URLs (one server), every request picks one at random from a
seeded generator (wrk: a Lua script with ``math.randomseed``), so a load asks
many different questions in a sequence that is the same on every run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import tempfile
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bench.measure import bench_pythonpath

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class LoadResult:
    """Requests per second over the run, with failures and median latency."""

    tool: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float

    @property
    def rps(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0


def _check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK and not host.startswith("127."):
        raise ValueError(f"load is only ever sent to loopback addresses, not {host!r}")


async def _client(host: str, port: int, targets: list[str], seed: int, deadline: float, latencies: list[float],
                  errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    requests = [f"GET {t} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\n\r\n".encode() for t in targets]
    pick = random.Random(seed)
    try:
        while time.perf_counter() < deadline:
            request = requests[pick.randrange(len(requests))]
            started = time.perf_counter()
            writer.write(request)
            await writer.drain()
            status_line = (await reader.readline()).split()
            if not status_line:  # the server closed an idle connection: open another
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            status = int(status_line[1])
            length, chunked, close = 0, False, status_line[0] == b"HTTP/1.0"
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                name, value = name.strip().lower(), value.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "transfer-encoding" and "chunked" in value:
                    chunked = True
                elif name == "connection":
                    close = value == "close"
            if chunked:
                while True:
                    size = int((await reader.readline()).split(b";")[0], 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            elif length:
                await reader.readexactly(length)
            elif close:
                await reader.read()  # no length: the body ends with the connection
            latencies.append(time.perf_counter() - started)
            if status >= 400:
                errors.append(status)
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


def _target(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def _run(urls: list[str], concurrency: int, duration_s: float, seed: int = 0) -> LoadResult:
    parts = urlsplit(urls[0])
    targets = [_target(u) for u in urls]
    latencies: list[float] = []
    errors: list[int] = []
    started = time.perf_counter()
    deadline = started + duration_s
    await asyncio.gather(*(_client(parts.hostname or "127.0.0.1", parts.port or 80, targets, seed + i, deadline,
                                   latencies, errors) for i in range(concurrency)))
    seconds = time.perf_counter() - started
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000 if latencies else 0.0
    return LoadResult("asyncio", len(latencies), len(errors), seconds, p50)


def wrk_script(urls: list[str], seed: int) -> str:
    """A wrk Lua script sending each request to one of ``urls``' paths, picked by a seeded generator."""
    paths = ",\n".join(json.dumps(_target(u)) for u in urls)  # JSON strings are valid Lua strings here (ASCII)
    return (f"math.randomseed({int(seed)})\nlocal paths = {{\n{paths}\n}}\n"
            "request = function()\n  return wrk.format(\"GET\", paths[math.random(#paths)])\nend\n")


def _wrk(urls: list[str], concurrency: int, duration_s: float, seed: int) -> LoadResult:
    wrk = shutil.which("wrk")
    assert wrk is not None
    seconds = max(1, round(duration_s))
    command = [wrk, "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "30s", "--latency"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(wrk_script(urls, seed))
    try:
        if len(urls) > 1:
            command += ["-s", script.name]
        out = subprocess.run(command + [urls[0]], capture_output=True, text=True, timeout=seconds + 60,
                             check=True).stdout
    finally:
        os.unlink(script.name)
    total = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if total is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    elapsed = float(total.group(2)) * (0.001 if total.group(3) == "ms" else 1)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return LoadResult("wrk", int(total.group(1)), errors, elapsed,
                      float(p50.group(1)) * scale[p50.group(2)] if p50 else 0.0)


def load(url: str | list[str], concurrency: int, duration_s: float, prefer_wrk: bool = True,
         seed: int = 0) -> LoadResult:
    """Send GETs from ``concurrency`` connections for ``duration_s`` seconds, from another process.

    ``url``: one URL, or a list on one server, each request picking one by a generator seeded with ``seed``.
    """
    urls = [url] if isinstance(url, str) else list(url)
    for u in urls:
        _check_loopback(u)
    if prefer_wrk and shutil.which("wrk"):
        return _wrk(urls, concurrency, duration_s, seed)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as listing:
        json.dump(urls, listing)
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "bench.loadgen", urls[0], "--urls", listing.name, "--seed", str(seed),
             "--concurrency", str(concurrency), "--duration", str(duration_s)],
            capture_output=True, text=True, timeout=duration_s + 120, check=True,
            env={**os.environ, "PYTHONPATH": bench_pythonpath()},
        )
    finally:
        os.unlink(listing.name)
    data = json.loads(completed.stdout.strip().splitlines()[-1])
    return LoadResult(**data)


def ensure_wrk() -> str:
    """Install wrk from Debian's packages when missing and we may (root, apt-get present); returns how it went."""
    if shutil.which("wrk"):
        return "wrk found"
    apt = shutil.which("apt-get")
    if not apt or os.geteuid() != 0:
        return "wrk not installed (no apt-get or not root): using the asyncio load generator"
    try:
        subprocess.run([apt, "install", "-y", "-q", "wrk"], capture_output=True, timeout=300, check=True)
    except (subprocess.SubprocessError, OSError):
        return "apt-get install wrk failed: using the asyncio load generator"
    return "wrk installed with apt-get" if shutil.which("wrk") else "wrk unavailable: using the asyncio load generator"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--urls", default="", help="JSON file listing the URLs to pick from (default: url alone)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    urls = json.loads(open(args.urls, encoding="utf-8").read()) if args.urls else [args.url]
    for u in urls:
        _check_loopback(u)
    result = asyncio.run(_run(urls, args.concurrency, min(args.duration, 600), args.seed))
    out: dict[str, Any] = {k: getattr(result, k) for k in ("tool", "requests", "errors", "seconds", "p50_ms")}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
