"""Data fidelity on ingest: what a careless feed delivers is either published exactly or quarantined with a report.

Classes covered (issue 13): header labels that repeat, are blank, or do not
match the schema; JSON objects that repeat a key; datetime offsets (instants
versus local times); date and datetime patterns matched over the whole value
with their declared widths; UTF-8 bytes in a feed declared in a single-byte
encoding.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import select

from catalogue import duck
from catalogue.errors import MalformedFeed, SchemaError
from catalogue.schema.model import TableSchema
from catalogue.hub import Hub
from catalogue.ingest.csv_scan import ScanFailed, plan_csv_scan, validate_csv
from catalogue.ingest.pipeline import Delivery, IngestResult, ingest_delivery
from catalogue.ingest.readers import read_delivery
from catalogue.ingest.validation import discard_typed, validate_delivery
from catalogue.meta.models import Dataset, HarvestJob
from catalogue.schema.field_parsing import DIRECTIVES, padded_glob, pattern_regex
from catalogue.schema.table_schema import check_schema
from catalogue.store.keys import part_key
from tests.conftest import parquet_file

AMOUNTS = {
    "fields": [{"name": "id", "type": "integer"}, {"name": "amount", "type": "number"}],
    "primaryKey": ["id"],
}


def text_verdict(content: bytes, schema: dict[str, Any], fmt: str = "csv", **options: Any) -> list[tuple[Any, ...]]:
    """The text path's errors (type, row, field, label or cell), with exact types and as text: both must agree."""
    con = duck.connect(memory_limit_mb=256, threads=1, spatial=False)
    verdicts = []
    try:
        for exact in (True, False):
            try:
                raw = read_delivery(content, fmt, options, TableSchema.from_stored(schema), exact_types=exact)
            except MalformedFeed:
                assert exact, "only the typed fast path may fail to read a well-formed file"
                continue
            checked = validate_delivery(con, raw, TableSchema.from_stored(schema), name="t", place="test")
            discard_typed(con)
            verdicts.append([(e["type"], e.get("rowNumber"), e.get("fieldName"), e.get("cell", e.get("label")))
                             for e in checked.report["tasks"][0]["errors"]])
            assert checked.valid is not verdicts[-1]
    finally:
        con.close()
    assert verdicts[0] == verdicts[-1]
    return verdicts[-1]


def scan_declines(tmp_path: Path, content: bytes, schema: dict[str, Any], **options: Any) -> bool:
    """Whether DuckDB's CSV path leaves the delivery to the text path (declined, or not plainly valid)."""
    path = tmp_path / "delivery.csv"
    path.write_bytes(content)
    con = duck.connect(memory_limit_mb=256, threads=1, spatial=False)
    try:
        return validate_csv(con, path, options, TableSchema.from_stored(schema), tmp_path, name="t", place="t") is None
    except ScanFailed:
        return True
    finally:
        discard_typed(con)
        con.close()


def scan_table(tmp_path: Path, content: bytes, schema: dict[str, Any], **options: Any) -> pa.Table:
    """The rows DuckDB's CSV path reads from a valid delivery, in delivery order."""
    path = tmp_path / "delivery.csv"
    path.write_bytes(content)
    con = duck.connect(memory_limit_mb=256, threads=1, spatial=False)
    try:
        checked = validate_csv(con, path, options, TableSchema.from_stored(schema), tmp_path, name="t", place="t")
        assert checked is not None and checked.relation is not None
        return con.execute(checked.relation).arrow().read_all()
    finally:
        discard_typed(con)
        con.close()


def text_table(content: bytes, schema: dict[str, Any], **options: Any) -> pa.Table:
    """The rows the text path reads from a valid delivery, in key (else delivery) order."""
    con = duck.connect(memory_limit_mb=256, threads=1, spatial=False)
    try:
        checked = validate_delivery(con, read_delivery(content, "csv", options, TableSchema.from_stored(schema), exact_types=False), TableSchema.from_stored(schema),
                                    name="t", place="test")
        assert checked.relation is not None, checked.report
        return con.execute(checked.relation).arrow().read_all()
    finally:
        discard_typed(con)
        con.close()


