"""Guards against rot in the benchmark suite (bench/) and the pieces it brought: search, incremental site builds.

The bench runs end to end on tiny data (20,000 rows, one repeat, 1-second
load runs with the asyncio load generator): no timing is asserted, only that
every section is reported and every ratio is a number.
"""

from __future__ import annotations

import json
import math
import random
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from catalogue.hub import open_hub
from catalogue.schema.model import TableSchema
from catalogue.meta.search import search_datasets
from catalogue.settings import Settings
from catalogue.sitegen.builder import SiteBuilder, build_site
from tests.catalogue.seaweed_server import seaweed  # noqa: F401 - the real SeaweedFS fixture

BENCH_EXTRA = ("polars", "datasette", "sqlite_utils", "psycopg", "psutil")  # pip install -e ".[bench]"
NUMBER = r"-?[\d,]+(?:\.\d+)?"


@pytest.mark.slow
@pytest.mark.timeout(900)  # every phase, the new harvest, live and catalogue ones included
@pytest.mark.embedded_only("the bench sets up each backend it measures itself (phase 16: PostgreSQL and SeaweedFS); "
                           "its servers, started from the production run's environment, would serve catalogues "
                           "other than the ones it built")
def test_the_bench_runs_end_to_end_on_tiny_data(tmp_path: Path) -> None:
    for name in BENCH_EXTRA:
        pytest.importorskip(name)
    from bench.__main__ import main
    from bench.report import SECTIONS

    out, facts_file = tmp_path / "BENCHMARKS.md", tmp_path / "facts.json"
    main(["--rows", "20000", "--repeat", "1", "--http-seconds", "1", "--concurrency", "2", "--no-wrk",
          "--no-install", "--catalogue-sizes", "20,40", "--search-sizes", "40,80", "--workdir", str(tmp_path),
          "--output", str(out), "--facts", str(facts_file)])
    text = out.read_text(encoding="utf-8")
    run = json.loads(facts_file.read_text(encoding="utf-8"))
    for heading in ["## Targets", "## Machine", "## Versions"] + [f"## {title}" for _, title, _ in SECTIONS]:
        assert heading in text, heading
    assert "Skipped" not in text, text  # every phase ran
    targets = text.split("## Targets", 1)[1].split("## Peers as deployed", 1)[0]
    rows = [line for line in targets.splitlines()
            if line.startswith("| ") and not line.startswith(("| section", "| ---"))]
    assert len(rows) >= 20
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        measured = re.fullmatch(rf"({NUMBER})(?:×| %| MiB)", cells[2])
        assert measured, row
        assert math.isfinite(float(measured.group(1).replace(",", "")))
        assert cells[5] in ("PASS", "**FAIL**", "*unstable*"), row
    assert "every engine agrees" in text
    assert sorted(tmp_path.iterdir()) == [out, facts_file]  # the bench's own temp directory is gone
    _assert_peers_as_deployed(run, text)
    _assert_backends_as_configured(run)


def _assert_backends_as_configured(run: dict[str, Any]) -> None:
    """Phase 16 measured what it says: PostgreSQL searched, parts read from the object store, 1 and 2 workers."""
    facts = run["facts"]
    assert facts["backends_search_dialects"] == {"sqlite": "sqlite", "postgres": "postgresql"}
    assert facts["backends_area_uses_gist"] is True
    assert facts["backends_storage"] == {"local": "local", "s3": "s3"}
    assert facts["backends_part_schemes"] == {"local": ["path"], "s3": ["s3"]}
    assert facts["backends_ingest_database"].startswith("postgresql")
    assert facts["backends_ingest_worker_pids"] == {"1": 1, "2": 2}  # the two-worker side ran on two processes
    labels = [t["label"] for t in run["targets"] if t["section"] == "backends"]
    assert len(labels) == 3 and "2 workers / 1 worker" in labels[-1]
    assert {"backends.ingest.workers1", "backends.ingest.workers2", "backends.records.groupby.s3"} \
        <= set(run["figures"])
    assert "backends" in run["loads"]


