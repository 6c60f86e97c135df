"""The SQL guard (DuckDB's parser and AST) and the worker sandbox behind it, with real DuckDB."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


# -- nothing a user sends makes the API process touch a file (issue 13, item 1) --

# Statements that name a directory or file DuckDB would read while parsing or running them.
FILE_STATEMENTS = [
    "IMPORT DATABASE '{dir}'",
    "import database '{dir}'",
    "  /* comment */ IMPORT DATABASE '{dir}';",
    "IMPORT DATABASE '{dir}'; SELECT 1",
    "SELECT 1; IMPORT DATABASE '{dir}'",
    "EXPORT DATABASE '{dir}'",
    "PRAGMA import_database('{dir}')",
    "CALL pragma_import_database('{dir}')",
    "ATTACH '{dir}/schema.sql' AS x",
    "COPY t FROM '{dir}/schema.sql'",
    "LOAD '{dir}/schema.sql'",
    "INSTALL '{dir}/schema.sql'",
    "SELECT * FROM '{dir}/schema.sql'",
    "SELECT * FROM read_text('{dir}/schema.sql')",
    "(IMPORT DATABASE '{dir}')",
]
# What a directory may hold: each would change what DuckDB's statement extraction answered.
DIRECTORY_CONTENTS = [
    None,  # the directory does not exist
    {},  # it exists, empty
    {"schema.sql": "SELECT 1;", "load.sql": ""},
    {"schema.sql": "SELECT 1; SELECT 2;", "load.sql": "SELECT 3;"},
    {"schema.sql": "CREATE TABLE t(i INT);", "load.sql": "INSERT INTO t VALUES (1);"},
    {"schema.sql": "this is no sql", "load.sql": "neither"},
]


def refusal(sql: str) -> tuple[str, int, str, dict[str, object]]:
    with pytest.raises((SqlNotAllowed, SqlSyntaxError)) as caught:
        check_sql(sql, max_chars=100_000)
    error = caught.value
    return error.code, error.status, error.message, error.details


@pytest.mark.parametrize("template", FILE_STATEMENTS)
def test_the_answer_does_not_depend_on_what_the_file_system_holds(tmp_path: Path, template: str) -> None:
    answers = set()
    for number, files in enumerate(DIRECTORY_CONTENTS):
        # Names of equal length, so that positions in messages agree.
        directory = tmp_path / f"dir{number}"
        if files is not None:
            directory.mkdir()
            for name, text in files.items():
                (directory / name).write_text(text)
        code, status, message, details = refusal(template.format(dir=directory))
        answers.add((code, status, message.replace(str(directory), "<dir>"), str(details)))
        assert status == 400
    assert len(answers) == 1, answers


def test_the_first_word_names_what_is_refused() -> None:
    assert refusal("IMPORT DATABASE '/nowhere'")[:3] == (
        "sql-not-allowed", 400,
        "IMPORT statements are not allowed: this endpoint only reads, so it runs one SELECT (or WITH ... SELECT) "
        "statement; no COPY, ATTACH, IMPORT, EXPORT, SET, PRAGMA, INSTALL, LOAD, CREATE or other changes.")
    assert refusal("SELECT 1; IMPORT DATABASE '/nowhere'")[2] == (
        "Found 2 statements; send exactly one SELECT statement per request.")
    assert refusal(";;")[:2] == ("sql-syntax-error", 400)
    # Positions count characters, not UTF-8 bytes.
    assert refusal("SELECT 'é🙂'; SELECT 2")[3] == {"position": 13}
    assert refusal("SELECT 'é🙂' FROM t WHERE " + "(" * 101 + "1" + ")" * 101)[3]["position"] == 125


# -- nesting is bounded before DuckDB's parser and Python's JSON reader see it (issue 13, item 2) --

NESTED = {
    "parentheses": lambda n: "SELECT " + "(" * n + "1" + ")" * n,
    "function calls": lambda n: "SELECT " + "abs(" * n + "1" + ")" * n,
    "lists": lambda n: "SELECT " + "[" * n + "1" + "]" * n,
    "structs": lambda n: "SELECT " + "{'a': " * n + "1" + "}" * n,
    "nots": lambda n: "SELECT " + "NOT " * n + "true",
    "not and parentheses": lambda n: "SELECT " + "NOT (" * (n // 2) + "NOT " * (n % 2) + "true" + ")" * (n // 2),
    "where": lambda n: "SELECT 1 FROM range(1) t(x) WHERE " + "(" * n + "x = 1" + ")" * n,
}


@pytest.mark.parametrize("shape", sorted(NESTED))
@pytest.mark.parametrize("depth", [5, 100, 101, 150, 1000, 4000])
def test_deep_nesting_is_refused_with_the_limit(shape: str, depth: int) -> None:
    sql = NESTED[shape](depth)
    if depth <= 100:
        check_sql(sql, max_chars=50_000)  # passes the guard
        return
    code, status, message, details = refusal(sql)
    assert (code, status, details["limit"]) == ("sql-not-allowed", 400, 100)
    assert "at most 100 are accepted" in message and "SET" not in message


@pytest.mark.parametrize("sql", [
    "SELECT " + " + ".join(["1"] * 1500),
    "SELECT " + " || ".join(["'a'"] * 1500),
])
def test_long_operator_chains_are_refused_without_suggesting_a_setting(sql: str) -> None:
    code, status, message, _ = refusal(sql)
    assert (code, status) == ("sql-not-allowed", 400)
    assert "nested too deeply" in message and "SET" not in message and "max_expression_depth" not in message


def test_flat_chains_pass() -> None:
    # DuckDB flattens AND/OR chains and folds unary minus on constants: no depth to bound.
    check_sql("SELECT 1 FROM range(1) t(x) WHERE " + " AND ".join(["x = 1"] * 1500), max_chars=100_000)
    check_sql("SELECT " + "- " * 3000 + "1", max_chars=100_000)


def test_a_pivot_statement_without_its_values_says_so() -> None:
    code, _, message, _ = refusal('PIVOT "car-parks" ON open_24h')
    assert code == "sql-not-allowed" and "IN (" in message and "statements" not in message
    assert relations('PIVOT "car-parks" ON open_24h IN (true, false) USING count(*)') == ["car-parks"]


# -- errors speak of the user's statement, never of the wrapper that fetches its rows (issue 13, item 9) --

WRAPPER_WORDS = ("__result", "json_array", "#1", "#2", "ST_AsGeoJSON", "::VARCHAR", "LIMIT 11", "SET ", "PRAGMA")


@pytest.mark.parametrize("sql", [
    "SELECT x::INT FROM (VALUES ('a')) v(x)",
    "SELECT 'a'::INT",
    "SELECT 1, 'x'::GEOMETRY",
    "SELECT id, (SELECT unnest([1, 2])) FROM things",
    "SELECT id, ST_GeomFromText('nonsense') FROM things",
    "SELECT no_such_column FROM things",
    "SELECT 1 +",
    "SELECT id::DATE FROM things",
    "SELECT timestamp '294247-01-10 04:00:54' + interval 1 day",
])
def test_engine_errors_quote_only_the_users_statement(store: dict[str, Path], sql: str) -> None:
    sandboxes = Sandboxes(WorkerConfig(memory_limit_mb=256, threads=1, address_space_mb=1024))
    try:
        answer = run_unchecked(sql, store, sandboxes)
    finally:
        sandboxes.discard()
    assert answer["ok"] is False and answer["kind"] == "error"
    message = str(answer["message"])
    assert message and not [w for w in WRAPPER_WORDS if w in message and w not in sql], message
    for line in message.splitlines():  # any quoted context is a line of the user's text
        if line.startswith("LINE "):
            assert line.split(": ", 1)[1].rstrip(".") in sql


def test_a_geometry_without_a_geojson_form_is_null(store: dict[str, Path]) -> None:
    sandboxes = Sandboxes(WorkerConfig(memory_limit_mb=256, threads=1, address_space_mb=1024))
    try:
        answer = run_unchecked("SELECT ST_Point(1e400, 1) AS bad, ST_Point(1, 2) AS good", store, sandboxes)
    finally:
        sandboxes.discard()
    assert answer["rows"] == [[None, {"type": "Point", "coordinates": [1.0, 2.0]}]]


# -- any text: the guard answers with a 4xx of ours or lets a statement through, nothing else --

SQL_FRAGMENTS = st.sampled_from([
    "SELECT ", "FROM ", "WITH ", "IMPORT DATABASE ", "PRAGMA ", "COPY ", "ATTACH ", "PIVOT ", "(", ")", "[", "]",
    "{", "}", "NOT ", "-", "+", " || ", "abs(", "1", "'x'", "'/tmp'", '"car-parks"', "car_parks", ", ", ";",
    "--", "/*", "*/", "$$", "$1", "?", " AND ", " OR ", "CASE WHEN ", " THEN ", " END", "::INT", " ", "\n", "\x00",
    "é", "🙂", "E'\\'", "read_csv(", "getenv(", "unnest(", "lambda x: ",
])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(SQL_FRAGMENTS, max_size=200), repeat=st.integers(min_value=1, max_value=60))
def test_any_text_gets_an_answer_of_ours(pieces: list[str], repeat: int) -> None:
    sql = "".join(pieces) * repeat
    try:
        check_sql(sql, max_chars=20_000)
    except (SqlNotAllowed, SqlSyntaxError) as exc:
        assert exc.status == 400 and exc.message


@pytest.mark.parametrize("shape", [
    lambda n: "SELECT " + "(SELECT " * n + "1" + ")" * n,
    lambda n: "SELECT 1 FROM range(3) t(x) WHERE x = " + "(SELECT " * n + "1" + ")" * n,
    lambda n: "SELECT * FROM " + "(SELECT * FROM " * n + "range(3)" + ") t" * n,
    lambda n: "SELECT " + "(WITH a AS (SELECT 1) SELECT " * (n - 1) + "1" + ")" * (n - 1),  # CTE body: one more
    lambda n: "SELECT " + "[(SELECT " * n + "1" + ")]" * n,
    lambda n: "SELECT " + "ARRAY(SELECT " * n + "1" + ")" * n,
    lambda n: "SELECT " + "list_transform([1, 2], lambda x: " * n + "x" + ")" * n,
    lambda n: "SELECT " + "list_transform([1, 2], x -> " * n + "x" + ")" * n,
    lambda n: "SELECT " + "(SELECT list_transform([1], lambda x: " * (n // 2) + "x" + ")" * (n // 2 * 2),
])
def test_subqueries_and_lambdas_nest_at_most_10_deep(shape: Any) -> None:
    """DuckDB binds nested subqueries and lambdas in time that grows geometrically, deaf to interrupts."""
    check_sql(shape(10), max_chars=10_000)
    code, status, message, details = refusal(shape(12))
    assert (code, status, details["limit"]) == ("sql-not-allowed", 400, 10)
    assert "subqueries or lambdas 11 levels" in message or "subqueries or lambdas 12 levels" in message


GUARD_EACH = """
import json, sys
from catalogue.errors import UrbandataError
from catalogue.sql.guard import check_sql
for sql in json.loads(sys.argv[1]):
    try:
        check_sql(sql, max_chars=10_000)
        print(json.dumps([sql, "passed"]), flush=True)
    except UrbandataError as exc:
        print(json.dumps([sql, exc.code]), flush=True)