def ingest(hub: Hub, name: str, content: bytes, fmt: str = "csv", **options: Any) -> tuple[IngestResult, dict]:
    """Ingest ``content`` as the harvester does; the outcome and the report stored with it."""
    result = ingest_delivery(hub, name, Delivery(content, fmt, options, "replace", {"source_url": "test"}))
    assert result.report_key, "every outcome keeps its report"
    return result, json.loads(hub.storage.read_bytes(result.report_key))


def error_types(report: dict[str, Any]) -> list[str]:
    """The types of a report's errors: the delivery's (unreadable) and its table's."""
    return [e["type"] for e in report["errors"] + [e for task in report["tasks"] for e in task["errors"]]]


# -- header labels ----------------------------------------------------------

@pytest.mark.parametrize(("header", "expected"), [
    ("id;id;amount", [("duplicate-label", None, "id", "id")]),
    ("id;amount;amount", [("duplicate-label", None, "amount", "amount")]),
    ("id;;amount", [("blank-label", None, "", "")]),
    ("id; ;amount", [("blank-label", None, "", " ")]),
    ("id;amount;id", [("duplicate-label", None, "id", "id")]),
    ("id", [("missing-label", None, "amount", "")]),  # shorter than the schema
    ("id;amount;x", [("extra-label", None, "", "x")]),  # longer
    ("__row;id;amount", [("extra-label", None, "", "__row")]),  # our own column names are not special
    ("__c0;id;amount", [("extra-label", None, "", "__c0")]),
    ('"id;amount";id;amount', [("extra-label", None, "", "id;amount")]),
])
def test_header_labels_that_break_the_schema_are_reported_on_both_paths(
    tmp_path: Path, header: str, expected: list[tuple[Any, ...]]
) -> None:
    width = len(next(csv.reader([header], delimiter=";")))
    cells = ";".join(str(n) for n in range(1, width + 1))
    content = f"{header}\n{cells}\n".encode()
    assert text_verdict(content, AMOUNTS, delimiter=";") == expected
    assert scan_declines(tmp_path, content, AMOUNTS, delimiter=";")


def test_a_repeated_label_still_has_its_first_columns_cells_checked() -> None:
    content = b"id;amount;id\n1;x;2\n"
    assert text_verdict(content, AMOUNTS, delimiter=";") == [
        ("duplicate-label", None, "id", "id"), ("type-error", 2, "amount", "x")]


@pytest.mark.parametrize(("doc", "problem"), [
    (b'[{"id": 1, "id": 2, "amount": 3}]', "JSON row 1 names the key 'id' more than once"),
    (b'[{"id": 1, "amount": 3}, {"amount": 1, "id": 2, "amount": 3}]', "JSON row 2 names the key 'amount'"),
    (b'{"records": [{"id": 1, "amount": 3, "id": 1}]}', "JSON row 1 names the key 'id'"),
])
def test_json_objects_that_repeat_a_key_are_malformed(doc: bytes, problem: str) -> None:
    with pytest.raises(MalformedFeed, match=problem):
        read_delivery(doc, "json", {}, TableSchema.from_stored(AMOUNTS))


def test_geojson_properties_that_repeat_a_key_are_malformed() -> None:
    doc = (b'{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": null, '
           b'"properties": {"id": 1, "id": 2}}]}')
    with pytest.raises(MalformedFeed, match="GeoJSON feature 1 names the property 'id' more than once"):
        read_delivery(doc, "geojson", {}, TableSchema.from_stored(AMOUNTS))


def test_json_blank_and_missing_keys_are_label_errors() -> None:
    doc = b'[{"id": 1, "": 2}]'
    assert text_verdict(doc, AMOUNTS, fmt="json") == [
        ("missing-label", None, "amount", ""), ("blank-label", None, "", "")]


