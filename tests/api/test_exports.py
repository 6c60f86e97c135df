"""The exports API: every format read back with its own readers, CSV options, neutralised formulas,
caching, HTTP Range reads over a real server, and flat memory for a million-row export."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import geopandas
import httpx
import openpyxl
import pandas as pd
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import shapely
import yaml

from api.app import create_app
from tests.api.live_server import threaded_server
from catalogue.meta.definitions import load_definitions, sync_definitions
from catalogue.hub import Hub, open_hub
from catalogue.settings import Settings
from catalogue.ingest.pipeline import Delivery, ingest_delivery

API = "/api/v1"
OCCUPANCY = {"select": "lot_id, timestamp, free, occupied + free as total, location",
             "where": "free > 100 and lot_id != 'P03'", "order_by": "free desc, timestamp, lot_id"}
PER_LOT = {"select": "lot_id, avg(free) as avg_free, count(*) as n", "group_by": "lot_id", "order_by": "lot_id"}
FORMULA_SCHEMA = {
    "fields": [{"name": "id", "type": "integer"}, {"name": "label", "type": "string"},
               {"name": "amount", "type": "number"}, {"name": "place", "type": "geopoint"}],
    "primaryKey": ["id"], "missingValues": [""],
}
FORMULA_FEED = b'''id,label,amount,place
1,=1+1,12345.67,"9.99712, 53.55324"
2,+SUM(A1),-2.5,"10.0, 53.5"
3,-2+3,0.1,"9.9, 53.6"
4,@cmd,1000000,"9.95, 53.55"
5,normal text,,"9.9, 53.5"
'''
LABELS = ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "normal text"]
NEUTRALISED = ["'=1+1", "'+SUM(A1)", "'-2+3", "'@cmd", "normal text"]
AMOUNTS = [12345.67, -2.5, 0.1, 1000000.0, None]
BIG_ROWS = 1_048_576  # one more than an Excel sheet holds below its header; two parts of the store


# -- reading exports back ---------------------------------------------------

def typed_like(value: Any, model: Any) -> Any:
    """A value read from an export file, typed as the records API types ``model``."""
    if value is None or value == "" or (isinstance(value, float) and value != value):
        return None
    if isinstance(model, dict):  # geometry: WKT in spreadsheets, WKB in Parquet, GeoJSON elsewhere
        if isinstance(value, dict):
            return value
        geometry = shapely.from_wkb(value) if isinstance(value, bytes) else shapely.from_wkt(value)
        return json.loads(shapely.to_geojson(geometry))
    if isinstance(model, bool):
        return value if isinstance(value, bool) else {"true": True, "false": False}[value]
    if isinstance(model, int):
        return int(value)
    if isinstance(model, float):
        return float(value.replace(",", ".")) if isinstance(value, str) else float(value)
    if isinstance(value, datetime):  # also pandas.Timestamp
        return value.strftime("%Y-%m-%dT%H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return value


def typed_rows(rows: list[dict[str, Any]], expected: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` typed like ``expected``, after checking both have the same columns in the same order."""
    assert len(rows) == len(expected)
    assert all(list(r) == list(e) for r, e in zip(rows, expected))
    return [{k: typed_like(r[k], e[k]) for k in e} for r, e in zip(rows, expected)]