def _assert_peers_as_deployed(run: dict[str, Any], text: str) -> None:
    """The peers are configured as their users deploy them, and our headline is the uncached path (issue 14)."""
    from bench.peers import DBA_INDEXES

    facts = run["facts"]
    plain, inspected = facts["datasette_commands"]
    assert "-i" in plain and "--inspect-file" not in plain
    assert "-i" in inspected and Path(inspected[inspected.index("--inspect-file") + 1]).name == "inspect-data.json"
    dba = {tuple(cols) for cols in DBA_INDEXES}
    assert dba <= {tuple(cols) for cols in facts["postgres_indexes"]}
    assert {("_id",), ("_full_text",)} <= {tuple(cols) for cols in facts["postgres_indexes"]}  # CKAN's own
    assert dba == {tuple(cols) for cols in facts["sqlite_indexes"]}
    # Our caches were off in the headline: result cache and memos off, every checked answer a miss.
    assert facts["headline_env"] == {"URBANDATA_RESULT_CACHE_MB": "0", "URBANDATA_READ_MEMOS": "false"}
    assert facts["headline_memos_on"] is False and facts["questions_drawn"] > 20
    assert facts["headline_x_cache"] == ["miss", "miss"]
    keys = set(run["figures"])
    for page in ("first", "filtered"):  # both Datasettes measured, and our cached rows apart
        assert {f"http.{page}.ours", f"http.{page}.ds", f"http.{page}.dsi", f"http.{page}.ours_cached"} <= keys
    for name in ("point", "groupby", "topn", "count"):
        assert {f"q.{name}.pg", f"q.{name}.pgidx", f"q.{name}.sqlite", f"q.{name}.sqliteidx", f"q.{name}.polars",
                f"q.{name}.cached"} <= keys
    labels = [t["label"] for t in run["targets"]]
    assert not any("extrapolated" in label or "arrival" in label for label in labels)
    assert any("frictionless" in label and "same" in label for label in labels)
    assert any("combine counted" in label for label in labels) and any("rows/s" in label for label in labels)
    memory = next(t for t in run["targets"] if t["section"] == "memory")
    assert memory["threshold"] <= 128  # a limit smaller than the data, plus the stated slack
    assert set(run["loads"]) >= {"ingest", "queries", "http", "catalogue", "pruning"}
    assert "## Peers as deployed" in text and "## Load average during each phase" in text


def test_the_synthetic_history_is_deterministic(tmp_path: Path) -> None:
    from bench.data import Shape, table_schema, write_csv

    shape = Shape.of(3000)
    first = write_csv(tmp_path / "a.csv", shape, "german").read_bytes()
    second = write_csv(tmp_path / "b.csv", shape, "german").read_bytes()
    assert first == second
    lines = first.decode("cp1252").splitlines()
    assert lines[0] == ";".join(f["name"] for f in table_schema("german")["fields"])
    assert len(lines) == 3001
    assert re.fullmatch(r"S00000;L0000;Altstadt;05\.01\.2026 00:00;\d+;\d+;9,900000;53,500000", lines[1])