@pytest.mark.parametrize(("content", "fmt", "options", "error"), [
    (b"id;id;amount\n1;2;3.5\n", "csv", {"delimiter": ";"}, "duplicate-label"),
    (b"id;;amount\n1;2;3.5\n", "csv", {"delimiter": ";"}, "blank-label"),
    (b"id;amount;x\n1;2;3\n", "csv", {"delimiter": ";"}, "extra-label"),
    (b"id\n1\n", "csv", {"delimiter": ";"}, "missing-label"),
    (b"id;amount\n1;2;3\n", "csv", {"delimiter": ";"}, "format-error"),  # a row longer than the header
    (b'[{"id": 1, "id": 2, "amount": 3}]', "json", {}, "format-error"),
])
def test_a_bad_header_quarantines_the_delivery_with_a_report(
    make_catalogue: Any, content: bytes, fmt: str, options: dict[str, Any], error: str
) -> None:
    hub = make_catalogue("amounts", AMOUNTS, b"id,amount\n1,2.5\n")
    result, report = ingest(hub, "amounts", content, fmt, **options)
    assert (result.status, result.version) == ("quarantined", 1)
    assert report["valid"] is False
    assert error_types(report) == [error]


# -- declared encoding --------------------------------------------------------

STREETS = {"fields": [{"name": "id", "type": "integer"}, {"name": "street", "type": "string"}], "primaryKey": ["id"]}
STREETS_TEXT = "id;street\n1;Müller „Straße“\n2;Königstraße\n"


@pytest.mark.parametrize("declared", ["cp1252", "latin-1", "iso-8859-15", "ISO8859_15", "windows-1252"])
def test_utf8_bytes_in_a_feed_declared_single_byte_are_quarantined(
    make_catalogue: Any, tmp_path: Path, declared: str
) -> None:
    content = STREETS_TEXT.encode("utf-8")
    with pytest.raises(MalformedFeed, match="Declare 'encoding: utf-8'"):
        read_delivery(content, "csv", {"delimiter": ";", "encoding": declared}, TableSchema.from_stored(STREETS), exact_types=False)
    assert scan_declines(tmp_path, content, STREETS, delimiter=";", encoding=declared)
    hub = make_catalogue("streets", STREETS, b"id;street\n1;Markt\n", options={"delimiter": ";"})
    result, report = ingest(hub, "streets", content, delimiter=";", encoding=declared)
    assert (result.status, result.version) == ("quarantined", 1)
    assert error_types(report) == ["format-error"]
    mojibake = "ü".encode().decode(declared)  # 'Ã¼' in cp1252 and latin-1, 'ÃŒ' in iso-8859-15
    assert f"'ü' would be published as '{mojibake}'" in report["errors"][0]["note"]
    assert "encoding: utf-8" in report["errors"][0]["note"]


@pytest.mark.parametrize("declared", ["cp1252", "latin-1", "iso-8859-15"])
def test_a_feed_honestly_in_its_single_byte_encoding_is_published_as_delivered(
    make_catalogue: Any, declared: str
) -> None:
    text = STREETS_TEXT if declared == "cp1252" else STREETS_TEXT.replace("„", '"').replace("“", '"')
    hub = make_catalogue("streets", STREETS, text.encode(declared), options={"delimiter": ";", "encoding": declared})
    with hub.sessions() as session:
        dataset = session.scalar(select(Dataset).where(Dataset.name == "streets"))
        assert dataset.current_version.row_count == 2
    con = duck.connect(memory_limit_mb=256, threads=1, spatial=False)
    table = read_delivery(text.encode(declared), "csv", {"delimiter": ";", "encoding": declared}, TableSchema.from_stored(STREETS))
    con.close()
    assert table.column("street").to_pylist() == ["Müller „Straße“" if declared == "cp1252" else 'Müller "Straße"',
                                                   "Königstraße"]