"""


def test_the_guard_opens_no_file(tmp_path: Path) -> None:
    """schema.sql and load.sql are FIFOs: opening one for reading blocks until a writer comes.

    DuckDB holds the GIL while it blocks, so the guard runs in a child process that is killed
    if it does not finish; the old guard (``extract_statements``) hung there on IMPORT DATABASE.
    """
    import json
    import subprocess
    import sys

    directory = tmp_path / "trap"
    directory.mkdir()
    os.mkfifo(directory / "schema.sql")
    os.mkfifo(directory / "load.sql")
    statements = [template.format(dir=directory) for template in FILE_STATEMENTS]
    try:
        done = subprocess.run([sys.executable, "-c", GUARD_EACH, json.dumps(statements)], capture_output=True,
                              text=True, timeout=60)
    except subprocess.TimeoutExpired as hung:
        answered = str(hung.stdout or "").count("\n")
        raise AssertionError(f"the guard opened a file named in: {statements[answered]}") from None
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert [sql for sql, _ in answers] == statements
    assert {code for _, code in answers} <= {"sql-not-allowed", "sql-syntax-error"}, answers


@pytest.mark.parametrize(("message", "sql", "expected"), [
    ("Invalid Input Error: bad in ST_AsGeoJSON(#8)", "SELECT 1", "Invalid Input Error: bad in the GeoJSON of column 8"),
    ("Conversion Error: Could not convert string 'a' to INT32\n\nLINE 1: SELECT json_array(#1)::VARCHAR FROM "
     "__result LIMIT 1001\n                  ^", "SELECT 'a'::INT", "Conversion Error: Could not convert string 'a' to INT32"),
    ("Binder Error: no column x\n\nLINE 1: SELECT x FROM t\n               ^", "SELECT x FROM t",
     "Binder Error: no column x\n\nLINE 1: SELECT x FROM t\n               ^"),
    ('Invalid Input Error: More than one row.\n\nUse "SET scalar_subquery_error_on_multiple_rows=false" to revert.',
     "SELECT (SELECT 1)", "Invalid Input Error: More than one row."),
    ("Conversion Error: Could not convert string '#1' to INT32", "SELECT '#1'::INT",
     "Conversion Error: Could not convert string '#1' to INT32"),
])
def test_user_message_keeps_the_users_text_and_drops_ours(message: str, sql: str, expected: str) -> None:
    from catalogue.sql.worker import user_message

    assert user_message(message, sql) == expected


def test_a_lone_surrogate_is_a_syntax_error() -> None:
    assert refusal("SELECT 'a\ud800'") == ("sql-syntax-error", 400, "The statement holds a character that is no "
                                           "text (a lone surrogate) at character 9.", {"position": 9})