def test_the_ckan_table_holds_what_ckans_trigger_would_have_written(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    from bench.data import Shape, write_csv
    from bench.peers import CKAN_FULL_TEXT, COLUMNS, DBA_INDEXES, CkanTable

    csv = write_csv(tmp_path / "parking.csv", Shape.of(5000), "international")
    table = CkanTable(f"test_ckan_{id(tmp_path)}")
    try:
        table.load(csv)
        cols = ", ".join(f'"{c}"' for c in COLUMNS)
        rows, distinct_ids, empty = table.con.execute(
            f"SELECT count(*), count(DISTINCT _id), count(*) FILTER (WHERE length(_full_text) = 0) FROM {table.table}"
        ).fetchone()
        (differing,) = table.con.execute(
            f"SELECT count(*) FROM (SELECT _full_text AS __stored, {cols} FROM {table.table}) AS r "
            f"WHERE __stored IS DISTINCT FROM {CKAN_FULL_TEXT}").fetchone()
        (sample,) = table.con.execute(f"SELECT _full_text::text FROM {table.table} WHERE sensor_id = 'S00003' "
                                      "ORDER BY timestamp LIMIT 1").fetchone()
        as_ckan_loads = table.index_columns()
        table.add_dba_indexes()
        with_dba = table.index_columns()
        plan = "\n".join(r[0] for r in table.con.execute(
            f"EXPLAIN SELECT * FROM {table.table} WHERE \"timestamp\" = '2026-01-05T12:00:00' "
            "ORDER BY free DESC LIMIT 10").fetchall())
    finally:
        table.drop()
    assert (rows, distinct_ids, empty, differing) == (5000, 5000, 0, 0)
    assert as_ckan_loads == [("_full_text",), ("_id",)]
    assert with_dba == sorted([("_full_text",), ("_id",), *DBA_INDEXES])
    assert "parking_timestamp" in plan  # the top-10 at one time uses the DBA's (timestamp) index
    assert "'s00003'" in sample and "'t00'" in sample  # the timestamp in JSON's ISO form (…T00:00:00)


def test_loadgen_measures_a_real_server_and_refuses_other_hosts(tmp_path: Path) -> None:
    pytest.importorskip("psutil")
    from bench.loadgen import _check_loopback, load, wrk_script
    from bench.servers import Server, free_port

    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    log = tmp_path / "access.log"
    with Server("http.server", command, port, "/", log=log) as server:
        result = load(server.url + "/", concurrency=2, duration_s=1, prefer_wrk=False)
        urls = [f"{server.url}/?question={i}" for i in range(20)]
        varied = load(urls, concurrency=2, duration_s=1, prefer_wrk=False, seed=7)
    assert result.tool == "asyncio" and result.requests > 0 and result.errors == 0
    assert varied.requests > 20 and varied.errors == 0
    asked = set(re.findall(r"GET /\?question=(\d+) ", log.read_text(encoding="utf-8")))
    assert len(asked) > 10  # each request picks one of the URLs
    script = wrk_script(urls, 7)
    assert script.startswith("math.randomseed(7)") and script.count("/?question=") == 20
    with pytest.raises(ValueError):
        _check_loopback("http://192.168.1.10/")
    with pytest.raises(ValueError):
        load(["http://127.0.0.1:1/", "http://10.0.0.1/"], concurrency=1, duration_s=1, prefer_wrk=False)


@pytest.fixture
def big_catalogue(tmp_path: Path) -> Any:
    from bench.catalogue_data import grow_catalogue

    hub = open_hub(Settings(data_dir=tmp_path / "var"))
    grow_catalogue(hub, 0, 1200)
    yield hub
    hub.close()


def test_search_matches_every_word_case_insensitively(big_catalogue: Any) -> None:
    with big_catalogue.sessions() as session:
        everything = search_datasets(session, "Luftqualität", 1000, 0)
        assert everything.total > 0
        for d in everything.datasets:
            assert "luftqualität" in (d.title + d.description).lower()
        upper = search_datasets(session, "LUFTQUALITÄT", 1000, 0)
        assert [d.name for d in upper.datasets] == [d.name for d in everything.datasets]
        both = search_datasets(session, "luftqualität hafen", 1000, 0)
        assert 0 < both.total < everything.total
        assert all("Hafen" in d.title + d.description for d in both.datasets)
        keyword = search_datasets(session, "mobilität", 5, 0)  # keywords are JSON with \u-escapes
        assert keyword.total > 0
        page = search_datasets(session, "verkehr", 10, 10)
        assert len(page.datasets) == 10 and page.total > 20
        assert search_datasets(session, "100%_", 10, 0).total == 0  # LIKE wildcards are literal


def test_search_totals_and_pages_match_a_brute_force_scan(big_catalogue: Any) -> None:
    from catalogue.meta.fts import alternatives
    from catalogue.meta.german_words import words
    from catalogue.meta.models import Dataset

    with big_catalogue.sessions() as session:
        every = session.query(Dataset).all()

        def text(d: Dataset) -> set[str]:
            return set(words(" ".join([d.title, d.title_en, d.description, d.description_en, *d.keywords])))

        def holds(held: set[str], word: str) -> bool:  # a held word begins with the word, its stem or its umlaut form
            return any(h.startswith(a) for a in alternatives(word) for h in held)

        for q in ("verkehr", "luftqualität hafen", "sonderauswertung", "zzzkeintreffer", "luftqualitaeten"):
            first = words(q)[0]
            expected = [d.name for d in sorted(
                (d for d in every if all(holds(text(d), w) for w in words(q))),
                key=lambda d: (not holds(set(words(d.title)), first), d.name))]
            for limit, offset in ((20, 0), (7, 3), (10, len(expected) + 5), (0, 0)):
                found = search_datasets(session, q, limit, offset)
                assert found.total == len(expected), (q, limit, offset)
                assert [d.name for d in found.datasets] == expected[offset:offset + limit], (q, limit, offset)
        # Columns are searched apart: the end of a title and the start of its description are no one word.
        d = every[0]
        assert d.title_en
        joined = (d.title.split()[-1] + d.title_en.split()[0]).lower()  # (next to each other in the searched text)
        assert not holds(text(d), joined) and search_datasets(session, joined, 5, 0).total == 0


@pytest.mark.anyio
async def test_the_api_searches_with_q(big_catalogue: Any) -> None:
    from api.app import create_app

    app = create_app(big_catalogue.settings, big_catalogue)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as client:
        found = (await client.get("/api/v1/datasets", params={"q": "Sonderauswertung", "limit": 5})).json()
        empty = await client.get("/api/v1/datasets", params={"q": "   "})
    app.state.query_engine.close()
    assert found["total_count"] == 2  # datasets 7 and 1007 carry the rare word
    assert [d["name"] for d in found["results"]] == ["ds-000007", "ds-001007"]
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "invalid-parameter"


@pytest.mark.anyio
async def test_the_dataset_list_and_publishers_page_in_sql_like_a_listing_of_everything(big_catalogue: Any) -> None:
    from sqlalchemy import event

    from api.app import create_app
    from catalogue.meta.models import Dataset

    with big_catalogue.sessions() as session:
        every = sorted((d.name, d.publisher.name) for d in session.query(Dataset).all())
    publisher = every[5][1]
    statements: list[str] = []

    def note(*args: Any) -> None:
        statements.append(args[2])

    app = create_app(big_catalogue.settings, big_catalogue)
    event.listen(big_catalogue.engine, "before_cursor_execute", note)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as client:
            pages = [(await client.get("/api/v1/datasets", params=p)).json() for p in (
                {"limit": 50}, {"limit": 50, "offset": 1180}, {"limit": 4, "offset": 2, "publisher": publisher},
                {"limit": 5, "publisher": "nobody"})]
            one = (await client.get(f"/api/v1/publishers/{publisher}")).json()
    finally:
        event.remove(big_catalogue.engine, "before_cursor_execute", note)
        app.state.query_engine.close()
    names = [n for n, _ in every]
    mine = [n for n, p in every if p == publisher]
    assert [(b["total_count"], [d["name"] for d in b["results"]]) for b in pages] == [
        (len(names), names[:50]), (len(names), names[1180:1230]), (len(mine), mine[2:6]), (0, [])]
    assert pages[0]["results"][0]["publisher"]["name"] == every[0][1] and "current_version" in pages[0]["results"][0]
    assert one["datasets"] == mine
    assert len(statements) < 30  # a handful per request, not one per dataset


def test_an_incremental_build_renders_only_what_one_change_touches(big_catalogue: Any) -> None:
    from sqlalchemy import update

    from catalogue.meta.models import Dataset

    hub = big_catalogue
    full = SiteBuilder(hub).build()
    site = hub.settings.site_dir
    untouched = site / "datasets" / "ds-000002.html"
    before = untouched.stat().st_mtime_ns
    with hub.sessions.begin() as session:  # a new description keeps the dataset's place in the title-sorted lists
        session.execute(update(Dataset).where(Dataset.name == "ds-000001").values(description="Neue Beschreibung"))
    pages = SiteBuilder(hub).build(only=["ds-000001", "ds-gone"])
    versions = len(list((site / "datasets" / "ds-000001").glob("v*.html")))
    # 2 languages × (dataset page, its version pages, the front page, the harvest status page (rewritten by
    # every build), the listing pages showing it)
    assert pages == 2 * (1 + versions + 1 + 1 + 2) < full
    assert "Neue Beschreibung" in (site / "datasets" / "ds-000001.html").read_text(encoding="utf-8")
    listed = [p for p in site.glob("page/*.html") if "datasets/ds-000001.html" in p.read_text(encoding="utf-8")]
    assert len(listed) == 1 and "Neue Beschreibung" in listed[0].read_text(encoding="utf-8")
    assert untouched.stat().st_mtime_ns == before
    (site / "datasets" / "ds-gone.html").write_text("old")
    build_site(hub, changed=["ds-gone"])
    assert not (site / "datasets" / "ds-gone.html").exists()


def test_the_search_index_built_on_its_own_is_the_one_a_full_build_writes(big_catalogue: Any) -> None:
    from catalogue.sitegen import search_index

    hub = big_catalogue
    site = hub.settings.site_dir
    SiteBuilder(hub).build()
    by_build = (site / search_index.INDEX_PATH).read_bytes()
    (site / search_index.INDEX_PATH).unlink()
    assert SiteBuilder(hub).build_search_index() == 1200
    assert (site / search_index.INDEX_PATH).read_bytes() == by_build
    index = json.loads(by_build)
    first = search_index.read_entries(site)["ds-000001"]["doc"]["title"]
    assert "ds-000001" in search_index.search(index, first)


def test_datasette_as_deployed_takes_its_counts_from_the_inspect_file(tmp_path: Path) -> None:
    pytest.importorskip("datasette")
    sqlite_utils = pytest.importorskip("sqlite_utils")
    from bench.servers import datasette, datasette_inspect

    db = tmp_path / "parking.db"
    sqlite_utils.Database(db)["parking"].insert_all({"sensor_id": f"S{i:05d}", "free": i} for i in range(50))
    inspect = datasette_inspect(db, tmp_path / "inspect-data.json")
    data = json.loads(inspect.read_text(encoding="utf-8"))
    assert data["parking"]["tables"]["parking"]["count"] == 50
    # A count only the inspect file holds: the server answers with it, so it really serves from the file.
    data["parking"]["tables"]["parking"]["count"] = 424242
    inspect.write_text(json.dumps(data), encoding="utf-8")
    with datasette(db, inspect_file=inspect) as served:
        assert served.command[served.command.index("--inspect-file") + 1] == str(inspect)
        body = httpx.get(f"{served.url}/parking/parking.json?_size=1", timeout=30).json()
    with datasette(db) as plain:
        assert "--inspect-file" not in plain.command
        counted = httpx.get(f"{plain.url}/parking/parking.json?_size=1", timeout=30).json()
    assert (body["filtered_table_rows_count"], counted["filtered_table_rows_count"]) == (424242, 50)


def test_sqlite_peer_gets_the_indexes_sqlite_utils_would_add(tmp_path: Path) -> None:
    pytest.importorskip("sqlite_utils")
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.peers import COLUMNS, DBA_INDEXES, add_sqlite_indexes, load_sqlite, sqlite_index_columns

    part = tmp_path / "part.parquet"
    pq.write_table(pa.table({c: pa.array([1.5] if c in ("lon", "lat") else [3] if c in ("occupied", "free")
                                         else ["x"]) for c in COLUMNS if c != "timestamp"}
                            ).append_column("timestamp", pa.array([0], pa.timestamp("us"))), part)
    db = tmp_path / "parking.db"
    load_sqlite(db, [str(part)])
    assert sqlite_index_columns(db) == []  # as an import leaves it
    add_sqlite_indexes(db)
    add_sqlite_indexes(db)  # idempotent, as `create-index --if-not-exists`
    assert sqlite_index_columns(db) == sorted(DBA_INDEXES)


def test_read_memos_off_plans_and_counts_every_time(tmp_path: Path) -> None:
    from catalogue.query import memos
    from catalogue.query.engine import QueryEngine
    from catalogue.query.records import RecordsRequest, plan_records

    schema = TableSchema.from_stored({"fields": [{"name": "n", "type": "integer"}]})
    request = RecordsRequest(where="n > 1", limit=5)
    hub = open_hub(Settings(data_dir=tmp_path / "var", read_memos=False))
    engine = QueryEngine(hub)  # applies the setting to the process
    try:
        assert memos.on() is False
        assert plan_records(request, schema, [], 1) is not plan_records(request, schema, [], 1)
    finally:
        engine.close()
        hub.close()
        memos.configure(True)
    assert plan_records(request, schema, [], 1) is plan_records(request, schema, [], 1)


def test_a_ratio_whose_spread_crosses_its_target_is_measured_again_and_reported_unstable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import measure
    from bench.measure import Target, per_turn, quartiles, ratio_target, settle

    monkeypatch.setattr(measure, "SETTLE_RETRIES", 1)  # (quick mode sets 0)

    calls = []

    def measure() -> dict[str, list[float]]:
        calls.append(1)
        return {"ours": [3.0, 2.5, 1.5, 1.2], "peer": [1.0] * 4}  # per-turn ratios 1.2 … 3: IQR 1.4 – 2.6

    times, again = settle(measure, lambda t: per_turn(t["ours"], t["peer"]), 2.0)
    assert again and len(calls) == 2 and len(times["ours"]) == 8
    unstable = ratio_target("http", "x", per_turn(times["ours"], times["peer"]), ">=", 2.0, repeated=again)
    assert unstable.verdict == "unstable" and "measured twice" in unstable.note
    steady, again = settle(lambda: {"ours": [3.0] * 4, "peer": [1.0] * 4}, lambda t: per_turn(t["ours"], t["peer"]), 2)
    assert not again
    assert ratio_target("http", "x", per_turn(steady["ours"], steady["peer"]), ">=", 2.0).verdict == "PASS"
    assert Target("m", "x", 300.0, "<=", 128.0, unit="MiB").verdict == "FAIL"
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 4.0)