def test_ascii_and_utf8_declarations_are_not_second_guessed() -> None:
    assert read_delivery(b"id;street\n1;Markt\n", "csv", {"delimiter": ";", "encoding": "cp1252"}, TableSchema.from_stored(STREETS)).num_rows == 1
    utf8 = read_delivery(STREETS_TEXT.encode(), "csv", {"delimiter": ";", "encoding": "utf-8"}, TableSchema.from_stored(STREETS))
    assert utf8.column("street").to_pylist()[0] == "Müller „Straße“"


def test_utf8_json_declared_cp1252_is_malformed() -> None:
    doc = json.dumps([{"id": 1, "street": "Müller"}], ensure_ascii=False).encode()
    with pytest.raises(MalformedFeed, match="declared as cp1252 but its bytes are UTF-8"):
        read_delivery(doc, "json", {"encoding": "cp1252"}, TableSchema.from_stored(STREETS))
    assert read_delivery(doc.decode().encode("cp1252"), "json", {"encoding": "cp1252"}, TableSchema.from_stored(STREETS)).num_rows == 1


# -- date and datetime patterns -----------------------------------------------

PATTERNS = [
    # (type, pattern, {accepted value: typed}, [refused values])
    ("date", "%d.%m.%Y", {"01.02.2026": dt.date(2026, 2, 1), "1.2.2026": dt.date(2026, 2, 1)},
     ["01.01.26", "01.01.202", "01.01.02026", "001.01.2026", "01.001.2026", "01.01.2026x", " 01.01.2026",
      "01.01.2026 ", "01-01-2026", "01.01.", "30.02.2026"]),
    ("date", "%y%m%d", {"260201": dt.date(2026, 2, 1)}, ["20260201", "2602011", "2602"]),
    ("date", "%Y-%j", {"2026-324": dt.date(2026, 11, 20), "2026-1": dt.date(2026, 1, 1)}, ["2026-3240", "26-324"]),
    ("date", "%d %b %Y", {"20 Nov 2026": dt.date(2026, 11, 20), "20 nov 2026": dt.date(2026, 11, 20)},
     ["20 Novem 2026", "20 Nov 26", "20 Nov. 2026"]),
    ("date", "%d %h %Y", {"20 Nov 2026": dt.date(2026, 11, 20)}, ["20 Nov 20266"]),
    ("date", "%d %B %Y", {"20 November 2026": dt.date(2026, 11, 20)}, ["20 Nov 2026", "20 Novembers 2026"]),
    ("date", "%a %d.%m.%Y", {"Fri 20.11.2026": dt.date(2026, 11, 20)}, ["Fr 20.11.2026", "Friday 20.11.2026"]),
    ("date", "%A %d.%m.%Y", {"Friday 20.11.2026": dt.date(2026, 11, 20)}, ["Fri 20.11.2026"]),
    ("date", "%Y-%m-%d%%", {"2026-11-20%": dt.date(2026, 11, 20)}, ["2026-11-20", "2026-11-20%%"]),
    ("datetime", "%d.%m.%Y %H:%M:%S",
     {"20.11.2026 08:15:30": dt.datetime(2026, 11, 20, 8, 15, 30), "20.11.2026 8:5:3": dt.datetime(2026, 11, 20, 8, 5, 3)},
     ["20.11.26 08:15:30", "20.11.2026 08:15:300", "20.11.2026 008:15:30", "20.11.2026 08:015:30",
      "20.11.2026  08:15:30", "20.11.2026 08:15", "20.11.2026T08:15:30", "20.11.2026 24:00:00"]),
    ("datetime", "%Y-%m-%d %H:%M:%S.%f",
     {"2026-11-20 08:15:30.5": dt.datetime(2026, 11, 20, 8, 15, 30, 500000),
      "2026-11-20 08:15:30.123456": dt.datetime(2026, 11, 20, 8, 15, 30, 123456)},
     ["2026-11-20 08:15:30.1234567", "2026-11-20 08:15:30.", "2026-11-20 08:15:30"]),
    ("datetime", "%I:%M %p %d.%m.%Y",
     {"08:05 PM 20.11.2026": dt.datetime(2026, 11, 20, 20, 5), "8:05 am 20.11.2026": dt.datetime(2026, 11, 20, 8, 5)},
     ["08:05 P 20.11.2026", "08:05 PMx 20.11.2026", "008:05 PM 20.11.2026"]),
    ("time", "%H:%M", {"08:15": dt.time(8, 15), "8:15": dt.time(8, 15)}, ["08:15:00", "8:155", "108:15", "08:15 "]),
    ("time", "%H.%M.%S", {"23.59.59": dt.time(23, 59, 59)}, ["23.59.5999", "23.59"]),
]


