"""The SQL guard (DuckDB's parser and AST) and the worker sandbox behind it, with real DuckDB."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalogue.errors import SqlNotAllowed, SqlSyntaxError
from catalogue.sql.guard import check_sql
from catalogue.sql.worker import Sandboxes, SqlTask, WorkerConfig, run_task


def relations(sql: str) -> list[str]:
    return sorted(check_sql(sql, max_chars=10_000).relations)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ('SELECT * FROM "parking-occupancy"', ["parking-occupancy"]),
        ("SELECT * FROM parking_occupancy", ["parking_occupancy"]),
        ('SELECT * FROM "Car-Parks@1" JOIN car_parks USING (lot_id)', ["car-parks@1", "car_parks"]),
        ("SELECT d.name, count(*) FROM parking_occupancy p JOIN \"city-districts\" d "
         "ON ST_Within(p.location, d.geometry) GROUP BY ALL ORDER BY 2 DESC", ["city-districts", "parking_occupancy"]),
        ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r", []),
        ("WITH a AS (SELECT * FROM car_parks), b AS (SELECT * FROM a) SELECT * FROM b", ["car_parks"]),
        ("SELECT 1 UNION ALL SELECT 2 EXCEPT SELECT capacity FROM car_parks", ["car_parks"]),
        ("SELECT x, lag(x) OVER (ORDER BY x), row_number() OVER w, sum(x) OVER w FROM range(5) t(x) "
         "WINDOW w AS (ORDER BY x) QUALIFY x > 1", []),
        ("SELECT [1, 2][1], {'a': 1}.a, list_transform([1], lambda v: v + 1), 'a' || 'b' LIKE 'a%', "
         "x.upper(), TRY_CAST('1' AS INT), CASE WHEN true THEN 1 END, COALESCE(NULL, 1), EXTRACT(year FROM now()), "
         "nullif(1, 2), string_agg(x, ',' ORDER BY x) FILTER (WHERE x <> 'b') FROM (VALUES ('a'), ('b')) v(x)", []),
        ("SELECT * FROM generate_series(1, 3), unnest([1, 2]) AS u(v)", []),
        ('DESCRIBE "car-parks"', ["car-parks"]),
        ("SUMMARIZE SELECT * FROM car_parks", ["car_parks"]),
        ("SELECT * FROM car_parks PIVOT (count(*) FOR open_24h IN (true, false))", ["car_parks"]),
        ("SELECT 1;", []),
    ],
)
def test_reading_statements_pass_and_name_the_datasets_they_read(sql: str, expected: list[str]) -> None:
    assert relations(sql) == expected


REFUSED = [
    # files
    ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
    ("FROM '/etc/passwd'", "/etc/passwd"),
    ("SELECT * FROM 'https://example.org/x.parquet'", "example.org"),
    ("SELECT read_text('/etc/passwd')", "read_text"),
    ("SELECT * FROM read_blob('/etc/passwd')", "read_blob"),
    ("SELECT * FROM read_parquet('/data/store/datasets/car-parks/parts/x.parquet')", "read_parquet"),
    ("SELECT * FROM glob('*')", "glob"),
    ("SELECT * FROM sniff_csv('/etc/passwd')", "sniff_csv"),
    ("SELECT * FROM ST_Read('/etc/passwd')", "st_read"),
    ("SELECT * FROM iceberg_scan('s3://bucket/table')", "iceberg_scan"),
    # writes and other statements
    ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
    ("CREATE TABLE t AS SELECT 1", "CREATE"),
    ("INSERT INTO t VALUES (1)", "INSERT"),
    ("EXPORT DATABASE '/tmp/dump'", "EXPORT"),
    ("ATTACH '/tmp/x.duckdb' AS x", "ATTACH"),
    ("INSTALL httpfs", "LOAD"),
    ("LOAD spatial", "LOAD"),
    ("CALL pragma_version()", "CALL"),
    ("EXPLAIN SELECT 1", "EXPLAIN"),
    ("SELECT 1; SELECT 2", "2 statements"),
    ("SELECT 1; COPY (SELECT 1) TO '/tmp/x.csv'", "2 statements"),
    # settings and catalogue
    ("SET memory_limit = '100GB'", "SET"),
    ("RESET lock_configuration", "SET"),
    ("PRAGMA enable_profiling", "PRAGMA"),
    ("SELECT current_setting('memory_limit')", "current_setting"),
    ("SELECT * FROM duckdb_settings()", "duckdb_settings"),
    ("SELECT * FROM information_schema.tables", "information_schema.tables"),
    ("SELECT * FROM pg_catalog.pg_class", "pg_catalog.pg_class"),
    ("SELECT pg_get_viewdef(1)", "pg_get_viewdef"),
    ("SHOW TABLES", "SHOW"),
    ('SELECT * FROM "car-parks" AT (VERSION => 1)', "AT"),
    # SQL in strings, environment, stalls
    ("SELECT * FROM query('SELECT 1')", "query"),
    ("SELECT * FROM query_table('car-parks')", "query_table"),
    ("SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))", "json_execute_serialized_sql"),
    ("SELECT getenv('HOME')", "getenv"),
    ("SELECT main.getenv('HOME')", "getenv"),
    ("SELECT sleep_ms(60000)", "sleep_ms"),
    ("SELECT no_such_function(1)", "no_such_function"),
    ("SELECT $1", "parameters"),
    # hidden in subqueries, CTEs and lambdas
    ("SELECT (SELECT count(*) FROM read_csv('/etc/passwd'))", "read_csv"),
    ("WITH x AS (SELECT * FROM read_text('/etc/passwd')) SELECT * FROM x", "read_text"),
    ("SELECT list_transform([1], lambda v: (SELECT 1 FROM glob('*')))", "glob"),
    ("SUMMARIZE SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
    # a CTE name is in scope only where it is defined
    ('SELECT * FROM (WITH "/etc/passwd" AS (SELECT 1) SELECT 1), "/etc/passwd"', "/etc/passwd"),
]


@pytest.mark.parametrize(("sql", "named"), REFUSED)
def test_hostile_statements_are_refused_saying_what(sql: str, named: str) -> None:
    with pytest.raises(SqlNotAllowed) as caught:
        check_sql(sql, max_chars=10_000)
    assert caught.value.status == 400 and caught.value.code == "sql-not-allowed"
    assert named.lower() in caught.value.message.lower()


def test_refusals_point_at_the_offending_position() -> None:
    with pytest.raises(SqlNotAllowed) as caught:
        check_sql("SELECT 1, getenv('HOME')", max_chars=100)
    assert caught.value.details == {"position": 10}


def test_syntax_errors_carry_duckdbs_position() -> None:
    with pytest.raises(SqlSyntaxError) as caught:
        check_sql("SELECT * FROM car_parks WHERE", max_chars=100)
    assert caught.value.to_dict() == {
        "code": "sql-syntax-error", "status": 400,
        "message": "Syntax error at character 29: syntax error at end of input.", "details": {"position": 29},
    }


def test_empty_and_overlong_statements_are_refused() -> None:
    with pytest.raises(SqlSyntaxError):
        check_sql("  ", max_chars=100)
    with pytest.raises(SqlNotAllowed, match="at most 20"):
        check_sql("SELECT 1 + 1 + 1 + 1 + 1", max_chars=20)


# -- the sandbox behind the guard: statements that skip the guard still cannot escape --


@pytest.fixture
def store(tmp_path: Path) -> dict[str, Path]:
    """Two Parquet files in a store directory, and a secret beside it."""
    root = tmp_path / "store"
    root.mkdir()
    pq.write_table(pa.table({"id": [1, 2, 3]}), root / "a.parquet")
    pq.write_table(pa.table({"id": [9]}), root / "other.parquet")
    (tmp_path / "secret.csv").write_text("token\nhunter2\n")
    return {"root": root, "a": root / "a.parquet", "other": root / "other.parquet", "secret": tmp_path / "secret.csv"}


def run_unchecked(sql: str, store: dict[str, Path], sandboxes: Sandboxes) -> dict[str, object]:
    task = SqlTask(sql=sql, views={"things": (str(store["a"]),)}, max_rows=10, time_limit_ms=5000,
                   hidden_prefix=str(store["root"]))
    return run_task(task, sandboxes)


def test_the_sandbox_reads_its_views_and_nothing_else(store: dict[str, Path]) -> None:
    sandboxes = Sandboxes(WorkerConfig(memory_limit_mb=256, threads=1, address_space_mb=1024))
    try:
        assert run_unchecked("SELECT sum(id) AS total FROM things", store, sandboxes) == {
            "ok": True, "columns": [{"name": "total", "type": "HUGEINT"}], "rows": [[6]], "truncated": False,
        }
        escapes = {
            "secret file": f"SELECT * FROM read_csv('{store['secret']}')",
            "file outside the views": f"SELECT * FROM read_parquet('{store['other']}')",
            "relative path": f"SELECT * FROM read_csv('{store['root']}/../secret.csv')",
            "system file": "SELECT * FROM read_text('/etc/passwd')",
            "directory listing": f"SELECT * FROM glob('{store['root']}/*')",
            "write": f"COPY (SELECT 1) TO '{store['root']}/new.csv'",
            "attach": f"ATTACH '{store['root']}/db.duckdb' AS x",
            "settings": "SET memory_limit = '100GB'",
            "external access": "SET enable_external_access = true",
            "unlock": "RESET lock_configuration",
            "allowed paths": "SET allowed_directories = ['/']",
            "install": "INSTALL httpfs",
            "load": "LOAD httpfs",
        }
        answers = {what: run_unchecked(sql, store, sandboxes) for what, sql in escapes.items()}
        assert {what: a["ok"] for what, a in answers.items()} == {what: False for what in escapes}
        assert all(str(store["root"]) not in str(a["message"]) for a in answers.values())
        assert sorted(p.name for p in store["root"].iterdir()) == ["a.parquet", "other.parquet"]
        assert run_unchecked("SELECT count(*) AS n FROM things", store, sandboxes)["rows"] == [[3]]
    finally:
        sandboxes.discard()


def test_results_are_json_ready_lists(store: dict[str, Path]) -> None:
    sandboxes = Sandboxes(WorkerConfig(memory_limit_mb=256, threads=1, address_space_mb=1024))
    sql = ("SELECT 1 AS a, 2 AS a, ST_Point(1.5, 2) AS g, TIMESTAMP '2026-11-20 08:15:00' AS t, "
           "TIMESTAMPTZ '2026-11-20 08:15:00.5+01' AS tz, DATE '2026-11-20' AS d, 'nan'::DOUBLE AS f, "
           "1.25::DECIMAL(5, 2) AS m, [1, 2] AS l, NULL AS n")
    try:
        answer = run_unchecked(sql, store, sandboxes)
    finally:
        sandboxes.discard()
    assert answer["rows"] == [[1, 2, {"type": "Point", "coordinates": [1.5, 2.0]}, "2026-11-20T08:15:00",
                               "2026-11-20T07:15:00.5Z", "2026-11-20", None, 1.25, [1, 2], None]]
    assert [c["name"] for c in answer["columns"]] == ["a", "a", "g", "t", "tz", "d", "f", "m", "l", "n"]
