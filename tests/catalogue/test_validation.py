"""Column-wise validation: types, German formats, constraints, keys, and the report's shape."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pytest

from catalogue import duck
from catalogue.errors import MalformedFeed
from catalogue.schema.model import TableSchema
from catalogue.ingest.readers import read_delivery
from catalogue.ingest.validation import discard_typed, validate_delivery


@dataclass
class Checked:
    valid: bool
    report: dict[str, Any]
    error_count: int
    table: pa.Table | None


def check(content: bytes, schema: dict[str, Any], fmt: str = "csv", **options: Any) -> Checked:
    """Validate through the typed fast path and the text path the store uses for reports; both must agree."""
    con = duck.connect(memory_limit_mb=512, threads=1)
    results = []
    try:
        for exact in (True, False):
            try:
                raw = read_delivery(content, fmt, options, TableSchema.from_stored(schema), exact_types=exact)
            except MalformedFeed:
                assert exact, "only the typed fast path may fail to read a well-formed file"
                continue
            validated = validate_delivery(con, raw, TableSchema.from_stored(schema), name="t", place="test", max_errors=50)
            table = con.execute(validated.relation).arrow().read_all() if validated.relation else None
            discard_typed(con)
            results.append(Checked(validated.valid, validated.report, validated.error_count, table))
    finally:
        con.close()
    first, last = results[0], results[-1]
    assert (first.valid, first.error_count) == (last.valid, last.error_count)
    if last.valid:
        assert first.table.equals(last.table)
    return last


def errors_of(result: Checked) -> list[tuple[Any, ...]]:
    out = []
    for e in result.report["tasks"][0]["errors"]:
        out.append((e["type"], e.get("rowNumber"), e.get("fieldName"), e.get("cell", e.get("label"))))
    return out


GERMAN = {
    "fields": [
        {"name": "ort", "type": "string"},
        {"name": "betrag", "type": "number", "decimalChar": ",", "groupChar": "."},
        {"name": "menge", "type": "integer", "groupChar": "."},
        {"name": "datum", "type": "date", "format": "%d.%m.%Y"},
        {"name": "zeit", "type": "datetime", "format": "%d.%m.%Y %H:%M"},
        {"name": "online", "type": "boolean", "trueValues": ["ja"], "falseValues": ["nein"]},
    ],
}


def test_german_csv_values_come_out_exact() -> None:
    content = (
        "ort;betrag;menge;datum;zeit;online\r\n"
        "Königstraße;12.345,67;1.100;01.02.2026;20.11.2026 08:15;ja\r\n"
        "Schloßallee;-0,5;240;31.12.2025;01.01.2026 00:00;nein\r\n"
        "Mühlenweg – Gebühr in €;1.234.567,89;1.000.000;29.02.2024;29.02.2024 23:59;ja\r\n"
    ).encode("cp1252")
    result = check(content, GERMAN, delimiter=";", encoding="cp1252")
    assert result.valid, result.report
    assert result.table.to_pylist() == [
        {"ort": "Königstraße", "betrag": 12345.67, "menge": 1100, "datum": dt.date(2026, 2, 1),
         "zeit": dt.datetime(2026, 11, 20, 8, 15), "online": True},
        {"ort": "Schloßallee", "betrag": -0.5, "menge": 240, "datum": dt.date(2025, 12, 31),
         "zeit": dt.datetime(2026, 1, 1, 0, 0), "online": False},
        {"ort": "Mühlenweg – Gebühr in €", "betrag": 1234567.89, "menge": 1000000, "datum": dt.date(2024, 2, 29),
         "zeit": dt.datetime(2024, 2, 29, 23, 59), "online": True},
    ]


@pytest.mark.parametrize(
    ("betrag", "menge", "datum"),
    [
        ("12.5", "1.100", "01.02.2026"),  # '.' is the group mark here, not a decimal point
        ("12,5", "1.10", "01.02.2026"),  # groups have three digits
        ("12,5", "12,5", "01.02.2026"),  # no fraction in an integer
        ("12,5", "1", "2026-02-01"),  # ISO date where dd.mm.yyyy is declared
        ("12,5", "1", "30.02.2026"),  # no such day
    ],
)
def test_german_values_that_are_not_quite_right_are_type_errors(betrag: str, menge: str, datum: str) -> None:
    content = f"ort;betrag;menge;datum;zeit;online\nA;{betrag};{menge};{datum};20.11.2026 08:15;ja\n".encode()
    result = check(content, GERMAN, delimiter=";")
    assert not result.valid
    assert {e[0] for e in errors_of(result)} == {"type-error"}
    assert result.error_count == 1


def test_decimal_comma_without_group_char_refuses_thousands_dots() -> None:
    schema = {"fields": [{"name": "x", "type": "number", "decimalChar": ","}]}
    result = check(b"x\n12.345\n12,5\n", schema, delimiter=";")
    assert errors_of(result) == [("type-error", 2, "x", "12.345")]


def test_constraints_keys_and_report_shape() -> None:
    schema = {
        "fields": [
            {"name": "id", "type": "integer"},
            {"name": "code", "type": "string", "constraints": {"required": True, "pattern": "[A-Z]{2}", "unique": True}},
            {"name": "level", "type": "number", "constraints": {"minimum": 0, "maximum": 100}},
            {"name": "kind", "type": "string", "constraints": {"enum": ["a", "b"]}},
        ],
        "primaryKey": ["id"],
    }
    content = b"id,code,level,kind\n1,AB,50,a\n1,CD,101,b\n2,,-1,c\n3,x,5,a\n4,AB,5,b\n"
    result = check(content, schema)
    assert not result.valid and result.table is None
    assert errors_of(result) == [
        ("constraint-error", 3, "level", "101"),
        ("primary-key", 3, None, None),
        ("constraint-error", 4, "code", ""),
        ("constraint-error", 4, "level", "-1"),
        ("constraint-error", 4, "kind", "c"),
        ("constraint-error", 5, "code", "x"),
        ("unique-error", 6, "code", "AB"),
    ]
    first = result.report["tasks"][0]["errors"][0]
    assert first == {
        "type": "constraint-error",
        "title": "Constraint Error",
        "description": "A field value does not conform to a constraint.",
        "message": 'The cell "101" in row at position "3" and field "level" at position "3" does not conform to a '
        'constraint: constraint "maximum" is "100"',
        "tags": ["#table", "#row", "#cell"],
        "note": 'constraint "maximum" is "100"',
        "cells": ["1", "CD", "101", "b"],
        "rowNumber": 3,
        "cell": "101",
        "fieldName": "level",
        "fieldNumber": 3,
    }
    assert result.report["valid"] is False
    assert result.report["tasks"][0]["stats"] | {"seconds": 0} == {
        "errors": 7, "warnings": 0, "rows": 5, "fields": 4, "seconds": 0}


def test_missing_and_extra_columns_are_label_errors() -> None:
    schema = {"fields": [{"name": "a", "type": "string"}, {"name": "b", "type": "string"}]}
    result = check(b"a,c\n1,2\n", schema)
    assert errors_of(result) == [("missing-label", None, "b", ""), ("extra-label", None, "", "c")]


def test_geometry_and_json_types() -> None:
    schema = {
        "fields": [
            {"name": "p", "type": "geopoint", "format": "array"},
            {"name": "g", "type": "geojson"},
            {"name": "t", "type": "datetime"},
        ]
    }
    rows = (
        b'[{"p": [9.9, 53.5], "g": {"type": "Point", "coordinates": [1, 2]}, "t": "2026-11-20T08:15:00Z"},'
        b' {"p": [200, 53.5], "g": {"type": "Nope"}, "t": "2026-11-20T09:15:00+01:00"},'
        b' {"p": "x", "g": null, "t": "yesterday"}]'
    )
    result = check(rows, schema, fmt="json")
    assert errors_of(result) == [
        ("type-error", 3, "p", "[200, 53.5]"),
        ("type-error", 3, "g", '{"type": "Nope"}'),
        ("type-error", 4, "p", "x"),
        ("type-error", 4, "t", "yesterday"),
    ]
    ok = check(b'[{"p": [9.9, 53.5], "g": {"type": "Point", "coordinates": [1, 2]}, "t": "2026-11-20T09:15:00+01:00"}]',
               schema, fmt="json")
    assert ok.valid
    assert ok.table.column("t").to_pylist() == [dt.datetime(2026, 11, 20, 8, 15, tzinfo=dt.timezone.utc)]


@pytest.mark.parametrize(("kind", "refused", "accepted", "typed"), [
    # Date, time to the second, maybe a fraction and an offset; not DuckDB's 'infinity', 'epoch' or a bare date.
    ("datetime",
     ["infinity", "-infinity", "epoch", "2026-11-20", "2026-11-20T08:15", "2026-11-20T08:15+01:00", " 2026-11-20T08:15:00"],
     ["2026-11-20T08:15:00", "2026-11-20 08:15:00.25"],
     [dt.datetime(2026, 11, 20, 8, 15), dt.datetime(2026, 11, 20, 8, 15, 0, 250000)]),
    # Instants: every value with an offset or Z (mixing them with local times: test_fidelity).
    ("datetime",
     ["infinity", "2026-11-20T08:15+01:00", "2026-11-20T08:15:00+1"],
     ["2026-11-20T08:15:00Z", "2026-11-20T09:15:00+0100", "2026-11-20 10:15:00.5+02:00"],
     [dt.datetime(2026, 11, 20, 8, 15, tzinfo=dt.timezone.utc)] * 2
     + [dt.datetime(2026, 11, 20, 8, 15, 0, 500000, tzinfo=dt.timezone.utc)]),
    # To the second, maybe a fraction and Z; an offset would be dropped without a word.
    ("time", ["12:00", "1:2:3", " 12:00:00", "12:00:00+01:00", "allballs", "12:00:60"],
     ["12:00:00", "08:15:00.5", "23:59:59Z"], [dt.time(12, 0), dt.time(8, 15, 0, 500000), dt.time(23, 59, 59)]),
])
def test_default_date_time_forms(kind: str, refused: list[str], accepted: list[str], typed: list[Any]) -> None:
    schema = {"fields": [{"name": "id", "type": "integer"}, {"name": "t", "type": kind}]}
    lines = [f'{i},"{text}"' for i, text in enumerate(refused + accepted)]
    result = check(("id,t\n" + "\n".join(lines) + "\n").encode(), schema)
    assert errors_of(result) == [("type-error", i + 2, "t", text) for i, text in enumerate(refused)]
    ok = check(("id,t\n" + "\n".join(lines[len(refused):]) + "\n").encode(), schema)
    assert ok.valid
    assert ok.table.column("t").to_pylist() == typed


def test_default_geopoint_is_lon_comma_lat() -> None:
    schema = {"fields": [{"name": "id", "type": "string"}, {"name": "p", "type": "geopoint"}]}
    result = check(b'id,p\na,"9.99, 53.55"\nb,"9.99 53.55"\n', schema)
    assert errors_of(result) == [("type-error", 3, "p", "9.99 53.55")]


def test_report_lists_at_most_max_errors_but_counts_all() -> None:
    schema = {"fields": [{"name": "n", "type": "integer"}]}
    content = b"n\n" + b"x\n" * 120
    result = check(content, schema)
    assert result.error_count == 120
    assert len(result.report["tasks"][0]["errors"]) == 50
    assert result.report["tasks"][0]["warnings"] == ["70 more errors were found but not listed."]
