"""Part pruning: only parts whose min/max admit the filter are read, and answers never change."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalogue import duck
from catalogue.query.records import RecordsRequest, plan_records, prune, run_records
from catalogue.schema.model import TableSchema

SCHEMA = {
    "fields": [
        {"name": "sensor", "type": "string"}, {"name": "at", "type": "datetime"},
        {"name": "level", "type": "integer"}, {"name": "ratio", "type": "number"}, {"name": "ok", "type": "boolean"},
    ],
    "primaryKey": ["sensor", "at"],
}
START = datetime(2026, 3, 1)


def rows_of(sensors: range) -> list[dict[str, Any]]:
    return [{"sensor": f"S{s:03d}", "at": START + timedelta(hours=h), "level": s * 10 + h, "ratio": s + h / 10,
             "ok": h % 2 == 0} for s in sensors for h in range(24)]


PARTS = [range(0, 10), range(10, 20), range(20, 30), range(30, 40)]  # sorted by key: one sensor lies in one part


@pytest.fixture(scope="module")
def uris(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("pruning")
    out = []
    for number, sensors in enumerate(PARTS):
        path = Path(root) / f"part{number}.parquet"
        table = pa.Table.from_pylist(rows_of(sensors)).cast(pa.schema([
            ("sensor", pa.string()), ("at", pa.timestamp("us")), ("level", pa.int64()), ("ratio", pa.float64()),
            ("ok", pa.bool_())]))
        pq.write_table(table, path, row_group_size=48)
        out.append(str(path))
    # A part without statistics is always read.
    bare = Path(root) / "nostats.parquet"
    pq.write_table(pa.Table.from_pylist(rows_of(range(40, 41))).cast(table.schema), bare, write_statistics=False)
    out.append(str(bare))
    return out


@pytest.fixture()
def cur() -> Iterator[Any]:
    con = duck.connect(memory_limit_mb=256, threads=1)
    yield con.cursor()
    con.close()


CASES = [
    ("sensor = 'S015'", [1, 4]),
    ("'S015' = sensor", [1, 4]),
    ("sensor = 'S015' and at >= date'2026-03-01' and at < date'2026-03-02'", [1, 4]),
    ("sensor in ('S001', 'S035')", [0, 3, 4]),
    ("sensor >= 'S025'", [2, 3, 4]),
    ("sensor < 'S010'", [0, 4]),
    ("level between 150 and 160", [1, 4]),
    ("level > 1000", [4]),
    ("ratio <= 0.5", [0, 4]),
    ("sensor = 'S015' or sensor = 'S035'", [0, 1, 2, 3, 4]),  # OR: not pruned, still right
    ("sensor = 'S999'", [4]),
    ("at = '2026-03-01T05:00:00'", [0, 1, 2, 3, 4]),  # every part holds every hour
    ("at > '2026-03-02T00:00:00'", [4]),
    ("startswith(sensor, 'S01')", [0, 1, 2, 3, 4]),  # a function: not a range test
]


def answer(cur: Any, uris: list[str], where: str, **extra: Any) -> tuple[list[str], list[dict[str, Any]], int]:
    request = RecordsRequest(where=where, limit=1000, **extra)
    plan = plan_records(request, TableSchema.from_stored(SCHEMA), uris, 1, row_count=None)
    kept = prune(cur, plan).params["scan"]
    out = run_records(cur, plan, version=1, limit=1000, time_limit_ms=10_000)
    return kept, json.loads(out["results_json"]), out["total_count"]


@pytest.mark.parametrize(("where", "expected_parts"), CASES)
def test_only_parts_that_can_match_are_read_and_the_answer_is_unchanged(
    cur: Any, uris: list[str], where: str, expected_parts: list[int]
) -> None:
    kept, rows, total = answer(cur, uris, where)
    assert kept == [uris[i] for i in expected_parts] or (not expected_parts and len(kept) == 1)
    # The same filter over every part, unpruned, in DuckDB directly.
    plan = plan_records(RecordsRequest(where=where, limit=1000), TableSchema.from_stored(SCHEMA), uris, 1)
    full = cur.execute(f"SELECT count(*) FROM ({plan.sql.replace(' LIMIT 1000 OFFSET 0', '')})",
                       {k: v for k, v in plan.params.items() if f"${k}" in plan.sql}).fetchone()[0]
    assert total == full == len(rows)


def test_refine_prunes_like_an_equality(cur: Any, uris: list[str]) -> None:
    kept, rows, total = answer(cur, uris, "level >= 0", refine=["sensor:S031"])
    assert kept == [uris[3], uris[4]]
    assert total == 24 and {r["sensor"] for r in rows} == {"S031"}


def test_when_no_part_can_match_one_is_still_scanned_and_nothing_is_found(cur: Any, uris: list[str]) -> None:
    kept, rows, total = answer(cur, uris[:4], "sensor = 'S999'")
    assert len(kept) == 1 and rows == [] and total == 0


def test_a_cursor_page_prunes_within_the_parts_from_the_cursor_on(cur: Any, uris: list[str]) -> None:
    request = RecordsRequest(where="sensor in ('S005', 'S025')", limit=30)
    first = run_records(cur, plan_records(request, TableSchema.from_stored(SCHEMA), uris, 1), version=1, limit=30, time_limit_ms=10_000)
    follow = RecordsRequest(where="sensor in ('S005', 'S025')", limit=30, cursor=first["next_cursor"])
    second = run_records(cur, plan_records(follow, TableSchema.from_stored(SCHEMA), uris, 1), version=1, limit=30, time_limit_ms=10_000)
    seen = json.loads(first["results_json"]) + json.loads(second["results_json"])
    assert [(r["sensor"], r["at"]) for r in seen] == [
        (r["sensor"], r["at"].strftime("%Y-%m-%dT%H:%M:%S")) for r in rows_of(range(5, 6)) + rows_of(range(25, 26))]
    assert first["total_count"] == second["total_count"] == 48
