"""date_trunc of a datetime field: the integer rendering gives exactly DuckDB's date_trunc values."""

from __future__ import annotations

import pytest

from catalogue import duck
from catalogue.odsql import FIXED_UNITS_US, Compiler

SCHEMA = {"fields": [{"name": "ts", "type": "datetime"}, {"name": "day", "type": "date"}]}
MOMENTS = [
    "1969-12-31 23:59:59.999999", "1900-02-28 13:45:10.5", "1970-01-01 00:00:00", "2024-02-29 23:30:00.000001",
    "2026-03-29 02:30:00", "2026-10-25 02:59:59", "2038-01-19 03:14:08", "0101-07-04 12:00:00.25",
]


@pytest.mark.parametrize("unit", sorted(FIXED_UNITS_US))
def test_fixed_units_are_rendered_as_arithmetic_and_agree_with_duckdb(unit: str) -> None:
    compiler = Compiler(SCHEMA)
    ((rendered, _, _),) = compiler.select_list(f"date_trunc('{unit}', ts) as t")
    assert "MAKE_TIMESTAMP" in rendered  # the fast form, not DATE_TRUNC
    con = duck.connect(memory_limit_mb=256, threads=1)
    try:
        values = ", ".join(f"(TIMESTAMP '{m}')" for m in MOMENTS)
        rows = con.execute(f"SELECT {rendered} = date_trunc('{unit}', ts), {rendered}, date_trunc('{unit}', ts) "
                           f"FROM (VALUES {values}) AS v(ts)").fetchall()
    finally:
        con.close()
    assert all(same for same, *_ in rows), rows


def test_calendar_units_and_date_fields_keep_date_trunc() -> None:
    compiler = Compiler(SCHEMA)
    rendered = [sql for sql, _, _ in compiler.select_list(
        "date_trunc('month', ts) as a, date_trunc('week', ts) as b, date_trunc('day', day) as c")]
    assert all(sql.startswith("DATE_TRUNC") for sql in rendered), rendered
