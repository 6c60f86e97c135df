"""The SQL endpoint under a full disk and under a flood (issue 12, suites that stay), against the real server
in a subprocess (tests/api/live_server.py) with its real worker processes.

- *Full disk*: the server runs with RLIMIT_FSIZE = 64 KB (SIGXFSZ ignored, so every write past it fails with
  EFBIG as a full disk fails with ENOSPC), inherited by its SQL workers. The workers' DuckDB never spills
  (``temp_directory = ''``) and a result goes to the client through a pipe and the socket, never a file: a
  query needing more than its memory answers 400 ``sql-resource-limit`` (not a disk error, not a 500), large
  results and sorts answer 200, nothing is left on disk, and the next query answers 200.
- *Flood*: clients sending expensive statements back to back, ignoring ``Retry-After``, while other clients
  measure ``/health``, a dataset page and records. The flood gets ``503 sql-busy`` with ``Retry-After``
  within a bound, and the cheap routes' p99 stays within a bound derived from the same routes measured
  just before without the flood (see :func:`cheap_bound_ms`). The figures are printed; RELIABILITY.md has them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import random
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.live_server import generated_catalogue, live_server

SQL = "/api/v1/sql"
DATASET = "/api/v1/datasets/generated"
ROWS = 20_000
FILE_LIMIT_BYTES = 64 * 1024  # as in test_disk_full.py: the parts are written before the server starts
MEMORY_LIMIT_MB = 64  # each worker's DuckDB: small, so the heavy statements below exceed it


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return generated_catalogue(tmp_path_factory.mktemp("sql-reliability"), ROWS)


def files_under(*roots: Path) -> set[str]:
    """Every file below ``roots`` (the catalogue's data, the server's working directory's DuckDB ``.tmp``)."""
    return {str(p) for root in roots if root.exists() for p in root.rglob("*") if p.is_file()}


# --- a full disk ------------------------------------------------------------------------------------------

# count(DISTINCT) over 3 million 32-character strings needs a hash table of a few hundred MiB: past
# memory_limit DuckDB would spill it to temp_directory, which the sandbox leaves empty (no spilling).
SPILLING = "SELECT count(DISTINCT md5(i::VARCHAR)) AS n FROM range(3000000) t(i)"


@pytest.fixture(scope="module")
def full_server(catalogue: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("sql-disk-full-log") / "server.log"
    settings = {**catalogue, "sql_memory_limit_mb": MEMORY_LIMIT_MB, "sql_time_limit_ms": 20_000}
    with live_server(settings, log, fsize=FILE_LIMIT_BYTES) as url:
        yield url


def _sandbox_copies(data_dir: Path) -> Path | None:
    """On object storage, the SQL sandbox's local copies of the parts (catalogue.store.local_copies), fetched
    now, as a query before the disk ran full would have: their directory. On local files: None (none needed)."""
    from catalogue.hub import open_hub
    from catalogue.meta.metadata import get_dataset
    from catalogue.settings import Settings
    from catalogue.store.keys import part_key
    from catalogue.store.local_copies import copies_dir, local_files

    hub = open_hub(Settings(data_dir=data_dir))
    try:
        with hub.sessions() as session:
            parts = get_dataset(session, "generated").current_version.parts  # type: ignore[union-attr]
        keys = tuple(part_key("generated", p["sha256"]) for p in parts)
        if hub.storage.local_path(keys[0]) is not None:
            return None
        local_files(hub.storage, hub.settings, keys)
        return copies_dir(hub.settings)
    finally:
        hub.close()


def test_sql_on_a_full_disk_answers_without_writing_and_recovers(full_server: str, catalogue: dict[str, Any]) -> None:
    roots = (Path(catalogue["data_dir"]), Path.cwd() / ".tmp")  # DuckDB's default spill directory is ./.tmp
    copies = _sandbox_copies(Path(catalogue["data_dir"]))
    before = files_under(*roots)
    with httpx.Client(base_url=full_server, timeout=120) as client:
        # Needs more memory than a worker may use: the memory limit, clearly, not a disk error nor a 500.
        heavy = client.post(SQL, json={"sql": SPILLING})
        assert (heavy.status_code, heavy.headers["content-type"]) == (400, "application/json"), heavy.text
        assert heavy.json()["error"]["code"] == "sql-resource-limit"
        assert heavy.json()["error"]["message"] == (
            f"The query needed more than the {MEMORY_LIMIT_MB} MiB of memory a SQL query may use, and was stopped. "
            "Filter or aggregate earlier, or return fewer columns.")
        # The pool recovered: the next query, a sort over 2 million rows and a result far larger than the
        # file-size limit (1,000 rows of the whole table) all answer 200.
        count = client.get(SQL, params={"sql": "SELECT count(*) AS n FROM generated"})
        assert count.status_code == 200 and count.json()["rows"] == [[ROWS]], count.text
        top = client.post(SQL, json={"sql": "SELECT g.id, r.i FROM generated g, range(100) r(i) "
                                            "ORDER BY md5(g.label || r.i::VARCHAR) LIMIT 5"})
        assert top.status_code == 200 and len(top.json()["rows"]) == 5, top.text
        whole = client.post(SQL, json={"sql": "SELECT * FROM generated ORDER BY id"})
        assert whole.status_code == 200 and len(whole.content) > FILE_LIMIT_BYTES, whole.text[:300]
        assert (whole.json()["row_count"], whole.json()["truncated"]) == (1000, True)
        # Twice more, so both workers have met the heavy statement; then they still answer.
        for _ in range(2):
            assert client.post(SQL, json={"sql": SPILLING}).json()["error"]["code"] == "sql-resource-limit"
        again = client.get(SQL, params={"sql": "SELECT max(id) AS m FROM generated"})
        assert again.status_code == 200 and again.json()["rows"] == [[ROWS - 1]], again.text
        assert client.get("/health").json()["status"] == "ok"
        assert files_under(*roots) == before  # no spill file, no result file, nothing new in the catalogue
        if copies is not None:  # object storage: without its copies, a query needs room to fetch them again
            shutil.rmtree(copies)
            refused = client.get(SQL, params={"sql": "SELECT count(*) AS n FROM generated"})
            assert (refused.status_code, refused.json()["error"]["code"]) == (507, "insufficient-storage"), \
                refused.text
            assert refused.json()["error"]["message"].startswith("The server's disk is full, so the parts this query")
            assert not copies.exists() or not files_under(copies)  # nothing half-fetched left behind


# --- a flood ----------------------------------------------------------------------------------------------

FLOOD_CLIENTS = 24
CHEAP_CLIENTS = 6
QUIET_S = float(os.environ.get("URBANDATA_SQL_FLOOD_QUIET_SECONDS", "6"))
FLOOD_S = float(os.environ.get("URBANDATA_SQL_FLOOD_SECONDS", "12"))
SQL_DEADLINE_MS = 10_000  # each flood statement holds a worker this long, then answers 400 query-timeout
BUSY_WAIT_MS = 100
# Interruptible and endless: it runs until its deadline.
EXPENSIVE = "SELECT count(*) AS n FROM range(10000000000) t(i) WHERE hash(i) % 7 = 0"
CHEAP_K = 6  # the flood may make the cheap routes' p99 at most this many times slower ...
CHEAP_FLOOR_MS = 2_000.0  # ... or this, whichever is larger
# A 503 waits sql_busy_wait_ms (100 ms) for a worker; a request queued behind the flood statements would
# wait for one to end (up to 10 s, 5 s on average). The rest is the flood clients' own loop on a busy machine
# (measured p99: 1.7 s at a load average of 90; before the admission fix 2.2 to 2.4 s).
BUSY_BOUND_MS = 3_000.0


def cheap_bound_ms(quiet_p99_ms: float) -> float:
    """The bound on the cheap routes' p99 during the flood: ``max(CHEAP_K × quiet p99, CHEAP_FLOOR_MS)``.

    Measured just before on the same server, so a loaded machine raises it for both phases. If the flood
    blocked the event loop (a statement run on it) or the threads the synchronous routes need, a cheap
    request arriving during a flood statement would wait for it: up to SQL_DEADLINE_MS (10 s), so the p99
    (of a phase in which the two workers run flood statements all the time) would be several seconds, far above
    the floor of 2 s (measured: the cheap clients timed out at 60 s). The factor of 6 is the CPU the flood takes:
    two workers of two DuckDB threads each, at the server's priority, on a machine of 2 cores leave the server
    about a fifth of the CPU it had (measured: 4.7 to 8 times slower before the admission fix, 5.4 after).
    """
    return max(CHEAP_K * quiet_p99_ms, CHEAP_FLOOR_MS)


def _cheap_path(rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(["health", "dataset", "records"])
    if kind == "health":
        return kind, "/health"
    if kind == "dataset":
        return kind, DATASET
    # Random filters: part of the requests miss the result cache and run a query.
    return kind, f"{DATASET}/records?where=id > {rng.randint(0, ROWS)}&order_by=id&limit=10"


async def _cheap_client(client: httpx.AsyncClient, seed: int, until: float, samples: dict[str, list[float]],
                        failures: list[str]) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        kind, path = _cheap_path(rng)
        start = time.perf_counter()
        try:
            response = await client.get(path)
        except httpx.TimeoutException:  # 60 s: what a flood run on the event loop leads to
            failures.append(f"timeout {path}")
            continue
        samples[kind].append(time.perf_counter() - start)
        if response.status_code != 200:
            failures.append(f"{response.status_code} {path} {response.text[:200]}")


async def _flood_client(client: httpx.AsyncClient, until: float, busy_ms: list[float], outcomes: Counter[str],
                        failures: list[str]) -> None:
    # A rude client: the next statement as soon as an answer arrives, whatever Retry-After says.
    while time.monotonic() < until:
        start = time.perf_counter()
        response = await client.post(SQL, json={"sql": EXPENSIVE})
        elapsed = time.perf_counter() - start
        code = response.json().get("error", {}).get("code", "ok") if response.content else "empty"
        outcomes[f"{response.status_code} {code}"] += 1
        if (response.status_code, code) == (503, "sql-busy"):
            busy_ms.append(elapsed * 1000)
            if response.headers.get("retry-after") != str(SQL_DEADLINE_MS // 1000):
                failures.append(f"503 without Retry-After {SQL_DEADLINE_MS // 1000}: {dict(response.headers)}")
        elif (response.status_code, code) != (400, "query-timeout"):
            failures.append(f"{response.status_code} {response.text[:200]}")


@contextlib.asynccontextmanager
async def _clients(url: str, count: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """``count`` clients made before any is timed: making one (its TLS context) takes tens of ms of the loop
    the others' requests are timed on (seen as a 1.8 s first answer for the 24th flood client)."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=60)) for _ in range(count)]


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def run_flood(url: str, seconds: float) -> tuple[dict[str, int], list[float], list[str]]:
    """The flood, run in a process of its own (so its clients do not slow the measuring clients' loop):
    the answers by status and code, the latencies of the 503s in ms, and the unexpected answers."""
    busy_ms: list[float] = []
    outcomes: Counter[str] = Counter()
    failures: list[str] = []

    async def run() -> None:
        async with _clients(url, FLOOD_CLIENTS) as clients:
            until = time.monotonic() + seconds
            await asyncio.gather(*(_flood_client(c, until, busy_ms, outcomes, failures) for c in clients))

    asyncio.run(run())
    return dict(outcomes), busy_ms, failures


def _phase(url: str, seconds: float, with_flood: bool) -> dict[str, Any]:
    samples: dict[str, list[float]] = defaultdict(list)
    failures: list[str] = []

    async def run() -> None:
        async with _clients(url, CHEAP_CLIENTS) as clients:
            until = time.monotonic() + seconds
            await asyncio.gather(*(_cheap_client(c, seed, until, samples, failures) for seed, c in enumerate(clients)))

    outcomes: dict[str, int] = {}
    busy_ms: list[float] = []
    if with_flood:
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            flooding = pool.submit(run_flood, url, seconds)
            asyncio.run(run())
            outcomes, busy_ms, flood_failures = flooding.result(timeout=seconds + 120)
        failures += flood_failures
    else:
        asyncio.run(run())
    every = [1000 * s for values in samples.values() for s in values]
    return {
        "cheap": {"n": len(every), "p50_ms": _ms(every, 0.5), "p99_ms": _ms(every, 0.99)},
        "by_route": {k: {"n": len(v), "p50_ms": _ms([1000 * s for s in v], 0.5),
                         "p99_ms": _ms([1000 * s for s in v], 0.99)} for k, v in sorted(samples.items())},
        "flood": {"outcomes": outcomes, "busy_p50_ms": _ms(busy_ms, 0.5) if busy_ms else None,
                  "busy_p99_ms": _ms(busy_ms, 0.99) if busy_ms else None},
        "failures": failures,
    }


@pytest.fixture(scope="module")
def flood_server(catalogue: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("sql-flood-log") / "server.log"
    settings = {**catalogue, "sql_time_limit_ms": SQL_DEADLINE_MS, "sql_busy_wait_ms": BUSY_WAIT_MS}
    with live_server(settings, log) as url:
        yield url


@pytest.mark.slow
@pytest.mark.timeout(QUIET_S + FLOOD_S + 240)
def test_a_sql_flood_is_shed_fast_and_cheap_routes_keep_their_p99(flood_server: str) -> None:
    # Warm up (the workers start on the first statement; the first records query plans and opens parts).
    with httpx.Client(base_url=flood_server, timeout=120) as client:
        assert client.get(SQL, params={"sql": "SELECT 1 AS one"}).status_code == 200
        assert client.get(f"{DATASET}/records?limit=1").status_code == 200
    quiet = _phase(flood_server, QUIET_S, with_flood=False)
    flood = _phase(flood_server, FLOOD_S, with_flood=True)
    bound = cheap_bound_ms(quiet["cheap"]["p99_ms"])
    print("\nsql flood:", json.dumps({"quiet": quiet, "flood": flood, "cheap_bound_ms": bound}, indent=1))
    assert quiet["failures"] == [] and flood["failures"] == []
    outcomes = flood["flood"]["outcomes"]
    assert outcomes.get("503 sql-busy", 0) > FLOOD_CLIENTS  # the flood was shed, not queued
    assert outcomes.get("400 query-timeout", 0) >= 2  # and the workers ran flood statements meanwhile
    assert flood["flood"]["busy_p99_ms"] <= BUSY_BOUND_MS
    assert flood["cheap"]["n"] >= CHEAP_CLIENTS and flood["cheap"]["p99_ms"] <= bound
    # Afterwards a statement gets a worker again.
    with httpx.Client(base_url=flood_server, timeout=120) as client:
        answer = client.get(SQL, params={"sql": "SELECT count(*) AS n FROM generated"})
        assert answer.status_code == 200 and answer.json()["rows"] == [[ROWS]]