def excel_precision(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fractional numbers rounded to the 15 significant digits a spreadsheet keeps."""
    return [{k: float(f"{v:.15g}") if isinstance(v, float) else v for k, v in r.items()} for r in rows]


def read_back(fmt: str, content: bytes, geometry: str | None = None) -> list[list[dict[str, Any]]]:
    """The rows of an export as read by each reader we know for ``fmt``."""
    if fmt == "json":
        return [json.loads(content)]
    if fmt == "ndjson":
        return [[json.loads(line) for line in content.decode().splitlines()]]
    if fmt == "geojson":
        collection = json.loads(content)
        assert collection["type"] == "FeatureCollection"
        plain = [{geometry: f["geometry"], **f["properties"]} for f in collection["features"]]
        frame = geopandas.read_file(io.BytesIO(content))
        read = [{geometry: json.loads(shapely.to_geojson(r.pop("geometry"))), **r}
                for r in frame.to_dict("records")]
        return [plain, read]
    if fmt == "csv":
        text = content.decode("utf-8")
        with_module = list(csv.DictReader(io.StringIO(text)))
        with_arrow = pacsv.read_csv(io.BytesIO(content)).to_pylist()
        return [with_module, with_arrow]
    if fmt == "parquet":
        return [pq.read_table(io.BytesIO(content)).to_pylist(), pd.read_parquet(io.BytesIO(content)).to_dict("records")]
    assert fmt == "xlsx"
    sheet = openpyxl.load_workbook(io.BytesIO(content), read_only=True).active
    header, *body = [list(r) for r in sheet.iter_rows(values_only=True)]
    return [[dict(zip(header, r)) for r in body]]


def in_geometry_order(rows: list[dict[str, Any]], geometry: str, names: list[str]) -> list[dict[str, Any]]:
    """GeoJSON readers put the geometry first or last; put the columns back in the select order."""
    return [{n: r[n] for n in names} for r in rows] if geometry else rows


async def all_records(client: httpx.AsyncClient, name: str, **params: Any) -> list[dict[str, Any]]:
    """Every row the records API returns for ``params``, following links.next."""
    url: str | None = f"{API}/datasets/{name}/records"
    rows: list[dict[str, Any]] = []
    query: dict[str, Any] | None = {**params, "limit": 1000}
    while url:
        response = await client.get(url, params=query)
        assert response.status_code == 200, response.text
        rows += response.json()["results"]
        url, query = response.json()["links"].get("next"), None
    return rows


# -- the demo city ------------------------------------------------------------

@pytest.mark.anyio
@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson", "geojson", "parquet", "xlsx"])
@pytest.mark.parametrize("query", [OCCUPANCY, PER_LOT], ids=["filtered", "grouped"])
async def test_every_format_reads_back_as_the_records(api: httpx.AsyncClient, fmt: str, query: dict[str, str]) -> None:
    expected = await all_records(api, "parking-occupancy", version=1, **query)
    assert expected and len(expected) < 576  # filtered or grouped, and more than one page would hold for xlsx
    response = await api.get(f"{API}/datasets/parking-occupancy/exports/{fmt}", params={"version": 1, **query})
    if fmt == "geojson" and query is PER_LOT:
        assert response.status_code == 400 and response.json()["error"]["details"] == {"parameter": "select"}
        return
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == f'attachment; filename="parking-occupancy-v1.{fmt}"'
    geometry = "location" if fmt == "geojson" else None
    names = list(expected[0])
    for rows in read_back(fmt, response.content, geometry):
        read = typed_rows(in_geometry_order(rows, geometry or "", names), expected)
        if fmt == "xlsx":  # a workbook holds 15 significant digits (xlsxwriter writes 16)
            read, expected = excel_precision(read), excel_precision(expected)
        assert read == expected
    if fmt == "parquet" and query is OCCUPANCY:
        geo = json.loads(pq.read_schema(io.BytesIO(response.content)).metadata[b"geo"])
        assert (geo["primary_column"], geo["columns"]["location"]["encoding"]) == ("location", "WKB")


@pytest.mark.anyio
async def test_whole_version_exports_have_no_row_limit(api: httpx.AsyncClient, demo_hub: Hub) -> None:
    expected = await all_records(api, "parking-occupancy", version=1)
    assert len(expected) == 576  # more than one records page (limit 1000 max, 100 by default)
    for fmt in ("csv", "ndjson", "parquet", "xlsx"):
        response = await api.get(f"{API}/datasets/parking-occupancy/exports/{fmt}?version=1")
        for rows in read_back(fmt, response.content):
            assert typed_rows(rows, expected) == expected, fmt
    # A whole version's Parquet is the stored part itself, byte for byte.
    with demo_hub.sessions() as session:
        from catalogue.meta.metadata import get_dataset, get_version

        (part,) = get_version(session, get_dataset(session, "parking-occupancy"), 1).parts
    parquet = await api.get(f"{API}/datasets/parking-occupancy/exports/parquet?version=1")
    assert hashlib.sha256(parquet.content).hexdigest() == part["sha256"]


@pytest.mark.anyio
async def test_refine_and_exclude_apply_to_exports(api: httpx.AsyncClient) -> None:
    params = {"refine": "lot_id:P01", "exclude": ["free:395"], "version": 1}
    expected = await all_records(api, "parking-occupancy", **params)
    response = await api.get(f"{API}/datasets/parking-occupancy/exports/ndjson", params=params)
    assert [json.loads(line) for line in response.text.splitlines()] == expected
    assert {r["lot_id"] for r in expected} == {"P01"} and all(r["free"] != 395 for r in expected)


def _error(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert (response.status_code, response.headers["content-type"]) == (status, "application/json")
    (key,) = response.json()
    assert key == "error"
    return response.json()["error"]  # type: ignore[no-any-return]


@pytest.mark.anyio
@pytest.mark.parametrize(("path", "error"), [
    ("car-parks/exports/xml", {"code": "invalid-parameter", "status": 400,
                               "message": "Unknown export format 'xml'. Use one of: csv, json, ndjson, geojson, parquet, xlsx."}),
    ("car-parks/exports/csv?delimiter=%3B%3B", {
        "code": "invalid-parameter", "status": 400, "details": {"parameter": "delimiter"},
        "message": "delimiter must be one character that is not a letter, digit, quote or line break "
                   "(e.g. ',', ';', '|' or a tab); got ';;'."}),
    ("car-parks/exports/csv?number_style=german&delimiter=%2C", {
        "code": "invalid-parameter", "status": 400, "details": {"parameter": "delimiter"},
        "message": "number_style=german writes decimal commas (12345,67), so the delimiter cannot be ','; "
                   "use ';' (the default for german) or another character."}),
    ("car-parks/exports/csv?number_style=swiss", {
        "code": "invalid-parameter", "status": 400, "details": {"parameter": "number_style"},
        "message": "number_style must be one of: international, german; got 'swiss'."}),
    ("car-parks/exports/json?delimiter=%3B", {
        "code": "invalid-parameter", "status": 400, "details": {"parameter": "delimiter"},
        "message": "delimiter applies to csv exports only."}),
    ("egovernment-services/exports/geojson", {
        "code": "invalid-parameter", "status": 400,
        "message": "Dataset 'egovernment-services' has no geometry field, so it has no GeoJSON export; use csv or json."}),
    ("car-parks/exports/geojson?select=lot_id", {
        "code": "invalid-parameter", "status": 400, "details": {"parameter": "select"},
        "message": "GeoJSON needs a geometry column, and this export selects none: add the geometry field to "
                   "select, or use csv or json."}),
    ("car-parks/exports/csv?version=9", {
        "code": "version-not-found", "status": 404, "message": "Dataset 'car-parks' has no version 9. Versions 1 to 1 exist."}),
])
async def test_bad_inputs_are_refused_in_the_envelope(api: httpx.AsyncClient, path: str, error: dict[str, Any]) -> None:
    assert _error(await api.get(f"{API}/datasets/{path}"), error["status"]) == error


@pytest.mark.anyio
@pytest.mark.parametrize("fmt", ["csv", "parquet", "xlsx", "geojson"])
@pytest.mark.parametrize(("params", "token"), [
    ({"where": "capacity >"}, None), ({"where": "nope = 1"}, "nope"), ({"order_by": "sleep(1)"}, "sleep"),
    ({"select": "lot_id; select 1"}, None), ({"where": "capacity = 'many'"}, None),
])
async def test_bad_queries_fail_as_the_records_route_fails(
    api: httpx.AsyncClient, demo_hub: Hub, fmt: str, params: dict[str, str], token: str | None,
) -> None:
    scratch = demo_hub.settings.store_dir / ".scratch"
    before = sorted(scratch.iterdir())
    exported = _error(await api.get(f"{API}/datasets/car-parks/exports/{fmt}", params=params))
    assert exported == _error(await api.get(f"{API}/datasets/car-parks/records", params=params))
    assert exported["code"] == "invalid-query"
    if token:
        assert exported["details"]["token"] == token
    assert sorted(scratch.iterdir()) == before  # no scratch file left behind


@pytest.mark.anyio
async def test_nothing_published_changes(api: httpx.AsyncClient, demo_hub: Hub) -> None:
    def published() -> list[tuple[str, bytes]]:
        return [(k, hashlib.sha256(demo_hub.storage.read_bytes(k)).digest()) for k in demo_hub.storage.list_keys("datasets")]

    before, versions = published(), (await api.get(f"{API}/datasets/parking-occupancy/versions")).json()
    for fmt in ("csv", "json", "parquet", "xlsx"):
        for query in ({}, OCCUPANCY, {"where": "nope"}):
            await api.get(f"{API}/datasets/parking-occupancy/exports/{fmt}", params=query)
    assert published() == before
    assert (await api.get(f"{API}/datasets/parking-occupancy/versions")).json() == versions
    assert list((demo_hub.settings.store_dir / ".scratch").iterdir()) == []


@pytest.mark.anyio
async def test_etags_304_and_immutable_pinned_versions(api: httpx.AsyncClient, demo_hub: Hub) -> None:
    with demo_hub.sessions() as session:
        from catalogue.meta.metadata import get_dataset, get_version

        content_hash = get_version(session, get_dataset(session, "car-parks"), 1).content_hash
    url = f"{API}/datasets/car-parks/exports"
    pinned = await api.get(f"{url}/parquet?version=1")
    assert (pinned.headers["etag"], pinned.headers["cache-control"], pinned.headers["accept-ranges"]) == (
        f'"{content_hash}-parquet"', "public, max-age=31536000, immutable", "bytes")
    for held in (pinned.headers["etag"], f'"other", W/{pinned.headers["etag"]}', "*"):
        cached = await api.get(f"{url}/parquet?version=1", headers={"If-None-Match": held})
        assert (cached.status_code, cached.content) == (304, b"")
        assert {k: cached.headers[k] for k in ("etag", "cache-control", "x-dataset-version")} == {
            "etag": pinned.headers["etag"], "cache-control": "public, max-age=31536000, immutable", "x-dataset-version": "1"}
    stale = await api.get(f"{url}/parquet?version=1", headers={"If-None-Match": '"something-else"'})
    assert (stale.status_code, stale.content) == (200, pinned.content)
    current = await api.get(f"{url}/parquet")
    assert (current.headers["etag"], current.headers["cache-control"]) == (pinned.headers["etag"], "public, max-age=60")

    # Filtered exports are named by their parameters too: same parameters, same tag and bytes.
    first, again, other = [await api.get(f"{url}/csv", params={"version": 1, **p}) for p in (
        {"where": "capacity > 300", "number_style": "german"}, {"where": "capacity > 300", "number_style": "german"},
        {"where": "capacity > 301", "number_style": "german"})]
    assert first.headers["etag"] == again.headers["etag"] != other.headers["etag"]
    assert first.content == again.content and first.headers["etag"].startswith(f'"{content_hash}-csv-')
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    cached = await api.get(f"{url}/csv", params={"version": 1, "where": "capacity > 300", "number_style": "german"},
                           headers={"If-None-Match": first.headers["etag"]})
    assert cached.status_code == 304


# -- a dataset of formula-like cells -----------------------------------------------

@pytest.fixture
async def formula_api(make_catalogue: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Hub]]:
    """The API in process over one dataset whose text cells look like spreadsheet formulas."""
    hub = make_catalogue("formula-cells", FORMULA_SCHEMA, FORMULA_FEED)
    app = create_app(hub.settings, hub)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as client:
        yield client, hub
    app.state.query_engine.close()


@pytest.mark.anyio
async def test_spreadsheets_neutralise_formulas_json_and_parquet_stay_exact(formula_api: tuple[httpx.AsyncClient, Hub]) -> None:
    client, hub = formula_api
    url = f"{API}/datasets/formula-cells/exports"
    csv_text = (await client.get(f"{url}/csv")).content
    for rows in read_back("csv", csv_text):
        assert [r["label"] for r in rows] == NEUTRALISED
        assert [typed_like(r["amount"], 1.0) for r in rows] == AMOUNTS  # numbers stay numbers
    assert b'"\'-2+3",0.1,' in csv_text and b"-2.5," in csv_text
    sheet = openpyxl.load_workbook(io.BytesIO((await client.get(f"{url}/xlsx")).content), read_only=True).active
    assert [list(r) for r in sheet.iter_rows(values_only=True)] == [["id", "label", "amount", "place"]] + [
        [i, label, None if amount is None else (int(amount) if amount.is_integer() else amount), wkt]
        for i, label, amount, wkt in zip(range(1, 6), NEUTRALISED, AMOUNTS, [
            "POINT (9.99712 53.55324)", "POINT (10 53.5)", "POINT (9.9 53.6)", "POINT (9.95 53.55)", "POINT (9.9 53.5)"])]
    assert [r["label"] for r in (await client.get(f"{url}/json")).json()] == LABELS
    ndjson = (await client.get(f"{url}/ndjson")).text.splitlines()
    assert [json.loads(line)["label"] for line in ndjson] == LABELS
    features = (await client.get(f"{url}/geojson")).json()["features"]
    assert [f["properties"]["label"] for f in features] == LABELS
    parquet = pq.read_table(io.BytesIO((await client.get(f"{url}/parquet")).content))
    assert (parquet.column("label").to_pylist(), parquet.column("amount").to_pylist()) == (LABELS, AMOUNTS)
    filtered = pq.read_table(io.BytesIO((await client.get(f"{url}/parquet", params={"where": "id < 4"})).content))
    assert filtered.column("label").to_pylist() == LABELS[:3]
    assert list((hub.settings.store_dir / ".scratch").iterdir()) == []


@pytest.mark.anyio
async def test_german_numbers_delimiters_and_bom(formula_api: tuple[httpx.AsyncClient, Hub]) -> None:
    client, _ = formula_api
    url = f"{API}/datasets/formula-cells/exports/csv"
    german = await client.get(url, params={"number_style": "german", "with_bom": "true", "select": "id, label, amount"})
    assert german.headers["content-type"] == "text/csv; charset=utf-8"
    assert german.content.startswith(b"\xef\xbb\xbf\"id\";\"label\";\"amount\"\n1;\"'=1+1\";\"12345,67\"\n")
    rows = list(csv.reader(io.StringIO(german.content.decode("utf-8-sig")), delimiter=";"))
    assert [r[2] for r in rows] == ["amount", "12345,67", "-2,5", "0,1", "1000000", ""]
    # A German reader gets the numbers back as numbers.
    frame = pd.read_csv(io.BytesIO(german.content), sep=";", decimal=",", encoding="utf-8-sig")
    assert frame["amount"].dtype == "float64"
    assert [None if v != v else v for v in frame["amount"]] == AMOUNTS
    assert list(frame["label"]) == NEUTRALISED

    plain = await client.get(url, params={"select": "id, amount"})
    assert not plain.content.startswith(b"\xef\xbb\xbf")
    assert plain.text == '"id","amount"\n1,12345.67\n2,-2.5\n3,0.1\n4,1000000\n5,\n'
    piped = await client.get(url, params={"select": "id, amount", "delimiter": "|", "number_style": "international"})
    assert piped.text == '"id"|"amount"\n1|12345.67\n2|-2.5\n3|0.1\n4|1000000\n5|\n'
    tabbed = await client.get(url, params={"select": "id, amount", "delimiter": "\t", "number_style": "german"})
    assert tabbed.text == '"id"\t"amount"\n1\t"12345,67"\n2\t"-2,5"\n3\t"0,1"\n4\t"1000000"\n5\t\n'
    empty = await client.get(url, params={"where": "id > 99", "number_style": "german", "with_bom": "1"})
    assert empty.content == b'\xef\xbb\xbf"id";"label";"amount";"place"\n'


# -- a million rows behind a real server ---------------------------------------------

def _big_hub(root: Path) -> Hub:
    """A catalogue holding 'big': 1,048,576 generated rows in two parts, ingested through the store."""
    defs = root / "defs"
    (defs / "definitions").mkdir(parents=True)
    (defs / "schemas").mkdir()
    (defs / "publishers.yaml").write_text("publishers:\n  - name: testamt\n    title: Testamt Musterstadt\n")
    schema = {"fields": [{"name": "id", "type": "integer"}, {"name": "label", "type": "string"},
                         {"name": "value", "type": "number"}, {"name": "seen", "type": "datetime"}],
              "primaryKey": ["id"]}
    (defs / "schemas" / "big.json").write_text(json.dumps(schema))
    (defs / "definitions" / "big.yaml").write_text(yaml.safe_dump({
        "name": "big", "title": "Generated rows", "description": "Eine Million Zeilen.", "publisher": "testamt",
        "license": "http://dcat-ap.de/def/licenses/dl-zero-de/2.0", "schema": "schemas/big.json"}))
    feed = root / "big.csv"
    duckdb.sql(f"COPY (SELECT range AS id, 'Zeile ' || range AS label, range / 7 AS value, "
               f"strftime(TIMESTAMP '2026-01-01' + to_seconds(range), '%Y-%m-%dT%H:%M:%S') AS seen "
               f"FROM range({BIG_ROWS})) TO '{feed}' (HEADER)")
    hub = open_hub(Settings(data_dir=root / "var", definitions_dir=defs))
    sync_definitions(hub, load_definitions(defs))
    result = ingest_delivery(hub, "big", Delivery(feed.read_bytes(), "csv", {}, "replace", {"source_url": "test"}))
    assert (result.status, result.rows) == ("published", BIG_ROWS), result.report
    return hub


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Hub]]:
    """The real app under uvicorn in a background thread, on a free loopback port."""
    hub = _big_hub(tmp_path_factory.mktemp("exports-server"))
    with threaded_server(create_app(hub.settings, hub)) as (host, port):
        yield f"http://{host}:{port}", hub
    hub.close()


class HttpRangeFile:
    """A read-only, seekable file over HTTP: every read is one Range request (for pyarrow)."""

    def __init__(self, client: httpx.Client, url: str) -> None:
        self.client, self.url, self.position, self.fetched, self.requests = client, url, 0, 0, 0
        probe = client.get(url, headers={"Range": "bytes=0-0"})
        assert probe.status_code == 206
        self._size = int(probe.headers["content-range"].rsplit("/", 1)[1])
        self.closed = False

    def size(self) -> int:
        return self._size

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = {0: offset, 1: self.position + offset, 2: self._size + offset}[whence]
        return self.position

    def read(self, n: int = -1) -> bytes:
        end = self._size if n < 0 else min(self._size, self.position + n)
        if end <= self.position:
            return b""
        response = self.client.get(self.url, headers={"Range": f"bytes={self.position}-{end - 1}"})
        assert response.status_code == 206, response.status_code
        assert response.headers["content-range"] == f"bytes {self.position}-{end - 1}/{self._size}"
        self.requests += 1
        self.fetched += len(response.content)
        self.position = end
        return response.content

    def close(self) -> None:
        self.closed = True


def test_parquet_range_reads_fetch_only_what_pyarrow_needs(server: tuple[str, Hub]) -> None:
    base, _ = server
    url = f"{API}/datasets/big/exports/parquet?version=1"
    with httpx.Client(base_url=base, timeout=60) as client:
        remote = HttpRangeFile(client, url)
        parquet = pq.ParquetFile(remote)
        assert (parquet.metadata.num_rows, parquet.schema_arrow.names) == (BIG_ROWS, ["id", "label", "value", "seen"])
        ids = parquet.read(columns=["id"])
        full = client.get(url)
    assert full.headers["accept-ranges"] == "bytes" and len(full.content) == remote.size()
    assert ids.equals(pq.read_table(io.BytesIO(full.content), columns=["id"]))
    assert ids.column("id").to_pylist()[:3] == [0, 1, 2] and len(ids) == BIG_ROWS
    print(f"range reads: {remote.fetched} of {remote.size()} bytes in {remote.requests} requests")
    assert remote.fetched < remote.size() / 2


def test_a_raw_range_request_gets_206_with_exactly_those_bytes(server: tuple[str, Hub]) -> None:
    base, _ = server
    url = f"{API}/datasets/big/exports/parquet?version=1"
    with httpx.Client(base_url=base, timeout=60) as client:
        full = client.get(url)
        part = client.get(url, headers={"Range": "bytes=0-99"})
        tail = client.get(url, headers={"Range": "bytes=-8", "If-Range": full.headers["etag"]})
        stale = client.get(url, headers={"Range": "bytes=0-99", "If-Range": '"an-older-copy"'})
    size = len(full.content)
    assert (part.status_code, part.headers["content-range"], part.headers["content-length"]) == (
        206, f"bytes 0-99/{size}", "100")
    assert part.content == full.content[:100] and part.content.startswith(b"PAR1")
    assert (tail.status_code, tail.content) == (206, full.content[-8:])
    assert tail.content.endswith(b"PAR1")
    assert (stale.status_code, len(stale.content)) == (200, size)  # If-Range with another ETag: the whole file


def _memory_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def test_a_million_row_csv_streams_in_flat_memory(server: tuple[str, Hub]) -> None:
    base, _ = server
    try:  # Linux: writing 5 resets the peak resident set size (VmHWM) to the current one
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        pytest.skip("needs /proc/self/clear_refs to reset the peak RSS")
    url = f"{API}/datasets/big/exports/csv?version=1"
    size = lines = 0
    digest = hashlib.sha256()
    with httpx.Client(base_url=base, timeout=120) as client:
        # One export first, unmeasured: what the first query of a process allocates once (DuckDB's
        # buffers and threads, ~40 MB) is not growth with the size of an export.
        with client.stream("GET", url) as response:
            for _ in response.iter_raw():
                pass
        # The server runs in this process: the peak covers DuckDB, the CSV writer, uvicorn and the client.
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        start = _memory_kib("VmRSS")
        with client.stream("GET", url) as response:
            assert response.status_code == 200
            for chunk in response.iter_raw():
                size += len(chunk)
                lines += chunk.count(b"\n")
                digest.update(chunk)
        growth = (_memory_kib("VmHWM") - start) * 1024
        # Control: the same measurement does see a copy of the export held in memory.
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        start = _memory_kib("VmRSS")
        buffered = client.get(url).content
        held = (_memory_kib("VmHWM") - start) * 1024
    print(f"csv export: {size} bytes; peak RSS growth streaming {growth} bytes ({growth / size:.1%}), "
          f"buffering the body {held} bytes ({held / size:.0%})")
    assert lines == BIG_ROWS + 1 and hashlib.sha256(buffered).digest() == digest.digest()
    assert held > size  # the method can see a materialised export...
    assert growth < size / 4  # ...and the streamed one stayed far below it


def test_xlsx_refuses_more_rows_than_excel_holds(server: tuple[str, Hub]) -> None:
    base, hub = server
    with httpx.Client(base_url=base, timeout=120) as client:
        refused = client.get(f"{API}/datasets/big/exports/xlsx?version=1")
        assert _error(refused) == {
            "code": "invalid-parameter", "status": 400, "details": {"parameter": "format", "rows": BIG_ROWS},
            "message": "This export has 1,048,576 rows; an Excel sheet holds at most 1,048,575 below its header. "
                       "Narrow it with where, or use csv or parquet."}
        small = client.get(f"{API}/datasets/big/exports/xlsx", params={"where": "id < 2000", "order_by": "id desc"})
    assert small.status_code == 200 and int(small.headers["content-length"]) == len(small.content)
    assert small.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    sheet = openpyxl.load_workbook(io.BytesIO(small.content), read_only=True).active
    header, *rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert header == ["id", "label", "value", "seen"] and len(rows) == 2000
    assert excel_precision([dict(enumerate(rows[0]))]) == excel_precision([dict(enumerate(
        [1999, "Zeile 1999", 1999 / 7, datetime(2026, 1, 1, 0, 33, 19)]))])
    assert list((hub.settings.store_dir / ".scratch").iterdir()) == []
