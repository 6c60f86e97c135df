"""DuckDB's parallel CSV path: it accepts exactly what the text path accepts, with the same values."""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from catalogue import duck
from catalogue.ingest.csv_scan import RepeatedKey, ScanFailed, SortedKeyWatch, plan_csv_scan, validate_csv
from catalogue.schema.model import Field, TableSchema
from catalogue.errors import MalformedFeed
from catalogue.schema.field_parsing import INTEGER_RE, ISO_DATETIME_RE, NUMBER_RE, parse_expression
from catalogue.ingest.readers import read_delivery
from catalogue.schema.sql_text import literal
from catalogue.ingest.validation import discard_typed, validate_delivery

GERMAN = {
    "fields": [
        {"name": "ort", "type": "string", "constraints": {"required": True}},
        {"name": "betrag", "type": "number", "decimalChar": ","},
        {"name": "menge", "type": "integer", "constraints": {"minimum": 0}},
        {"name": "zeit", "type": "datetime", "format": "%d.%m.%Y %H:%M"},
        {"name": "online", "type": "boolean", "trueValues": ["ja"], "falseValues": ["nein"]},
    ],
    "primaryKey": ["ort", "zeit"],
}
GERMAN_CSV = (
    "ort;betrag;menge;zeit;online\r\n"
    "Königstraße;12345,67;1100;20.11.2026 08:15;ja\r\n"
    "Schloßallee;-0,5;240;01.01.2026 00:00;nein\r\n"
    "Mühlenweg – Gebühr in €;1e3;;29.02.2024 23:59;ja\r\n"
)
INTERNATIONAL = {
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "at", "type": "datetime"},
        {"name": "n", "type": "integer"},
        {"name": "x", "type": "number", "constraints": {"maximum": 100}},
        {"name": "kind", "type": "string", "constraints": {"enum": ["a", "b"]}},
    ],
    "primaryKey": ["id", "at"],
}


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    """One connection for the many small checks (opening one loads the spatial extension)."""
    connection = duck.connect(memory_limit_mb=256, threads=2)
    yield connection
    connection.close()


def text_path(con: duckdb.DuckDBPyConnection, content: bytes, schema: dict[str, Any], **options: Any) -> pa.Table | str:
    """The text path's verdict: the typed rows in key order, 'invalid', or 'unreadable'."""
    try:
        raw = read_delivery(content, "csv", options, TableSchema.from_stored(schema), exact_types=False)
        checked = validate_delivery(con, raw, TableSchema.from_stored(schema), name="t", place="test")
        return con.execute(checked.relation).arrow().read_all() if checked.valid else "invalid"
    except MalformedFeed:
        return "unreadable"
    finally:
        discard_typed(con)


def scan_path(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, content: bytes, schema: dict[str, Any], **options: Any
) -> pa.Table | str:
    """The DuckDB path's verdict: the typed rows in key order, 'not plainly valid', 'repeated key' or 'declined'."""
    path = tmp_path / "delivery.csv"
    path.write_bytes(content)
    try:
        checked = validate_csv(con, path, options, TableSchema.from_stored(schema), tmp_path, name="t", place="test")
        if checked is None:
            return "not plainly valid"
        assert checked.relation is not None
        reader = con.execute(checked.relation).to_arrow_reader(2)
        watch = SortedKeyWatch([f for f in schema.get("primaryKey", [])]) if schema.get("primaryKey") else None
        batches = list(reader)
        for batch in batches:
            if watch:
                watch.check(batch)
        return pa.Table.from_batches(batches, reader.schema)
    except ScanFailed:
        return "declined"
    except RepeatedKey:
        return "repeated key"
    finally:
        discard_typed(con)