def test_every_turn_asks_a_new_question_from_a_seeded_distribution() -> None:
    from bench.data import Shape
    from bench.queries import SEED, QuerySet

    base = QuerySet(Shape.of(1_000_000))
    rng = random.Random(SEED)
    draws = [base.draw(rng) for _ in range(50)]
    rng = random.Random(SEED)
    again = [base.draw(rng) for _ in range(50)]
    assert draws == again  # seeded: the same sequence every run
    assert len({d.sensor for d in draws}) > 25 and len({d.moment for d in draws}) > 40  # of 100 sensors
    assert len({d.records_query_strings()["point"] for d in draws}) == 50
    for d in draws:  # every question lies inside the history
        assert d.day[0] >= "2026-01-05" and d.week[0] < d.week[1]


@pytest.fixture
def history(tmp_path: Path) -> Any:
    """A bench context with a small parking history written (no phase run yet)."""
    from rich.console import Console

    from bench.context import DATASET, Context
    from bench.data import write_csv, write_definitions

    ctx = Context(work=tmp_path, rows=20_000, repeat=1, quick=True, console=Console(quiet=True))
    ctx.csv["international"] = write_csv(tmp_path / "parking.csv", ctx.shape, "international")
    ctx.defs = write_definitions(tmp_path / "defs", DATASET, {DATASET: "international"})
    return ctx