@pytest.mark.parametrize(("kind", "pattern", "accepted", "refused"), PATTERNS,
                         ids=[f"{kind}:{pattern}" for kind, pattern, *_ in PATTERNS])
def test_a_pattern_must_match_the_whole_value_with_its_widths_on_both_paths(
    tmp_path: Path, kind: str, pattern: str, accepted: dict[str, Any], refused: list[str]
) -> None:
    schema = {"fields": [{"name": "id", "type": "integer"}, {"name": "v", "type": kind, "format": pattern}]}
    values = [*accepted, *refused]
    content = ("id;v\n" + "".join(f"{i};{v}\n" for i, v in enumerate(values))).encode()
    assert text_verdict(content, schema, delimiter=";") == [
        ("type-error", len(accepted) + i + 2, "v", v) for i, v in enumerate(refused)]
    assert scan_declines(tmp_path, content, schema, delimiter=";")
    good = ("id;v\n" + "".join(f"{i};{v}\n" for i, v in enumerate(accepted))).encode()
    assert text_verdict(good, schema, delimiter=";") == []
    assert scan_table(tmp_path, good, schema, delimiter=";").column("v").to_pylist() == list(accepted.values())


def test_every_supported_directive_is_tested() -> None:
    used = {d for _, pattern, *_ in PATTERNS for d in re.findall(r"%(.)", pattern.replace("%%", "%!"))}
    assert used | {"z", "%"} >= set(DIRECTIVES) - {"%"}, "each directive needs a row in PATTERNS (%z: offsets below)"


@pytest.mark.parametrize("pattern", ["%d.%m.%Y %Q", "%-d.%m.%Y", "%d.%m.%Y %Z", "%s"])
def test_a_schema_with_an_unsupported_directive_is_refused(pattern: str) -> None:
    with pytest.raises(SchemaError, match="is not a supported directive"):
        check_schema({"fields": [{"name": "v", "type": "date", "format": pattern}]})


# -- datetime offsets: instants or local times, never both in one field ------

TIMES = {"fields": [{"name": "id", "type": "integer"}, {"name": "ts", "type": "datetime"}], "primaryKey": ["id"]}
MIXED_NOTE = ('type is "datetime/default": the value has an offset where the field\'s first value (row 3) has none; '
              "a datetime field holds either instants (every value with an offset or Z) or local times (none)")


@pytest.mark.parametrize(("values", "expected"), [
    # the first readable value decides; the others of the other kind are errors naming row and field
    (["2026-11-20T08:15:30.123+01:00", "2026-11-20T08:15:30", "2026-11-20T08:15:30Z"], [(3, "2026-11-20T08:15:30")]),
    (["2026-11-20T08:15:30", "2026-11-20T08:15:30Z", "2026-11-20 08:15:30-02:00", "2026-11-20 08:15:30"],
     [(3, "2026-11-20T08:15:30Z"), (4, "2026-11-20 08:15:30-02:00")]),
    (["", "yesterday", "2026-11-20T08:15:30+0100", "2026-11-20T08:15:30.5"], [(3, "yesterday"), (5, "2026-11-20T08:15:30.5")]),
])
def test_offsets_on_some_values_of_a_field_only_are_errors_on_both_paths(
    tmp_path: Path, values: list[str], expected: list[tuple[int, str]]
) -> None:
    content = ("id;ts\n" + "".join(f"{i};{v}\n" for i, v in enumerate(values))).encode()
    assert text_verdict(content, TIMES, delimiter=";") == [("type-error", row, "ts", cell) for row, cell in expected]
    assert scan_declines(tmp_path, content, TIMES, delimiter=";")
    doc = json.dumps([{"id": i, "ts": v or None} for i, v in enumerate(values)]).encode()
    assert text_verdict(doc, TIMES, fmt="json") == [("type-error", row, "ts", cell) for row, cell in expected]


