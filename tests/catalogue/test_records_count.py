"""total_count of a records page, whichever way run_records finds it (known, window, short page, count query).

Every case is checked against a brute-force count of the same filter in Python.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalogue import duck
from catalogue.query.records import RecordsRequest, clear_count_cache, plan_records, run_records
from catalogue.schema.model import TableSchema

SCHEMA = {
    "fields": [{"name": "id", "type": "integer"}, {"name": "zone", "type": "string"}, {"name": "n", "type": "integer"}],
    "primaryKey": ["id"],
}
ROWS = [{"id": i, "zone": "abc"[i % 3], "n": i % 7} for i in range(250)]


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("parts")
    out = []
    for number, chunk in enumerate((ROWS[:100], ROWS[100:180], ROWS[180:])):
        path = Path(root) / f"p{number}.parquet"
        pq.write_table(pa.Table.from_pylist(chunk), path)
        out.append(str(path))
    return out


@pytest.fixture()
def cur() -> Iterator[object]:
    con = duck.connect(memory_limit_mb=256, threads=1)
    yield con.cursor()
    con.close()


def page(cur: object, parts: list[str], request: RecordsRequest, known: bool = True, *, schema: dict = SCHEMA,
         rows: list[dict] = ROWS) -> tuple[object, dict]:
    plan = plan_records(request, TableSchema.from_stored(schema), parts, 1, row_count=len(rows) if known else None)
    out = run_records(cur, plan, version=1, limit=request.limit or 0, time_limit_ms=10_000)  # type: ignore[arg-type]
    return plan, out


CASES = [
    # (request, expected total, how run_records should have found it)
    (RecordsRequest(limit=10), len(ROWS), "known"),
    (RecordsRequest(where="zone = 'a'", limit=10), sum(r["zone"] == "a" for r in ROWS), "rows"),  # full page: count query
    (RecordsRequest(where="zone = 'a' and n = 3", limit=100), sum(r["zone"] == "a" and r["n"] == 3 for r in ROWS), "rows"),
    (RecordsRequest(where="n = 3", order_by="id desc", limit=5, offset=20), sum(r["n"] == 3 for r in ROWS), "rows"),
    (RecordsRequest(where="n = 99", limit=10), 0, "rows"),
    (RecordsRequest(where="n = 3", limit=10, offset=200), sum(r["n"] == 3 for r in ROWS), "rows"),  # past the end
    (RecordsRequest(select="zone, count(*) as c", group_by="zone", limit=2), 3, "window"),
    (RecordsRequest(select="n, count(*) as c", group_by="n", order_by="n", limit=3, offset=5), 7, "window"),
    (RecordsRequest(select="n, count(*) as c", group_by="n", limit=3, offset=50), 7, "window"),  # no rows: count query
    (RecordsRequest(select="n", group_by="n", where="n > 100", limit=3), 0, "window"),
    (RecordsRequest(select="count(*) as c", where="zone = 'b'", limit=10), 1, "known"),
]


@pytest.mark.parametrize(("request_", "expected", "source"), CASES)
def test_total_count_matches_a_brute_force_count(cur: object, parts: list[str], request_: RecordsRequest,
                                                  expected: int, source: str) -> None:
    plan, out = page(cur, parts, request_)
    assert plan.count_from == source
    assert out["total_count"] == expected
    rows = json.loads(out["results_json"])
    assert all("__total" not in row and "__file" not in row for row in rows)


def test_without_a_known_row_count_the_unfiltered_total_is_counted(cur: object, parts: list[str]) -> None:
    plan, out = page(cur, parts, RecordsRequest(limit=10), known=False)
    assert plan.count_from == "rows"
    assert out["total_count"] == len(ROWS)


def test_a_short_cursor_page_still_reports_the_whole_total(cur: object, parts: list[str]) -> None:
    request = RecordsRequest(where="zone = 'c'", limit=50)
    first = page(cur, parts, request)[1]
    expected = sum(r["zone"] == "c" for r in ROWS)
    assert first["total_count"] == expected and first["next_cursor"]
    second = page(cur, parts, RecordsRequest(where="zone = 'c'", limit=50, cursor=first["next_cursor"]))[1]
    assert len(json.loads(second["results_json"])) == expected - 50
    assert second["total_count"] == expected


def test_grouped_page_rows_and_types(cur: object, parts: list[str]) -> None:
    out = page(cur, parts, RecordsRequest(select="zone, sum(n) as s", group_by="zone", order_by="zone", limit=10))[1]
    assert json.loads(out["results_json"]) == [
        {"zone": z, "s": sum(r["n"] for r in ROWS if r["zone"] == z)} for z in "abc"
    ]


class Recording:
    """A DuckDB cursor that notes every statement it runs."""

    def __init__(self, cur: object) -> None:
        self.cur, self.statements = cur, []  # type: ignore[var-annotated]

    @property
    def counts(self) -> int:
        """Count scans run so far."""
        return sum(sql.startswith("SELECT count(*) FROM read_parquet") for sql in self.statements)

    def execute(self, sql: str, *args: object) -> object:
        self.statements.append(sql)
        return self.cur.execute(sql, *args)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.cur, name)


def test_a_count_is_scanned_once_per_filter_and_parts(cur: object, parts: list[str]) -> None:
    clear_count_cache()
    recording = Recording(cur)
    counts = []
    for request in (RecordsRequest(where="n = 2", limit=5), RecordsRequest(where="n = 2", order_by="id desc", limit=5),
                    RecordsRequest(where="n = 2", limit=5, offset=10), RecordsRequest(where="n = 4", limit=5)):
        before = recording.counts
        out = page(recording, parts, request)[1]
        counts.append((out["total_count"], recording.counts - before))
    # Other order or offset, same filter: no second count scan; another filter is counted anew.
    assert counts == [(36, 1), (36, 0), (36, 0), (sum(r["n"] == 4 for r in ROWS), 1)]
    # Other parts (another version), same filter: counted anew.
    before = recording.counts
    out = page(recording, parts[:1], RecordsRequest(where="n = 2", limit=5))[1]
    assert (out["total_count"], recording.counts - before) == (sum(r["n"] == 2 for r in ROWS[:100]), 1)
    clear_count_cache()
    before = recording.counts
    assert page(recording, parts, RecordsRequest(where="n = 2", limit=5))[1]["total_count"] == 36
    assert recording.counts - before == 1


def test_the_columns_of_a_computed_select_are_bound_once_per_query_and_parts(cur: object, parts: list[str]) -> None:
    recording = Recording(cur)
    # n * 2 in both clauses: one group expression (equal literals share a placeholder).
    request = RecordsRequest(select="zone, n * 2 as twice, count(*) as c", group_by="zone, n * 2 as twice",
                             order_by="zone, twice", limit=3)
    binds = []
    for files in (parts, parts, parts[1:]):
        before = sum(sql.endswith(") LIMIT 0") for sql in recording.statements)
        rows = json.loads(page(recording, files, request)[1]["results_json"])
        binds.append(sum(sql.endswith(") LIMIT 0") for sql in recording.statements) - before)
        assert rows[0] == {"zone": "a", "twice": 0, "c": sum(r["zone"] == "a" and r["n"] == 0 for r in ROWS
                                                            if files == parts or r["id"] >= 100)}
    assert binds == [1, 0, 1]


@pytest.mark.parametrize(("offset", "limit", "parts_read"), [(0, 10, 1), (90, 10, 1), (90, 11, 2), (170, 20, 3),
                                                             (0, 250, 3), (240, 100, 3)])
def test_an_unfiltered_page_reads_only_the_parts_up_to_its_last_row(
    cur: object, parts: list[str], offset: int, limit: int, parts_read: int
) -> None:
    plan, out = page(cur, parts, RecordsRequest(limit=limit, offset=offset))
    assert len(plan.params["scan"]) == parts_read and plan.params["parts"] == parts  # (parts: 100, 80, 70 rows)
    assert [r["id"] for r in json.loads(out["results_json"])] == [r["id"] for r in ROWS[offset:offset + limit]]


def test_cursor_pages_without_a_filter_read_from_the_cursor_on_and_reach_every_row(
    cur: object, parts: list[str]
) -> None:
    seen, cursor, scans = [], None, []
    while True:
        plan, out = page(cur, parts, RecordsRequest(limit=30, cursor=cursor))
        scans.append(len(plan.params["scan"]))
        seen += [r["id"] for r in json.loads(out["results_json"])]
        cursor = out["next_cursor"]
        if not cursor:
            break
    assert seen == [r["id"] for r in ROWS]
    assert max(scans) <= 2 and scans[0] == 1


# (entity, time) readings: five sensors, twelve reading times each.
READINGS_SCHEMA = {
    "fields": [{"name": "sensor", "type": "string"}, {"name": "at", "type": "datetime"},
               {"name": "free", "type": "integer"}],
    "primaryKey": ["sensor", "at"],
}
READINGS = [{"sensor": f"s{s}", "at": f"2026-01-01T{h:02d}:00:00", "free": (s * 7 + h * 3) % 11}
            for s in range(5) for h in range(12)]


@pytest.fixture(scope="module")
def reading_parts(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("readings")
    table = pa.table({"sensor": [r["sensor"] for r in READINGS],
                      "at": pa.array([r["at"] for r in READINGS]).cast(pa.timestamp("us")),
                      "free": [r["free"] for r in READINGS]})
    out = []
    for number, (start, stop) in enumerate(((0, 24), (24, 60))):
        path = Path(root) / f"r{number}.parquet"
        pq.write_table(table.slice(start, stop - start), path)
        out.append(str(path))
    return out


def reading_page(cur: object, parts: list[str], request: RecordsRequest,
                 schema: dict = READINGS_SCHEMA) -> tuple[object, dict]:
    return page(cur, parts, request, schema=schema, rows=READINGS)


AT_5 = [r for r in READINGS if r["at"] == "2026-01-01T05:00:00"]
READING_CASES = [
    # One reading time, ordered (the top ones at a moment): counted in the rows query.
    (RecordsRequest(where="at = '2026-01-01T05:00:00'", order_by="free desc, sensor", limit=2), len(AT_5), "window"),
    (RecordsRequest(where="'2026-01-01T05:00:00' = at and free >= 0", order_by="free", limit=2), len(AT_5), "window"),
    (RecordsRequest(refine=["at:2026-01-01T05:00:00"], order_by="free", limit=3), len(AT_5), "window"),
    (RecordsRequest(where="at = '2026-01-01T05:00:00'", order_by="free", limit=2, offset=40), len(AT_5), "window"),
    (RecordsRequest(where="at = '2026-01-01T23:00:00'", order_by="free", limit=2), 0, "window"),
    # Not one reading time, or a keyed page (stored order, its scan stops at the page's end): as before.
    (RecordsRequest(where="at = '2026-01-01T05:00:00'", limit=2), len(AT_5), "rows"),
    (RecordsRequest(where="at >= '2026-01-01T05:00:00'", order_by="free", limit=2),
     sum(r["at"] >= "2026-01-01T05:00:00" for r in READINGS), "rows"),
    (RecordsRequest(where="at = '2026-01-01T05:00:00' or free = 1", order_by="free", limit=2),
     sum(r["at"] == "2026-01-01T05:00:00" or r["free"] == 1 for r in READINGS), "rows"),
    (RecordsRequest(where="sensor = 's1'", order_by="free", limit=2), 12, "rows"),
]


@pytest.mark.parametrize(("request_", "expected", "source"), READING_CASES)
def test_a_reading_time_is_counted_in_the_rows_query(cur: object, reading_parts: list[str],
                                                     request_: RecordsRequest, expected: int, source: str) -> None:
    recording = Recording(cur)
    plan, out = reading_page(recording, reading_parts, request_)
    assert plan.count_from == source
    assert out["total_count"] == expected
    rows = json.loads(out["results_json"])
    assert all("__total" not in row for row in rows)
    if source == "window" and rows:
        assert recording.counts == 0  # no second scan for the count


def test_the_top_rows_at_a_reading_time(cur: object, reading_parts: list[str]) -> None:
    out = reading_page(cur, reading_parts, RecordsRequest(where="at = '2026-01-01T05:00:00'",
                                                          order_by="free desc, sensor", limit=3))[1]
    top = sorted(AT_5, key=lambda r: (-r["free"], r["sensor"]))[:3]
    assert [(r["sensor"], r["free"]) for r in json.loads(out["results_json"])] == [(r["sensor"], r["free"]) for r in top]


def test_a_key_of_more_than_entity_and_time_counts_as_before(cur: object, reading_parts: list[str]) -> None:
    # (sensor, at, free) as the key: one reading time may hold many rows per sensor.
    schema = {**READINGS_SCHEMA, "primaryKey": ["sensor", "at", "free"]}
    plan, out = reading_page(cur, reading_parts, RecordsRequest(where="at = '2026-01-01T05:00:00'", order_by="free",
                                                                limit=2), schema)
    assert plan.count_from == "rows" and out["total_count"] == len(AT_5)