def agree(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, content: bytes, schema: dict[str, Any], **options: Any
) -> pa.Table | str:
    """The scan path's verdict, after checking that where it publishes, the text path would publish the same.

    Where it does not, the store asks the text path, so that direction needs no check here.
    """
    scan = scan_path(con, tmp_path, content, schema, **options)
    if isinstance(scan, pa.Table):
        text = text_path(con, content, schema, **options)
        assert isinstance(text, pa.Table), (content, text)
        assert scan.schema == text.schema
        assert _rows(scan) == _rows(text), content
    return scan


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    """The rows, with NaN as a string so that NaN equals NaN."""
    return [{k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
            for row in table.to_pylist()]


def test_german_cp1252_with_euro_sign_is_read_exactly(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    # '€' is 0x80 in cp1252, a byte DuckDB's latin-1 refuses: the file is read from a utf-8 copy.
    content = GERMAN_CSV.encode("cp1252")
    table = agree(con, tmp_path, content, GERMAN, delimiter=";", encoding="cp1252")
    assert isinstance(table, pa.Table)
    assert table.to_pylist() == [
        {"ort": "Königstraße", "betrag": 12345.67, "menge": 1100, "zeit": dt.datetime(2026, 11, 20, 8, 15),
         "online": True},
        {"ort": "Mühlenweg – Gebühr in €", "betrag": 1000.0, "menge": None, "zeit": dt.datetime(2024, 2, 29, 23, 59),
         "online": True},
        {"ort": "Schloßallee", "betrag": -0.5, "menge": 240, "zeit": dt.datetime(2026, 1, 1, 0, 0), "online": False},
    ]


def test_cp1252_without_euro_sign_reads_as_latin1(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    content = GERMAN_CSV.replace(" – Gebühr in €", "").encode("cp1252")
    assert isinstance(agree(con, tmp_path, content, GERMAN, delimiter=";", encoding="cp1252"), pa.Table)
    scan = plan_csv_scan(tmp_path / "delivery.csv", {"delimiter": ";", "encoding": "cp1252"}, TableSchema.from_stored(GERMAN))
    assert scan is not None and scan.latin1
    assert scan.typed == {"betrag": "DOUBLE"}  # (datetimes are read as text: field_parsing checks their widths)


def test_a_byte_cp1252_does_not_define_is_left_to_the_text_path(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    content = GERMAN_CSV.encode("cp1252").replace("€".encode("cp1252"), b"\x81")
    assert text_path(con, content, GERMAN, delimiter=";", encoding="cp1252") == "unreadable"
    assert scan_path(con, tmp_path, content, GERMAN, delimiter=";", encoding="cp1252") == "declined"


@pytest.mark.parametrize(
    ("betrag", "menge", "zeit"),
    [
        ("12.5", "1", "01.02.2026 10:00"),  # '.' is no decimal mark here
        ("12,5", "1.5", "01.02.2026 10:00"),  # no fraction in an integer
        ("12,5", "-1", "01.02.2026 10:00"),  # minimum 0
        ("12,5", "1", "2026-02-01 10:00"),  # ISO where dd.mm.yyyy is declared
        ("12,5", "1", "30.02.2026 10:00"),  # no such day
        ("nan", "1", "01.02.2026 10:00"),  # not a number word frictionless knows
        ("1_000,5", "1", "01.02.2026 10:00"),  # DuckDB would read it as 1000.5
        ("+-1", "1", "01.02.2026 10:00"),  # DuckDB would read it as -1
    ],
)
def test_german_values_that_are_not_quite_right_never_pass(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, betrag: str, menge: str, zeit: str
) -> None:
    content = f"ort;betrag;menge;zeit;online\nA;{betrag};{menge};{zeit};ja\n".encode()
    assert text_path(con, content, GERMAN, delimiter=";") == "invalid"
    assert not isinstance(agree(con, tmp_path, content, GERMAN, delimiter=";"), pa.Table)


def test_numbers_nan_and_offsets_agree_with_the_text_path(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    content = (b"id,at,n,x,kind\n"
               b"a,2026-11-20T08:15:00-0000,1,NaN,a\n"
               b"b,2026-11-20T09:15:00+01:00,2,1e2,b\n"
               b"c,2026-11-20 08:15:00Z,-3,.5,\n"
               b"d,2026-11-20T08:15:00Z,+4,INF,a\n")
    schema = {**INTERNATIONAL, "fields": [{k: v for k, v in f.items() if k != "constraints"}
                                          for f in INTERNATIONAL["fields"]]}
    assert isinstance(text_path(con, content, schema), pa.Table)
    agree(con, tmp_path, content, schema)
    assert text_path(con, content, INTERNATIONAL) == "invalid"  # NaN and INF are over the maximum
    agree(con, tmp_path, content, INTERNATIONAL)
    # Offsets on some values of a field and not on others: invalid on both paths (test_fidelity).
    mixed = content.replace(b"2026-11-20T08:15:00-0000", b"2026-11-20T08:15:00")
    assert text_path(con, mixed, schema) == "invalid"
    agree(con, tmp_path, mixed, schema)


@pytest.mark.parametrize(
    "body",
    [
        "a,2026-01-01T00:00:00,1,1.5,a,\n",  # a cell beyond the header's, empty
        "a,2026-01-01T00:00:00,1,1.5,a,,\n",
        "a,2026-01-01T00:00:00,1,1.5\n",  # a cell short
        'a,2026-01-01T00:00:00,1,1.5, "a"\n',  # a blank before a quote
        '"a\nb",2026-01-01T00:00:00,1,1.5,a\n',  # a line break in quotes
        "a,2026-01-01T00:00:00,1,1.5,a\r\nb,2026-01-01T00:00:00,1,1.5,a\n",  # mixed line ends
        "a,2026-01-01T00:00:00,1,101,a\n",  # over the maximum
        "a,2026-01-01T00:00:00,1,1.5,c\n",  # not in the enum
        "a,2026-01-01T00:00:00,1,1.5,a\na,2026-01-01T00:00:00,2,2.5,b\n",  # repeated key
        "a,2026-01-01T00:00:00,1,1_5,a\n",
        "a,2026-01-01T00:00:00,1,1.5,a\n,2026-01-01T00:00:00,1,1.5,a\n",  # empty id: NULL, not ''
        '"a",2026-01-01T00:00:00,"1","1.5",""\n',
    ],
)
def test_dialect_corners_agree_with_the_text_path(con: duckdb.DuckDBPyConnection, tmp_path: Path, body: str) -> None:
    agree(con, tmp_path, ("id,at,n,x,kind\n" + body).encode(), INTERNATIONAL)


def test_header_in_another_order_and_a_bom(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    content = "\ufeffkind,x,n,at,id\na,1.5,1,2026-01-01T00:00:00,z\nb,2.5,2,2026-01-02T00:00:00,y\n".encode()
    table = agree(con, tmp_path, content, INTERNATIONAL)
    assert isinstance(table, pa.Table) and table.column("id").to_pylist() == ["y", "z"]


def test_random_csv_text_is_read_like_the_text_path(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """Where the scan path takes a file, the text path reads the same rows."""
    schema = {"fields": [{"name": "x", "type": "string"}, {"name": "y", "type": "string"}],
              "missingValues": ["", "NA"]}
    pieces = ["a", "b", " ", '"', "\r", "é", "\t", ";", "\\", "'", "NA", '""', "\ufeff", "1", ",", "\n"]
    rng = random.Random(20261122)
    taken = 0
    for _ in range(1000):
        rows = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 3))) + "," +
                "".join(rng.choice(pieces) for _ in range(rng.randint(0, 3))) for _ in range(rng.randint(1, 3))]
        body = rng.choice(["\n", "\r\n"]).join(rows) + rng.choice(["", "\n"])
        if isinstance(agree(con, tmp_path, ("x,y\n" + body).encode(), schema), pa.Table):
            taken += 1
    assert taken > 100  # the scan path does not simply decline everything


def test_number_and_datetime_shortcuts_match_the_regular_expressions(con: duckdb.DuckDBPyConnection) -> None:
    """The cast-first parsers give what the regular-expression parsers give, for any text."""
    rng = random.Random(7)
    alphabet = list("0123456789.eE+-_ ,nNaAiIfFtyZT:") + ["\t", "\v", "\f", "\n"]
    texts = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))) for _ in range(20000)}
    texts |= {"infinity", "epoch", "2026-11-20", "2026-11-20 08:15:00.5", "NaN", "nan", "INF", "-inf", "Infinity", "1_000", "+-1", "\v1", "0x1F", "0b11", "-0", "007",
              "9223372036854775807", "9223372036854775808", "-9223372036854775808", "2026-11-20T08:15:00",
              "2026-11-20T08:15:00Z", "2026-11-20T08:15+01:00", "2026-11-20T09:15:00-0100", "2026-11-20T0815-01:00"}
    texts |= {f"2026-{m:02d}-{d:02d}T{h:02d}:{mi:02d}:{s}" for m in (1, 13) for d in (1, 32) for h in (0, 24)
              for mi in (0, 60) for s in ("00", "0Z", "+0", "-1", "60")}
    con.execute("CREATE OR REPLACE TEMP TABLE texts AS SELECT unnest(?::VARCHAR[]) AS s", [sorted(texts)])
    number_re = f"CASE WHEN regexp_full_match(s, {literal(NUMBER_RE)}) THEN TRY_CAST(s AS DOUBLE) END"
    integer_re = f"CASE WHEN regexp_full_match(s, {literal(INTEGER_RE)}) THEN TRY_CAST(s AS BIGINT) END"
    iso_re = (f"CASE WHEN regexp_full_match(s, {literal(ISO_DATETIME_RE)}) THEN "
              "CASE WHEN regexp_matches(s, '([+-]\\d{2}:?\\d{2}|Z)$') "
              "THEN timezone('UTC', TRY_CAST(s AS TIMESTAMPTZ)) ELSE TRY_CAST(s AS TIMESTAMP) END END")
    for expression, reference in ((parse_expression("s", Field.of({"name": "s", **{"type": "number"}})), number_re),
                                  (parse_expression("s", Field.of({"name": "s", **{"type": "integer"}})), integer_re),
                                  (parse_expression("s", Field.of({"name": "s", **{"type": "datetime"}})), iso_re)):
        differ = con.execute(
            f"SELECT s, ({expression}) AS a, ({reference}) AS b FROM texts "
            f"WHERE a IS DISTINCT FROM b AND NOT (isnan(try_cast(a AS DOUBLE)) AND isnan(try_cast(b AS DOUBLE)))"
        ).fetchall()
        assert differ == []