def test_the_report_says_which_value_decided_and_why() -> None:
    content = b"id;ts\n0;\n1;2026-11-20T08:15:30\n2;2026-11-20T08:15:30+01:00\n"
    con = duck.connect(memory_limit_mb=256, threads=1, spatial=False)
    try:
        checked = validate_delivery(con, read_delivery(content, "csv", {"delimiter": ";"}, TableSchema.from_stored(TIMES)), TableSchema.from_stored(TIMES),
                                    name="t", place="test")
    finally:
        discard_typed(con)
        con.close()
    (error,) = checked.report["tasks"][0]["errors"]
    assert (error["rowNumber"], error["fieldName"], error["cell"], error["note"]) == (
        4, "ts", "2026-11-20T08:15:30+01:00", MIXED_NOTE)


@pytest.mark.parametrize(("values", "typed"), [
    (["2026-11-20T08:15:30.123+01:00", "2026-11-20 07:00:00Z", "2026-11-20T01:00:00-0530"],
     [dt.datetime(2026, 11, 20, 7, 15, 30, 123000, tzinfo=dt.timezone.utc),
      dt.datetime(2026, 11, 20, 7, tzinfo=dt.timezone.utc), dt.datetime(2026, 11, 20, 6, 30, tzinfo=dt.timezone.utc)]),
    (["2026-11-20T08:15:30.123", "2026-11-20 07:00:00"],
     [dt.datetime(2026, 11, 20, 8, 15, 30, 123000), dt.datetime(2026, 11, 20, 7)]),
])
def test_a_field_of_instants_is_stored_as_instants_and_one_of_local_times_stays_local(
    tmp_path: Path, values: list[str], typed: list[dt.datetime]
) -> None:
    content = ("id;ts\n" + "".join(f"{i};{v}\n" for i, v in enumerate(values))).encode()
    for table in (scan_table(tmp_path, content, TIMES, delimiter=";"), text_table(content, TIMES, delimiter=";")):
        kind = table.schema.field("ts").type
        assert (kind.tz is not None) == (typed[0].tzinfo is not None)
        assert kind.tz in (None, "UTC")  # the same zone name (and part bytes) on every machine
        assert table.column("ts").to_pylist() == typed


def test_a_pattern_reading_an_offset_makes_instants() -> None:
    schema = {"fields": [{"name": "ts", "type": "datetime", "format": "%d.%m.%Y %H:%M %z"}]}
    table = text_table(b"ts\n20.11.2026 08:15 +01:00\n20.11.2026 08:15 -0200\n", schema)
    assert table.column("ts").to_pylist() == [dt.datetime(2026, 11, 20, 7, 15, tzinfo=dt.timezone.utc),
                                              dt.datetime(2026, 11, 20, 10, 15, tzinfo=dt.timezone.utc)]
    assert text_verdict(b"ts\n20.11.2026 08:15\n20.11.2026 08:15 +1\n", schema) == [
        ("type-error", 2, "ts", "20.11.2026 08:15"), ("type-error", 3, "ts", "20.11.2026 08:15 +1")]


@pytest.mark.parametrize("kind", ["date", "time"])
def test_an_offset_pattern_is_refused_where_no_offset_can_be_kept(kind: str) -> None:
    with pytest.raises(SchemaError, match="an offset"):
        check_schema({"fields": [{"name": "v", "type": kind, "format": "%d.%m.%Y %z"}]})