def test_area_search_on_postgis_uses_the_gist_index_and_finds_what_sqlite_finds(tmp_path: Path) -> None:
    from tests.conftest import postgis_or_skip

    postgis_or_skip()
    from bench.catalogue_data import grow_catalogue
    from bench.phase_backends import AREAS, add_extents, pg_database, plan_indexes, query_plan

    with pg_database("bench_area") as database_url:
        hubs = {"sqlite": open_hub(Settings(data_dir=tmp_path / "lite")),
                "postgres": open_hub(Settings(data_dir=tmp_path / "pg", database_url=database_url))}
        try:
            found = {}
            for name, hub in hubs.items():
                grow_catalogue(hub, 0, 500)
                add_extents(hub)
                with hub.sessions() as session:
                    found[name] = {area: sorted(d.name for d in search_datasets(session, None, 1000, 0, bbox=box)
                                                .datasets) for area, box in AREAS.items()}
            assert hubs["postgres"].engine.dialect.name == "postgresql"
            assert found["sqlite"] == found["postgres"]
            assert found["sqlite"]["elsewhere"] == [] and len(found["sqlite"]["district"]) >= 5
            assert len(found["sqlite"]["half the region"]) > len(found["sqlite"]["district"])

            def district() -> None:
                with hubs["postgres"].sessions() as session:
                    search_datasets(session, None, 20, 0, bbox=AREAS["district"])

            plan = query_plan(hubs["postgres"], district)
            assert "ix_datasets_extent" in plan_indexes(plan), plan
        finally:
            for hub in hubs.values():
                hub.close()


