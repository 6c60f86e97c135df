"""Exports in the kernel (catalogue.exports, catalogue.spreadsheet): options, neutralised cells, every format.

Named test_exports_kernel.py because pytest's default import mode refuses two test modules called
test_exports.py (tests/api has the HTTP one).
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalogue.errors import InvalidParameter
from catalogue.query.exports import CsvOptions, ExportFile, StoredExport, csv_options, export_tag, export_version, read_file
from catalogue.hub import Hub
from catalogue.meta.metadata import get_dataset, get_version
from catalogue.errors import QueryError
from catalogue.query.engine import QueryEngine, VersionRef
from catalogue.query.records import RecordsRequest, plan_records, run_records
from catalogue.query.spreadsheet import csv_chunks, neutralise

SCHEMA = {
    "fields": [
        {"name": "id", "type": "integer"}, {"name": "label", "type": "string"}, {"name": "amount", "type": "number"},
        {"name": "active", "type": "boolean"}, {"name": "day", "type": "date"}, {"name": "seen", "type": "datetime"},
        {"name": "place", "type": "geopoint"},
    ],
    "primaryKey": ["id"],
    "missingValues": [""],
}
FEED = b'''id,label,amount,active,day,seen,place
1,=1+1,12345.67,true,2026-01-02,2026-01-02T03:04:05,"9.99712, 53.55324"
2,+SUM(A1),-2.5,false,2026-01-03,2026-01-03T00:00:00,"10.0, 53.5"
3,-2+3,0.1,true,2026-01-04,2026-01-04T12:30:00.25,"9.9, 53.6"
4,@cmd,1000000,false,2026-01-05,2026-01-05T23:59:59,"9.95, 53.55"
5,normal text,,true,2026-01-06,2026-01-06T08:00:00,"9.9, 53.5"
6,"\ttab, ""quoted""",7,false,2026-01-07,2026-01-07T08:00:00,"9.9, 53.5"
'''
# The rows as the records API types them (JSON), in file order.
ROWS = [
    {"id": 1, "label": "=1+1", "amount": 12345.67, "active": True, "day": "2026-01-02", "seen": "2026-01-02T03:04:05",
     "place": {"type": "Point", "coordinates": [9.99712, 53.55324]}},
    {"id": 2, "label": "+SUM(A1)", "amount": -2.5, "active": False, "day": "2026-01-03", "seen": "2026-01-03T00:00:00",
     "place": {"type": "Point", "coordinates": [10.0, 53.5]}},
    {"id": 3, "label": "-2+3", "amount": 0.1, "active": True, "day": "2026-01-04", "seen": "2026-01-04T12:30:00.25",
     "place": {"type": "Point", "coordinates": [9.9, 53.6]}},
    {"id": 4, "label": "@cmd", "amount": 1000000.0, "active": False, "day": "2026-01-05", "seen": "2026-01-05T23:59:59",
     "place": {"type": "Point", "coordinates": [9.95, 53.55]}},
    {"id": 5, "label": "normal text", "amount": None, "active": True, "day": "2026-01-06", "seen": "2026-01-06T08:00:00",
     "place": {"type": "Point", "coordinates": [9.9, 53.5]}},
    {"id": 6, "label": '\ttab, "quoted"', "amount": 7.0, "active": False, "day": "2026-01-07",
     "seen": "2026-01-07T08:00:00", "place": {"type": "Point", "coordinates": [9.9, 53.5]}},
]
WKT = ["POINT (9.99712 53.55324)", "POINT (10 53.5)", "POINT (9.9 53.6)", "POINT (9.95 53.55)", "POINT (9.9 53.5)",
       "POINT (9.9 53.5)"]
NEUTRALISED = ["'=1+1", "'+SUM(A1)", "'-2+3", "'@cmd", "normal text", '\'\ttab, "quoted"']


@pytest.fixture
def formula_cells(make_catalogue: Any) -> Iterator[tuple[Hub, QueryEngine, VersionRef]]:
    """A dataset whose text cells look like spreadsheet formulas, ingested through the store."""
    hub = make_catalogue("formula-cells", SCHEMA, FEED)
    engine = QueryEngine(hub)
    with hub.sessions() as session:
        ds = get_dataset(session, "formula-cells")
        ref = VersionRef.of(hub, ds, get_version(session, ds))
    yield hub, engine, ref
    engine.close()


def _bytes(result: ExportFile | Iterator[bytes]) -> bytes:
    assert not isinstance(result, ExportFile)
    return b"".join(result)


def _file(result: ExportFile | Iterator[bytes]) -> ExportFile:
    assert isinstance(result, ExportFile)
    return result


@pytest.mark.parametrize(("fmt", "given", "expected"), [
    ("csv", (None, None, None), CsvOptions(",", False, "international")),
    ("csv", (None, True, "german"), CsvOptions(";", True, "german")),
    ("csv", ("\t", False, "german"), CsvOptions("\t", False, "german")),
    ("csv", ("|", None, "international"), CsvOptions("|", False, "international")),
    ("json", (None, None, None), CsvOptions()),
])
def test_csv_options_defaults(fmt: str, given: tuple[Any, Any, Any], expected: CsvOptions) -> None:
    assert csv_options(fmt, *given) == expected


@pytest.mark.parametrize(("fmt", "given", "error"), [
    ("csv", (",", None, "german"), {
        "code": "invalid-parameter", "status": 400, "details": {"parameter": "delimiter"},
        "message": "number_style=german writes decimal commas (12345,67), so the delimiter cannot be ','; "
                   "use ';' (the default for german) or another character."}),
    ("csv", (";;", None, None), {
        "code": "invalid-parameter", "status": 400, "details": {"parameter": "delimiter"},
        "message": "delimiter must be one character that is not a letter, digit, quote or line break "
                   "(e.g. ',', ';', '|' or a tab); got ';;'."}),
    ("csv", ('"', None, None), {
        "code": "invalid-parameter", "status": 400, "details": {"parameter": "delimiter"},
        "message": "delimiter must be one character that is not a letter, digit, quote or line break "
                   "(e.g. ',', ';', '|' or a tab); got '\"'."}),
    ("csv", (None, None, "french"), {
        "code": "invalid-parameter", "status": 400, "details": {"parameter": "number_style"},
        "message": "number_style must be one of: international, german; got 'french'."}),
    ("xlsx", (None, True, None), {
        "code": "invalid-parameter", "status": 400, "details": {"parameter": "with_bom"},
        "message": "with_bom applies to csv exports only."}),
])
def test_csv_options_refused(fmt: str, given: tuple[Any, Any, Any], error: dict[str, Any]) -> None:
    with pytest.raises(InvalidParameter) as caught:
        csv_options(fmt, *given)
    assert caught.value.to_dict() == error


def test_neutralise_prefixes_formula_text_only() -> None:
    cells = pa.array(["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx", "normal", "a=b", "", None, "'=already"])
    assert neutralise(cells).to_pylist() == [
        "'=1+1", "'+SUM(A1)", "'-2+3", "'@cmd", "'\tx", "'\rx", "normal", "a=b", "", None, "'=already"]


def test_csv_chunks_write_the_header_even_without_rows() -> None:
    schema = pa.schema([("-minus", pa.int64()), ("amount", pa.float64())])
    out = b"".join(csv_chunks([], schema, delimiter=";", with_bom=True, number_style="german"))
    assert out == b'\xef\xbb\xbf"\'-minus";"amount"\n'


def test_every_format_of_the_whole_version(formula_cells: tuple[Hub, QueryEngine, VersionRef]) -> None:
    hub, engine, ref = formula_cells
    whole = RecordsRequest()
    assert json.loads(_bytes(export_version(hub, engine, ref, "json", whole))) == ROWS
    ndjson = _bytes(export_version(hub, engine, ref, "ndjson", whole)).decode()
    assert ndjson.endswith("\n") and [json.loads(line) for line in ndjson.splitlines()] == ROWS
    collection = json.loads(_bytes(export_version(hub, engine, ref, "geojson", whole)))
    assert collection == {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": r["place"], "properties": {k: v for k, v in r.items() if k != "place"}}
        for r in ROWS]}

    text = _bytes(export_version(hub, engine, ref, "csv", whole)).decode("utf-8")
    assert list(csv.reader(io.StringIO(text))) == [[f["name"] for f in SCHEMA["fields"]]] + [
        [str(r["id"]), label, "" if r["amount"] is None else repr(r["amount"]).removesuffix(".0"),
         str(r["active"]).lower(), r["day"], r["seen"], wkt]
        for r, label, wkt in zip(ROWS, NEUTRALISED, WKT)]

    assert export_version(hub, engine, ref, "parquet", whole) == StoredExport(ref.keys[0])  # sent as stored

    book = _file(export_version(hub, engine, ref, "xlsx", whole))
    assert book.temporary
    sheet = openpyxl.load_workbook(book.path, read_only=True).active
    assert [list(row) for row in sheet.iter_rows(values_only=True)] == [[f["name"] for f in SCHEMA["fields"]]] + [
        [r["id"], label, r["amount"], r["active"], datetime.fromisoformat(r["day"]),
         datetime.fromisoformat(r["seen"]), wkt] for r, label, wkt in zip(ROWS, NEUTRALISED, WKT)]
    # constant_memory mode writes strings inline: no shared-strings table held in memory.
    with zipfile.ZipFile(book.path) as archive:
        assert "xl/sharedStrings.xml" not in archive.namelist()
        assert b't="inlineStr"' in archive.read("xl/worksheets/sheet1.xml")
    book.path.unlink()


def test_records_keep_the_fraction_of_a_second(formula_cells: tuple[Hub, QueryEngine, VersionRef]) -> None:
    """Records, as stored rows and as a selected column, write a timestamp's fraction (whole seconds get none)."""
    hub, engine, ref = formula_cells
    for select, name in ((None, "seen"), ("id, seen as later", "later")):
        request = RecordsRequest(select=select, where="id = 2 or id = 3")
        plan = plan_records(request, ref.schema, list(ref.uris), ref.number)
        cur = engine.cursor()
        try:
            page = run_records(cur, plan, version=ref.number, limit=10, time_limit_ms=5000)
        finally:
            cur.close()
        assert [row[name] for row in json.loads(page["results_json"])] == ["2026-01-03T00:00:00", "2026-01-04T12:30:00.25"]


def _strict_json(text: str) -> Any:
    """JSON as JavaScript's JSON.parse reads it: no bare NaN or Infinity."""
    def refuse(constant: str) -> None:
        raise AssertionError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinity_are_null_in_json(make_catalogue: Any) -> None:
    """A number field may hold NaN and ±infinity (Frictionless reads them); JSON writes them as null."""
    schema = {"fields": [{"name": "id", "type": "integer"}, {"name": "x", "type": "number"}], "primaryKey": ["id"]}
    hub = make_catalogue("odd-numbers", schema, b"id,x\n1,NaN\n2,INF\n3,-Infinity\n4,1.5\n")
    engine = QueryEngine(hub)
    try:
        with hub.sessions() as session:
            ds = get_dataset(session, "odd-numbers")
            ref = VersionRef.of(hub, ds, get_version(session, ds))
        expected = [{"id": 1, "x": None}, {"id": 2, "x": None}, {"id": 3, "x": None}, {"id": 4, "x": 1.5}]
        for select in (None, "id, x"):
            plan = plan_records(RecordsRequest(select=select), ref.schema, list(ref.uris), ref.number)
            cur = engine.cursor()
            try:
                page = run_records(cur, plan, version=ref.number, limit=10, time_limit_ms=5000)
            finally:
                cur.close()
            assert _strict_json(page["results_json"]) == expected
        assert _strict_json(_bytes(export_version(hub, engine, ref, "json", RecordsRequest())).decode()) == expected
        ndjson = _bytes(export_version(hub, engine, ref, "ndjson", RecordsRequest())).decode()
        assert [_strict_json(line) for line in ndjson.splitlines()] == expected
    finally:
        engine.close()


def test_filtered_exports_and_scratch_files(formula_cells: tuple[Hub, QueryEngine, VersionRef]) -> None:
    hub, engine, ref = formula_cells
    query = RecordsRequest(select="id, label, amount * 2 as doubled, place", where="id >= 2 and id <= 4",
                           order_by="amount desc")
    parquet = _file(export_version(hub, engine, ref, "parquet", query))
    assert parquet.temporary and parquet.path.parent == hub.settings.store_dir.resolve() / ".scratch"
    table = pq.read_table(io.BytesIO(b"".join(read_file(parquet.path, delete=True))))
    assert not parquet.path.exists()
    assert table.column_names == ["id", "label", "doubled", "place"]
    assert table.select(["id", "label", "doubled"]).to_pylist() == [
        {"id": 4, "label": "@cmd", "doubled": 2000000.0}, {"id": 3, "label": "-2+3", "doubled": 0.2},
        {"id": 2, "label": "+SUM(A1)", "doubled": -5.0}]
    geo = json.loads(table.schema.metadata[b"geo"])
    assert (geo["primary_column"], geo["columns"]["place"]["encoding"]) == ("place", "WKB")

    german = _bytes(export_version(hub, engine, ref, "csv", query, CsvOptions(";", True, "german")))
    assert german == ('\ufeff"id";"label";"doubled";"place"\n'
                      '4;"\'@cmd";"2000000";"POINT (9.95 53.55)"\n'
                      '3;"\'-2+3";"0,2";"POINT (9.9 53.6)"\n'
                      '2;"\'+SUM(A1)";"-5";"POINT (10 53.5)"\n').encode()
    assert list(hub.settings.store_dir.joinpath(".scratch").iterdir()) == []


def test_bad_queries_fail_before_any_byte(formula_cells: tuple[Hub, QueryEngine, VersionRef]) -> None:
    hub, engine, ref = formula_cells
    with pytest.raises(QueryError) as caught:
        export_version(hub, engine, ref, "csv", RecordsRequest(where="nope = 1"))
    assert caught.value.to_dict() == {
        "code": "invalid-query", "status": 400, "details": {"parameter": "where", "token": "nope"},
        "message": "Unknown field 'nope' in where. Fields: id, label, amount, active, day, seen, place."}
    with pytest.raises(InvalidParameter) as refused:
        export_version(hub, engine, ref, "geojson", RecordsRequest(select="id, label"))
    assert refused.value.to_dict() == {
        "code": "invalid-parameter", "status": 400, "details": {"parameter": "select"},
        "message": "GeoJSON needs a geometry column, and this export selects none: add the geometry field to "
                   "select, or use csv or json."}
    assert list(hub.settings.store_dir.joinpath(".scratch").iterdir()) == []


def test_export_tags_name_the_exact_export(formula_cells: tuple[Hub, QueryEngine, VersionRef]) -> None:
    _, _, ref = formula_cells
    whole = export_tag(ref, "parquet", RecordsRequest(), CsvOptions())
    assert whole == f"{ref.content_hash}-parquet"
    tags = {export_tag(ref, fmt, RecordsRequest(where=where), options) for fmt in ("csv", "json")
            for where in (None, "id > 1") for options in (CsvOptions(), CsvOptions(";", True, "german"))}
    assert len(tags) == 8
    assert export_tag(ref, "csv", RecordsRequest(where="id > 1"), CsvOptions()) == export_tag(
        ref, "csv", RecordsRequest(where="id > 1", limit=None), CsvOptions())