def test_datetime_bounds_with_an_offset_compare_as_instants() -> None:
    schema = {"fields": [{"name": "ts", "type": "datetime",
                          "constraints": {"minimum": "2026-11-20T08:00:00+01:00"}}]}
    # 07:00Z is the bound itself; 06:59:59Z is before it (a bound read without its offset would refuse both)
    assert text_verdict(b"ts\n2026-11-20T07:00:00Z\n2026-11-20T06:59:59Z\n", schema) == [
        ("constraint-error", 3, "ts", "2026-11-20T06:59:59Z")]


@pytest.mark.parametrize(("first", "then", "kept"), [
    (b"id;ts\n1;2026-11-20T08:15:30Z\n", b"id;ts\n2;2026-11-20T09:00:00\n", "instants"),
    (b"id;ts\n1;2026-11-20T08:15:30\n", b"id;ts\n2;2026-11-20T09:00:00+01:00\n", "local times"),
])
def test_an_appended_delivery_keeps_to_the_kind_of_the_version_it_extends(
    make_catalogue: Any, first: bytes, then: bytes, kept: str
) -> None:
    hub = make_catalogue("times", TIMES, first, mode="append", options={"delimiter": ";"})
    delivery = Delivery(then, "csv", {"delimiter": ";"}, "append", {"source_url": "test"})
    result = ingest_delivery(hub, "times", delivery)
    assert (result.status, result.version) == ("quarantined", 1)
    (error,) = result.report["tasks"][0]["errors"]
    assert (error["type"], error["rowNumber"], error["fieldName"]) == ("type-error", 2, "ts")
    assert f"where the version it is appended to holds {kept}" in error["note"]
    # the same kind is appended; a delivery without any value keeps the version's column type
    same = then.replace(b"+01:00", b"") if kept == "local times" else then.replace(b"09:00:00", b"09:00:00Z")
    for content in (same, b"id;ts\n3;\n"):
        appended = ingest_delivery(hub, "times", Delivery(content, "csv", {"delimiter": ";"}, "append", {}))
        assert appended.status == "published", appended.report
    with hub.sessions() as session:
        parts = session.scalar(select(Dataset).where(Dataset.name == "times")).current_version.parts
    zones = {parquet_file(hub.storage, part_key("times", p["sha256"])).schema_arrow.field("ts").type.tz for p in parts}
    assert zones == ({"UTC"} if kept == "instants" else {None})


def test_the_same_digits_as_instants_instead_of_local_times_are_a_change(make_catalogue: Any) -> None:
    hub = make_catalogue("times", TIMES, b"id;ts\n1;2026-11-20T08:15:30\n2;2026-11-20T09:00:00\n",
                         options={"delimiter": ";"})
    zoned = b"id;ts\n1;2026-11-20T08:15:30Z\n2;2026-11-20T09:00:00Z\n"
    result = ingest_delivery(hub, "times", Delivery(zoned, "csv", {"delimiter": ";"}, "replace", {}))
    assert (result.status, result.version) == ("published", 2)
    assert {k: result.changes[k] for k in ("added", "removed", "changed")} == {"added": 0, "removed": 0, "changed": 2}
    again = ingest_delivery(hub, "times", Delivery(zoned, "csv", {"delimiter": ";"}, "replace", {}))
    assert (again.status, again.version) == ("unchanged", 2)