def test_the_records_side_on_seaweedfs_reads_its_parts_from_the_object_store(history: Any, seaweed: Any) -> None:
    from bench.phase_backends import aws_env, records

    with aws_env(seaweed):
        records(history, seaweed)
    facts, figures = history.results.facts, history.results.figures
    assert facts["backends_storage"] == {"local": "local", "s3": "s3"}
    assert facts["backends_part_schemes"] == {"local": ["path"], "s3": ["s3"]}
    assert {f"backends.records.{q}.{side}" for q in ("first", "groupby") for side in ("local", "s3")} <= set(figures)
    assert [t.section for t in history.results.targets] == ["backends", "backends"]
    assert not (history.work / "backends-s3").exists() and not (history.work / "backends-local").exists()


def test_cpu_busy_counts_at_least_the_cpu_time_this_process_spent() -> None:
    """The machine's busy share over a block includes the block's own CPU time (and never exceeds all of it)."""
    import os
    import time

    from bench.measure import CpuBusy

    own_before, started = time.process_time(), time.monotonic()
    with CpuBusy() as cpu:
        while time.process_time() - own_before < 0.4:  # spin: 0.4 s of this process's CPU
            pass
    wall, own = time.monotonic() - started, time.process_time() - own_before
    cores = os.cpu_count() or 1
    assert 0.0 < cpu.fraction <= 1.0
    assert cpu.fraction * wall * cores >= 0.8 * own, (cpu.fraction, wall, own, cores)
