"""HTTP files in the dialects German offices produce, from a real HTTP server on a free loopback port.

One dataset (id, station, value, day) arrives as CSV with `;`, `,` and tab, decimal comma and thousands
dot, dd.mm.yyyy dates, UTF-8 with and without BOM, cp1252 and latin-1, quoted line breaks; as nested
JSON, NDJSON, an Excel sheet below a title, and inside a .zip. Each publishes the same rows. Number
formats that could be read two ways are an error naming the option to add, never a guess.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from datetime import datetime
from typing import Any

import openpyxl
import pytest

from catalogue.hub import Hub
from catalogue.meta.metadata import get_dataset
from catalogue.query.engine import QueryEngine, VersionRef
from harvesters.runner import harvest_source
from tests.harvesters.sources import last_job, versions

Files = tuple[Any, dict[str, bytes]]  # (the server, the files it serves by name)

NAME = "messwerte"
SCHEMA = {
    "fields": [
        {"name": "id", "type": "integer"},
        {"name": "station", "type": "string"},
        {"name": "wert", "type": "number"},
        {"name": "tag", "type": "date"},
    ],
    "primaryKey": ["id"],
}
ROWS = [(1, "Nordstraße", 1234.5, "2026-11-20"), (2, "Am Ölberg", -0.25, "2026-11-21"), (3, "Süd", 7.0, "2026-12-01")]
GERMAN = {"decimal_char": ",", "group_char": ".", "date_format": "%d.%m.%Y"}


def _german_csv(delimiter: str, quote_all: bool = False) -> str:
    cells = [["id", "station", "wert", "tag"], ["1", "Nordstraße", "1.234,5", "20.11.2026"],
             ["2", "Am Ölberg", "-0,25", "21.11.2026"], ["3", "Süd", "7", "01.12.2026"]]
    wrap = (lambda c: f'"{c}"') if quote_all else (lambda c: c)
    return "\r\n".join(delimiter.join(wrap(c) for c in row) for row in cells) + "\r\n"


ISO_CSV = "id,station,wert,tag\n1,Nordstraße,1234.5,2026-11-20\n2,Am Ölberg,-0.25,2026-11-21\n3,Süd,7,2026-12-01\n"


def _xlsx() -> bytes:
    book = openpyxl.Workbook()
    book.active.title = "Deckblatt"
    book.active.append(["Nur ein Deckblatt"])
    sheet = book.create_sheet("Messwerte")
    sheet.append(["Messwerte der Stadt Musterstadt"])  # a title row, then a blank one, then the header
    sheet.append([])
    sheet.append(["id", "station", "wert", "tag"])
    for id_, station, wert, tag in ROWS:
        sheet.append([id_, station, wert, datetime.fromisoformat(tag)])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _zip(member: str, body: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("LIESMICH.txt", "Bitte die CSV-Datei verwenden.")
        zipped.writestr(member, body)
    return out.getvalue()


CASES: dict[str, tuple[bytes, str, dict[str, Any]]] = {
    "csv-semicolon-cp1252-crlf": (_german_csv(";").encode("cp1252"), "csv",
                                  {"delimiter": ";", "encoding": "cp1252", **GERMAN}),
    "csv-comma-utf8-bom-iso": (b"\xef\xbb\xbf" + ISO_CSV.encode(), "csv", {}),
    "csv-tab-latin1-quoted": (_german_csv("\t", quote_all=True).encode("latin-1"), "csv",
                              {"delimiter": "\t", "encoding": "latin-1", **GERMAN}),
    "csv-utf8-no-bom-german": (_german_csv(";").encode(), "csv", {"delimiter": ";", **GERMAN}),
    "json-nested-record-path": (json.dumps({"meta": {"n": 3}, "data": {"items": [
        {"id": r[0], "station": r[1], "wert": r[2], "tag": r[3]} for r in ROWS]}}).encode(), "json",
        {"record_path": "data.items"}),
    "json-bom": (b"\xef\xbb\xbf" + json.dumps([{"id": r[0], "station": r[1], "wert": r[2], "tag": r[3]}
                                              for r in ROWS]).encode(), "json", {}),
    "ndjson": ("\n".join(json.dumps({"id": r[0], "station": r[1], "wert": r[2], "tag": r[3]}) for r in ROWS)
               .encode() + b"\n\n", "ndjson", {}),
    "xlsx-named-sheet-header-row": (_xlsx(), "xlsx", {"sheet": "Messwerte", "header_row": 3}),
    "xlsx-german-date-format": (_xlsx(), "xlsx", {"sheet": "Messwerte", "header_row": 3, "date_format": "%d.%m.%Y"}),
    "zip-member-csv": (_zip("daten/messwerte.csv", _german_csv(";").encode("cp1252")), "csv",
                       {"delimiter": ";", "encoding": "cp1252", "zip_member": "daten/messwerte.csv", **GERMAN}),
    "zip-member-xlsx": (_zip("messwerte.xlsx", _xlsx()), "xlsx",
                        {"zip_member": "messwerte.xlsx", "sheet": "Messwerte", "header_row": 3}),
}


def _hub(make: Callable[..., Hub], url: str, fmt: str, options: dict[str, Any], **settings: Any) -> Hub:
    return make(NAME, SCHEMA, {"type": "http-file", "url": url, "format": fmt, "options": options}, **settings)


def _rows(hub: Hub) -> list[tuple[Any, ...]]:
    engine = QueryEngine(hub)
    try:
        with hub.sessions() as session:
            dataset = get_dataset(session, NAME)
            ref = VersionRef.of(hub, dataset, dataset.current_version)
        page = engine.records(ref, limit=100, offset=0)
    finally:
        engine.close()
    return [(r["id"], r["station"], r["wert"], str(r["tag"])) for r in page["results"]]


@pytest.mark.parametrize("case", list(CASES))
def test_every_dialect_publishes_the_same_rows(file_server: Files, source_catalogue: Callable[..., Hub],
                                                case: str) -> None:
    running, files = file_server
    body, fmt, options = CASES[case]
    files[f"{case}.bin"] = body
    hub = _hub(source_catalogue, f"{running.url}{case}.bin", fmt, options)
    outcome = harvest_source(hub, NAME)
    assert (outcome.status, outcome.version) == ("published", 1), outcome.message
    assert _rows(hub) == ROWS


def test_quoted_line_breaks_are_kept_inside_their_cell(file_server: Files, source_catalogue: Callable[..., Hub]) -> None:
    running, files = file_server
    files["lines.csv"] = 'id;station;wert;tag\r\n1;"Nordstraße\r\nEingang B";1.234,5;20.11.2026\r\n'.encode("cp1252")
    hub = _hub(source_catalogue, f"{running.url}lines.csv", "csv",
               {"delimiter": ";", "encoding": "cp1252", "newlines_in_values": True, **GERMAN})
    assert harvest_source(hub, NAME).status == "published"
    assert _rows(hub) == [(1, "Nordstraße\r\nEingang B", 1234.5, "2026-11-20")]


def test_a_csv_row_that_does_not_parse_is_named_by_its_line_and_row(
        file_server: Files, source_catalogue: Callable[..., Hub]) -> None:
    """pyarrow counts rows (header 1, empty lines skipped); the job names the line, which a quoted break moves."""
    running, files = file_server
    files["bad.csv"] = ('id;station;wert;tag\r\n1;"Nordstraße\r\nEingang B";1.234,5;20.11.2026\r\n\r\n'
                        '2;Süd;7,0;01.12.2026;zu viel\r\n3;Ost;1,0;02.12.2026\r\n').encode("cp1252")
    hub = _hub(source_catalogue, f"{running.url}bad.csv", "csv",
               {"delimiter": ";", "encoding": "cp1252", "newlines_in_values": True, **GERMAN})
    outcome = harvest_source(hub, NAME)
    assert (outcome.status, outcome.version) == ("quarantined", None), outcome.message
    (error,) = last_job(hub).errors
    assert (error["type"], error["line"], error["row"]) == ("format-error", 5, 3)
    assert "CSV parse error at line 5 (row 3, counting the header): Expected 4 columns, got 5" in error["message"]


@pytest.mark.parametrize("options, named", [
    ({"delimiter": ";", "group_char": "."}, 'decimal_char: ","'),
    ({"delimiter": ";", "decimal_char": ",", "group_char": ","}, "decimal_char and group_char"),
])
def test_an_ambiguous_number_format_fails_naming_the_option(
        file_server: Files, source_catalogue: Callable[..., Hub], options: dict[str, Any], named: str) -> None:
    running, files = file_server
    files["a.csv"] = _german_csv(";").encode()
    hub = _hub(source_catalogue, f"{running.url}a.csv", "csv", options)
    outcome = harvest_source(hub, NAME)
    assert (outcome.status, outcome.error_code) == ("failed", "ambiguous-dialect")
    assert named in outcome.message
    job = last_job(hub)
    assert (job.status, job.error_code) == ("failed", "ambiguous-dialect")
    assert named in job.message
    assert versions(hub, NAME) == []


def test_german_numbers_without_a_declared_decimal_mark_are_quarantined_naming_the_option(
        file_server: Files, source_catalogue: Callable[..., Hub]) -> None:
    running, files = file_server
    files["a.csv"] = _german_csv(";").encode()
    hub = _hub(source_catalogue, f"{running.url}a.csv", "csv", {"delimiter": ";", "date_format": "%d.%m.%Y"})
    outcome = harvest_source(hub, NAME)
    assert outcome.status == "quarantined"
    job = last_job(hub)
    assert job.status == "quarantined"
    assert "Field 'wert' holds '1.234,5'" in job.message and 'add decimal_char: ","' in job.message
    assert {"type": "type-error", "row": 2, "field": "wert", "cell": "1.234,5"} == {
        k: v for k, v in job.errors[0].items() if k != "message"}
    assert versions(hub, NAME) == []


def test_a_missing_sheet_is_quarantined_listing_the_sheets(file_server: Files, source_catalogue: Callable[..., Hub]) -> None:
    running, files = file_server
    files["a.xlsx"] = _xlsx()
    hub = _hub(source_catalogue, f"{running.url}a.xlsx", "xlsx", {"sheet": "Tabelle1"})
    assert harvest_source(hub, NAME).status == "quarantined"
    (error,) = last_job(hub).errors
    assert error["type"] == "format-error"
    assert "no sheet named 'Tabelle1'; its sheets are: Deckblatt, Messwerte" in error["message"]


def test_a_missing_zip_member_fails_listing_the_members(file_server: Files, source_catalogue: Callable[..., Hub]) -> None:
    running, files = file_server
    files["a.zip"] = _zip("daten/messwerte.csv", ISO_CSV.encode())
    hub = _hub(source_catalogue, f"{running.url}a.zip", "csv", {"zip_member": "messwerte.csv"})
    outcome = harvest_source(hub, NAME)
    assert (outcome.status, outcome.error_code) == ("failed", "malformed-feed")
    assert "no member 'messwerte.csv'; it holds: LIESMICH.txt, daten/messwerte.csv" in outcome.message
    assert list((hub.settings.data_dir / "incoming").iterdir()) == []  # nothing left behind


def test_a_zip_bomb_stops_at_the_decoded_cap(file_server: Files, source_catalogue: Callable[..., Hub]) -> None:
    running, files = file_server
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("bomb.csv", b"id,station,wert,tag\n" + b"0" * (32 << 20))
    files["bomb.zip"] = out.getvalue()
    assert len(files["bomb.zip"]) < 100_000  # 32 MiB in well under 1 % of it
    hub = _hub(source_catalogue, f"{running.url}bomb.zip", "csv", {"zip_member": "bomb.csv"},
               harvest_max_decoded_bytes=1 << 20)
    outcome = harvest_source(hub, NAME)
    assert (outcome.status, outcome.error_code) == ("failed", "feed-too-large")
    assert f"decompresses to more than {1 << 20} bytes" in outcome.message
    assert list((hub.settings.data_dir / "incoming").iterdir()) == []


def test_a_bad_ndjson_line_is_named_by_its_number(file_server: Files, source_catalogue: Callable[..., Hub]) -> None:
    running, files = file_server
    files["a.ndjson"] = b'{"id": 1, "station": "a", "wert": 1, "tag": "2026-11-20"}\n{"id": 2,\n'
    hub = _hub(source_catalogue, f"{running.url}a.ndjson", "ndjson", {})
    assert harvest_source(hub, NAME).status == "quarantined"
    (error,) = last_job(hub).errors
    assert (error["type"], error["line"]) == ("format-error", 2)
    assert "NDJSON line 2 is not valid JSON" in error["message"]


def test_the_demo_excel_export_publishes_the_same_parts_as_its_csv(tmp_path: Any) -> None:
    """The demo's waste-bin feed as Excel (typed cells) and as a German CSV (text) make byte-identical parts."""
    from catalogue.hub import open_hub
    from catalogue.ingest.commit import current_version
    from catalogue.ingest.pipeline import Delivery, ingest_delivery
    from catalogue.meta.definitions import load_definitions, sync_definitions
    from catalogue.settings import PROJECT_ROOT, Settings

    feeds, name = PROJECT_ROOT / "datasets" / "feeds", "waste-bin-fill-levels"
    parts = {}
    for fmt, options in (("csv", {"delimiter": ";", "encoding": "cp1252"}),
                         ("xlsx", {"sheet": "Füllstände", "header_row": 3})):
        hub = open_hub(Settings(data_dir=tmp_path / fmt))
        try:
            sync_definitions(hub, load_definitions(hub.settings.definitions_dir))
            delivery = Delivery((feeds / f"{name}.{fmt}").read_bytes(), fmt, options, "replace", {"source_url": fmt})
            assert (ingest_delivery(hub, name, delivery).status, current_version(hub, name).row_count) == (  # type: ignore[union-attr]
                "published", 40)
            parts[fmt] = [p["sha256"] for p in current_version(hub, name).parts]  # type: ignore[union-attr]
        finally:
            hub.close()
    assert parts["xlsx"] == parts["csv"]