@pytest.mark.parametrize("pattern", ["%d.%m.%Y %H:%M", "%Y-%m-%dT%H:%M:%S", "%y%m%d", "%Y-%j", "%I:%M [%Y]*?%%"])
def test_the_padded_shortcut_takes_nothing_the_widths_refuse(pattern: str) -> None:
    """A value matching the zero-padded GLOB also matches the pattern's regular expression."""
    rng = random.Random(13)
    alphabet = list("0123456789 .:-T[]*?%x") + ["\t"]
    glob = padded_glob(pattern)
    assert glob is not None
    texts = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 22))) for _ in range(20000)}
    canonical = dt.datetime(2026, 11, 20, 8, 5, 3).strftime(pattern)
    texts |= {canonical, " " + canonical, canonical + " "}
    con = duck.connect(memory_limit_mb=256, threads=1, spatial=False)
    try:
        loose = con.execute(
            "SELECT s FROM (SELECT unnest(?::VARCHAR[]) AS s) WHERE s GLOB ? AND NOT regexp_full_match(s, ?)",
            [sorted(texts), glob, pattern_regex(pattern)]).fetchall()
        (taken,) = con.execute("SELECT ? GLOB ?", [canonical, glob]).fetchone()  # type: ignore[misc]
    finally:
        con.close()
    assert loose == []
    assert taken, "the zero-padded value takes the shortcut"


# -- the same classes end to end: harvested over HTTP, the job ends with a report --------

WASTE = "waste-bin-fill-levels"  # a German cp1252 feed: ';', dd.mm.yyyy, decimal comma


def _waste_from_csv(hub: Hub) -> None:
    """The demo harvests waste-bin-fill-levels from its Excel export; these cases need the CSV of the same rows."""
    from catalogue.meta.models import HarvestSource

    with hub.sessions.begin() as session:
        source = session.scalar(select(HarvestSource).where(HarvestSource.name == WASTE))
        source.url, source.format = f"feeds/{WASTE}.csv", "csv"
        source.options = {"delimiter": ";", "encoding": "cp1252"}


@pytest.mark.parametrize(("change", "expected"), [
    (lambda text: text.replace("bin_id;street;", "bin_id;bin_id;", 1), ("duplicate-label", None, "bin_id")),
    (lambda text: text.replace("bin_id;street;", "bin_id;;", 1), ("blank-label", None, "")),
    (lambda text: text.replace(";11.11.2026;", ";11.11.26;", 1), ("type-error", 2, "last_emptied")),
    (lambda text: text.replace(";20.11.2026 06:07;", ";20.11.26 06:07;", 1), ("type-error", 2, "measured_at")),
])
def test_a_harvested_feed_with_a_bad_header_or_date_ends_quarantined_with_its_report(
    harvested: Hub, feed_dir: Path, change: Any, expected: tuple[Any, ...]
) -> None:
    from harvesters.runner import harvest_source

    _waste_from_csv(harvested)
    feed = feed_dir / "feeds" / f"{WASTE}.csv"
    feed.write_bytes(change(feed.read_bytes().decode("cp1252")).encode("cp1252"))
    outcome = harvest_source(harvested, WASTE)
    assert (outcome.status, outcome.version) == ("quarantined", 1)
    with harvested.sessions() as session:
        job = session.get(HarvestJob, outcome.job_id)
        assert (job.status, job.version_number) == ("quarantined", 1)
        report = json.loads(harvested.storage.read_bytes(job.report_key))
    found = [(e["type"], e.get("rowNumber"), e["fieldName"]) for e in report["tasks"][0]["errors"]]
    if expected[0].endswith("label"):  # the street column lost its label: missing, its cells unchecked
        assert found[:2] == [("missing-label", None, "street"), expected]
    else:
        assert found == [expected]


def test_a_harvested_utf8_feed_declared_cp1252_ends_quarantined_naming_utf8(harvested: Hub, feed_dir: Path) -> None:
    from harvesters.runner import harvest_source

    _waste_from_csv(harvested)
    feed = feed_dir / "feeds" / f"{WASTE}.csv"
    feed.write_bytes(feed.read_bytes().decode("cp1252").encode("utf-8"))
    outcome = harvest_source(harvested, WASTE)
    assert (outcome.status, outcome.version) == ("quarantined", 1)
    with harvested.sessions() as session:
        job = session.get(HarvestJob, outcome.job_id)
        assert job.status == "quarantined"
        report = json.loads(harvested.storage.read_bytes(job.report_key))
    assert [e["type"] for e in report["errors"]] == ["format-error"]
    assert "Declare 'encoding: utf-8'" in report["errors"][0]["note"]
