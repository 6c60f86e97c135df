"""date_trunc of a datetime field: the integer renderings give exactly DuckDB's date_trunc values and groups."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalogue import duck
from catalogue.query.odsql import FIXED_UNITS_US, Compiler
from catalogue.schema.model import TableSchema
from catalogue.query.records import RecordsRequest, plan_records, run_records

SCHEMA = {"fields": [{"name": "ts", "type": "datetime"}, {"name": "day", "type": "date"}]}
MOMENTS = [
    "1969-12-31 23:59:59.999999", "1900-02-28 13:45:10.5", "1970-01-01 00:00:00", "2024-02-29 23:30:00.000001",
    "2026-03-29 02:30:00", "2026-10-25 02:59:59", "2038-01-19 03:14:08", "0101-07-04 12:00:00.25",
]


@pytest.mark.parametrize("unit", sorted(FIXED_UNITS_US))
def test_fixed_units_are_rendered_as_arithmetic_and_agree_with_duckdb(unit: str) -> None:
    compiler = Compiler(TableSchema.from_stored(SCHEMA))
    ((rendered, _, _),) = compiler.select_list(f"date_trunc('{unit}', ts) as t")
    assert "MAKE_TIMESTAMP" in rendered  # the fast form, not DATE_TRUNC
    _assert_agrees_with_duckdb(rendered, unit, MOMENTS)


def _assert_agrees_with_duckdb(rendered: str, unit: str, moments: list[str]) -> None:
    con = duck.connect(memory_limit_mb=256, threads=1)
    try:
        values = ", ".join(f"(TIMESTAMP '{m}')" for m in moments)
        rows = con.execute(f"SELECT {rendered} = date_trunc('{unit}', ts), {rendered}, date_trunc('{unit}', ts) "
                           f"FROM (VALUES {values}) AS v(ts)").fetchall()
    finally:
        con.close()
    assert len(rows) == len(moments) and all(same for same, *_ in rows), rows


def test_calendar_units_and_date_fields_keep_date_trunc() -> None:
    compiler = Compiler(TableSchema.from_stored(SCHEMA))
    rendered = [sql for sql, _, _ in compiler.select_list(
        "date_trunc('month', ts) as a, date_trunc('week', ts) as b, date_trunc('day', day) as c")]
    assert all(sql.startswith("DATE_TRUNC") for sql in rendered), rendered


@pytest.mark.parametrize("unit", sorted(FIXED_UNITS_US))
def test_after_1970_the_truncating_form_agrees_with_duckdb(unit: str) -> None:
    compiler = Compiler(TableSchema.from_stored(SCHEMA), after_epoch=frozenset({"ts"}))
    ((rendered, _, _),) = compiler.select_list(f"date_trunc('{unit}', ts) as t")
    assert "//" in rendered  # the truncating form
    _assert_agrees_with_duckdb(rendered, unit, [m for m in MOMENTS if m >= "1970"]
                               + ["1970-01-01 00:00:00.000001", "2262-04-11 23:47:16"])


def _part(path: Path, moments: list[datetime]) -> str:
    table = pa.table({"ts": pa.array(moments, pa.timestamp("us")), "day": pa.array([m.date() for m in moments]),
                      "n": pa.array(range(len(moments)), pa.int64())})
    pq.write_table(table, path)
    return str(path)


@pytest.mark.parametrize("first", [datetime(2026, 3, 29, 1, 59, 59), datetime(1969, 12, 31, 22, 30, 0, 1)])
def test_a_group_by_date_trunc_groups_like_duckdb_before_and_after_1970(tmp_path: Path, first: datetime) -> None:
    """Grouped by the integer bucket (``Compiler.group_key``); the truncating form only where the footers allow it."""
    moments = [first + timedelta(minutes=7 * i, microseconds=i) for i in range(400)]
    uris = [_part(tmp_path / "a.parquet", moments[:200]), _part(tmp_path / "b.parquet", moments[200:])]
    schema = {"fields": SCHEMA["fields"] + [{"name": "n", "type": "integer"}]}
    request = RecordsRequest(select="date_trunc('hour', ts) as hour, count(*) as rows, sum(n) as total",
                             group_by="date_trunc('hour', ts) as hour", order_by="hour", limit=1000)
    plan = plan_records(request, TableSchema.from_stored(schema), uris, 1)
    assert ("//" in plan.sql) == (first.year >= 1970)
    assert " GROUP BY MAKE_TIMESTAMP" not in plan.sql  # grouped by the bucket index, not the timestamp
    con = duck.connect(memory_limit_mb=256, threads=2)
    try:
        cur = con.cursor()
        out = run_records(cur, plan, version=1, limit=1000, time_limit_ms=10_000)
        expected = cur.execute(
            "SELECT strftime(date_trunc('hour', ts), '%Y-%m-%dT%H:%M:%S'), count(*), sum(n) FROM read_parquet($f) "
            "GROUP BY 1 ORDER BY 1", {"f": uris}).fetchall()
    finally:
        con.close()
    got = [(r["hour"], r["rows"], r["total"]) for r in json.loads(out["results_json"])]
    assert got == [(h, c, int(t)) for h, c, t in expected]
    assert out["total_count"] == len(expected) > 40