def test_the_http_file_examples_in_datasets_readme_are_valid_definitions(tmp_path: Any) -> None:
    import yaml

    from catalogue.meta.definitions import load_definitions
    from catalogue.settings import PROJECT_ROOT

    readme = (PROJECT_ROOT / "datasets" / "README.md").read_text(encoding="utf-8")
    section = readme.split("## HTTP files", 1)[1].split("\n## ", 1)[0]
    sources = [yaml.safe_load(block.split("```", 1)[0])["source"] for block in section.split("```yaml\n")[1:]]
    assert [s["format"] for s in sources] == ["csv", "json", "ndjson", "geojson", "xlsx", "csv"]
    (tmp_path / "definitions").mkdir()
    (tmp_path / "schemas").mkdir()
    (tmp_path / "publishers.yaml").write_text(yaml.safe_dump({"publishers": [{"name": "testamt", "title": "T"}]}))
    (tmp_path / "schemas" / "s.json").write_text(json.dumps(SCHEMA))
    for number, source in enumerate(sources):
        definition = {"name": f"beispiel-{number}", "title": "Beispiel", "description": "Beispiel.",
                      "publisher": "testamt", "license": "http://dcat-ap.de/def/licenses/dl-zero-de/2.0",
                      "schema": "schemas/s.json", "source": source}
        (tmp_path / "definitions" / f"beispiel-{number}.yaml").write_text(yaml.safe_dump(definition, allow_unicode=True))
    loaded = load_definitions(tmp_path)
    assert [d["source"]["format"] for d in sorted(loaded.datasets, key=lambda d: d["name"])] == [
        s["format"] for s in sources]