def test_typed_number_reading_matches_the_text_parser(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """Where DuckDB's reader types a number, it reads it as ``field_parsing`` does (NaN and infinity aside)."""
    rng = random.Random(11)
    alphabet = list("0123456789.eE+-, ")
    texts = sorted({"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 7))) for _ in range(600)})
    con.execute("CREATE OR REPLACE TEMP TABLE texts AS SELECT unnest(?::VARCHAR[]) AS s", [texts])
    for mark in (".", ","):
        field = {"name": "v", "type": "number", "decimalChar": mark}
        expected = dict(con.execute(f"SELECT s, {parse_expression('s', Field.of(field))} FROM texts").fetchall())
        schema = {"fields": [{"name": "k", "type": "string"}, field]}
        accepted = 0
        for text in texts:
            content = f"k;v\nx;{text}\n".encode()
            scan = scan_path(con, tmp_path, content, schema, delimiter=";")
            assert scan != "declined"
            if isinstance(scan, pa.Table):
                accepted += 1
                assert _rows(scan) == _rows(pa.table({"k": ["x"], "v": [expected[text]]})), text
            else:
                assert expected[text] is None or not math.isfinite(expected[text]), text
        assert accepted > 50


def test_sorted_key_watch_sees_repeats_across_batches() -> None:
    def batch(ids: list[str], xs: list[float]) -> pa.RecordBatch:
        return pa.record_batch({"id": ids, "x": xs})

    watch = SortedKeyWatch(["id", "x"])
    watch.check(batch(["a", "a"], [1.0, 2.0]))
    watch.check(batch(["b"], [float("nan")]))
    with pytest.raises(RepeatedKey):
        watch.check(batch(["b", "c"], [float("nan"), 1.0]))
    watch = SortedKeyWatch(["id"])
    watch.check(batch(["a", "b"], [1.0, 1.0]))
    with pytest.raises(RepeatedKey):
        watch.check(batch(["c", "c"], [1.0, 2.0]))
