"""JSON deliveries read incrementally (catalogue/ingest/json_stream.py) give what json.loads of the whole text gives:
the same values, the same error messages with their line and column, the same first error, whatever the block
boundaries; the columns are every record's keys in the order they first appear."""

from __future__ import annotations

import json
from typing import Any

import pytest

from catalogue.errors import MalformedFeed
from catalogue.ingest import json_stream
from catalogue.ingest.readers import NO_FIELDS, read_delivery

DOC = """{"meta": {"n": 3, "note": "Zähler \\"Nord\\""},
 "data": {"items": [
  {"id": 1, "name": "Müller\u2028Straße", "value": 10.50, "big": 123456789012345678901234567890},
  {"id": 2, "value": -0.0, "tags": ["a", {"b": null}], "ok": true, "gone": null},
  {"id": 3, "value": 1e-7, "name": "\\ud83d\\ude00 \\u00fc", "extra": {"deep": [1, 2.5, false]}}
 ]}, "after": [1, 2, 3]}
"""
OPTIONS = {"record_path": "data.items"}


@pytest.fixture(params=["whole", "1-row batches", "tiny blocks"])
def blocks(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Default sizes; one reading in 1-row batches (columns found later added to the batches before);
    blocks of a few bytes (cutting tokens and UTF-8 sequences), two readings, 1-row batches."""
    if request.param == "1-row batches":
        monkeypatch.setattr(json_stream, "BATCH_ROWS", 1)
    if request.param == "tiny blocks":
        monkeypatch.setattr(json_stream, "BLOCK_BYTES", 3)
        monkeypatch.setattr(json_stream, "ONE_PASS_BYTES", 0)
        monkeypatch.setattr(json_stream, "BATCH_ROWS", 1)
    return str(request.param)


def _read(doc: bytes, fmt: str = "json", options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = read_delivery(doc, fmt, options or {}, NO_FIELDS, exact_types=False).to_pylist()
    return rows


def _problem(doc: bytes, fmt: str = "json", options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    with pytest.raises(MalformedFeed) as caught:
        _read(doc, fmt, options)
    return caught.value.message, caught.value.details


def _as_text(value: Any) -> str | None:
    return value if value is None or isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _whole(text: str) -> list[dict[str, Any]] | str | None:
    """What the whole text through json.loads gives: the rows (every key a column) or the error message.

    None: valid JSON, but not records at data.items.
    """
    try:
        records = json.loads(text)["data"]["items"]
    except json.JSONDecodeError as exc:
        return f"The feed is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
    except (KeyError, TypeError):
        return None
    keys = list(dict.fromkeys(key for record in records for key in record))
    return [{key: _as_text(record.get(key)) for key in keys} for record in records]


def test_values_and_columns_are_those_of_the_whole_document(blocks: str) -> None:
    rows = _read(DOC.encode(), options=OPTIONS)
    assert rows == _whole(DOC)
    assert list(rows[0]) == ["id", "name", "value", "big", "tags", "ok", "gone", "extra"]
    assert rows[0]["big"] == "123456789012345678901234567890" and rows[1]["value"] == "-0.0"
    assert rows[2]["name"] == "\U0001f600 ü" and rows[0]["tags"] is None and rows[1]["tags"] == '["a", {"b": null}]'


def test_every_cut_or_broken_document_fails_as_json_loads_says(blocks: str) -> None:
    variants = [DOC[:cut] for cut in range(len(DOC))]
    variants += [DOC[:at] + "#" + DOC[at:] for at in range(0, len(DOC), 3)]
    variants += [DOC[:at] + DOC[at + 1:] for at in range(1, len(DOC), 2)]
    checked = 0
    for text in variants:
        expected = _whole(text)
        if not isinstance(expected, str):
            continue  # still valid JSON (a digit or a space less)
        message, details = _problem(text.encode(), options=OPTIONS)
        assert message == expected, text
        assert details["line"] == int(expected.split(" at line ")[1].split(",")[0])
        checked += 1
    assert checked > len(DOC)


@pytest.mark.parametrize(("doc", "options", "problem"), [
    (b'[{"id": 1}, 2, {"id": 3', {}, "not valid JSON: Expecting ',' delimiter at line 1, column 24"),  # syntax first
    (b'[{"id": 1}, 2, {"id": 3}]', {}, "JSON row 2 is not an object"),
    (b'[{"id": 1}, {"id": 2, "id": 3}, 4]', {}, "JSON row 2 names the key 'id' more than once"),
    (b'{"rows": [{"id": 1}]}', {}, "must be an array of objects"),
    (b'{"records": [{"id": 1}], "records": 3}', {}, None),  # the first value of a repeated member, as json.loads
    (b'{"data": {"items": [{"id": 1}]}}', {"record_path": "data.rows"}, "has no 'rows' under data"),
    (b'{"data": [{"items": [{"id": 1}]}]}', {"record_path": "data.3.items"}, "has no '3' under data"),
    (b'{"data": [{"items": [{"id": 1}]}]}', {"record_path": "data.0.items"}, None),
    (b'{"data": {"items": {"id": 1}}}', {"record_path": "data.items"}, "not an array of objects"),
    (b'{"data": 1, "x": [1}', {"record_path": "data.items"}, "not valid JSON: Expecting ',' delimiter"),
    (b'[{"id": 1}] [', {}, "not valid JSON: Extra data at line 1, column 13"),
    (b'[{"id": 1, "name": "\xfc"}, 1', {}, "not valid utf-8 text: 'utf-8' codec can't decode byte 0xfc in position 20"),
    (b'\xef\xbb\xbf[{"id": "\xfc"}]', {}, "can't decode byte 0xfc in position 9: invalid start byte"),
    (b'\xef\xbb\xbf\xef\xbb\xbf[]', {}, "Unexpected UTF-8 BOM (decode using utf-8-sig) at line 1, column 1"),
    (b'[{"id": 1}]', {"encoding": "no-such-codec"}, "not valid no-such-codec text: unknown encoding: no-such-codec"),
])
def test_json_errors_come_in_the_order_reading_the_whole_text_found_them(
        blocks: str, doc: bytes, options: dict[str, Any], problem: str | None) -> None:
    if problem is None:
        assert _read(doc, options=options) == [{"id": "1"}]
    else:
        assert problem in _problem(doc, options=options)[0]


@pytest.mark.parametrize(("doc", "problem", "details"), [
    (b'{"id": 1}\n\n{"id": 2\n', "NDJSON line 3 is not valid JSON: Expecting ',' delimiter at column 9",
     {"line": 3}),
    (b'{"id": 1}\n{"id": 2,\n{"id": "\xff"}\n', "not valid utf-8 text", {}),  # as the whole text was decoded first
    (b'{"id": 1}\n[2]\n{"id": 3\n', "NDJSON line 3 is not valid JSON", {"line": 3}),
    (b'{"id": 1}\n[2]\n', "NDJSON line row 2 is not an object", {"record": 2}),
    (b'{"id": 1}\r\n{"id": 1, "x": 2, "x": 3}\n', "NDJSON line row 2 names the key 'x' more than once", {}),
    (b'{"id": 1}\n\xef\xbb\xbf{"id": 2}\n', "NDJSON line 2 is not valid JSON: Unexpected UTF-8 BOM", {"line": 2}),
])
def test_ndjson_errors_name_the_line(blocks: str, doc: bytes, problem: str, details: dict[str, Any]) -> None:
    message, found = _problem(doc, "ndjson")
    assert problem in message
    assert found == details


def test_ndjson_lines_end_at_line_feeds_only(blocks: str) -> None:
    doc = '\ufeff{"a": "x\u2028y", "n": NaN}\r\n\n{"b": 12345678901234567890, "a": "\x85"}\n   \n{"a": 1.0}'
    assert _read(doc.encode(), "ndjson") == [{"a": "x\u2028y", "n": "NaN", "b": None},
                                             {"a": "\x85", "n": None, "b": "12345678901234567890"},
                                             {"a": "1.0", "n": None, "b": None}]


def test_geojson_features_whatever_the_member_order(blocks: str) -> None:
    point = {"type": "Point", "coordinates": [9.99, 53.55]}
    features = [{"type": "Feature", "geometry": point, "properties": {"id": 1}},
                {"type": "Feature", "geometry": None, "properties": None}]
    doc = json.dumps({"features": features, "name": "x", "type": "FeatureCollection"}).encode()
    assert _read(doc, "geojson") == [{"id": "1", "geometry": json.dumps(point)}, {"id": None, "geometry": None}]
    later = json.dumps({"type": "FeatureCollection", "features": features, "type ": 1}).encode()
    assert _read(later, "geojson") == _read(doc, "geojson")


@pytest.mark.parametrize(("doc", "problem"), [
    (b'{"features": [], "type": "Feature"}', "must be a FeatureCollection object"),
    (b'[{"type": "FeatureCollection"}]', "must be a FeatureCollection object"),
    (b'{"type": "FeatureCollection", "features": [{"type": "Feature"}], "type": "Other"}', None),
    (b'{"type": "Other", "features": [{"type": "Feature"}], "type": "FeatureCollection"}',
     "must be a FeatureCollection object"),  # the first "type" counts, as json.loads' repeated-key marks keep it
    (b'{"type": "FeatureCollection"}', "has no 'features' list"),
    (b'{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}}, {"type": "X"}]}',
     "GeoJSON feature 2 is not a Feature object"),
    (b'{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"a": 1, "a": 2}}]}',
     "GeoJSON feature 1 names the property 'a' more than once"),
    (b'{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": "id=1"}]}',
     "GeoJSON feature 1 has properties that are not an object"),
])
def test_geojson_errors(blocks: str, doc: bytes, problem: str | None) -> None:
    if problem is None:
        assert _read(doc, "geojson") == [{"geometry": None}]
    else:
        assert problem in _problem(doc, "geojson")[0]


def test_a_token_cut_at_any_block_boundary_reads_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = ('[{"a": -Infinity, "b": true, "c": false, "d": null, "e": NaN, "f": 12345.678e-3, "g": "\\u00fc\\n"},'
           ' {"a": Infinity, "b": [true, false, null], "c": -0.5, "d": "\u20ac\U0001f600", "e": 7}]').encode()
    expected = _read(doc)
    assert expected[0]["a"] == "-Infinity" and expected[0]["f"] == "12.345678" and expected[1]["d"] == "€😀"
    monkeypatch.setattr(json_stream, "ONE_PASS_BYTES", 0)
    for size in range(1, len(doc) + 1):
        monkeypatch.setattr(json_stream, "BLOCK_BYTES", size)
        assert _read(doc) == expected, size
        assert _read(doc.replace(b"}, {", b"}\n{")[1:-1], "ndjson") == expected, size
