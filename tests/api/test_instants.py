"""One rule for datetimes on every way out: instants (values delivered with an offset or Z) carry 'Z', local times none.

A ``datetime`` field whose values carry offsets is stored as instants
(Parquet TIMESTAMP adjusted to UTC, DuckDB TIMESTAMP WITH TIME ZONE) and
written in UTC with 'Z' by the records API, every export and the SQL
endpoint; a field without offsets stays local. A timestamp'…' literal with
an offset compares as the instant it names.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from api.app import create_app
from catalogue.hub import Hub

pytestmark = pytest.mark.anyio

API = "/api/v1"
SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "ts", "type": "datetime"}], "primaryKey": ["id"]}
STAMPED = {"fields": [{"name": "id", "type": "integer"},
                      {"name": "ts", "type": "datetime", "format": "%d.%m.%Y %H:%M:%S.%f %z"}], "primaryKey": ["id"]}
INSTANTS_FEED = b"id;ts\n1;2026-11-20T08:15:30.123+01:00\n2;2026-11-20T07:00:00Z\n3;2026-11-20 01:00:00-0530\n"
LOCALS_FEED = b"id;ts\n1;2026-11-20T08:15:30.123\n2;2026-11-20T07:00:00\n3;\n"
STAMPED_FEED = b"id;ts\n1;20.11.2026 08:15:30.123 +01:00\n2;20.11.2026 07:00:00.0 +0000\n3;20.11.2026 01:00:00.0 -05:30\n"
INSTANTS = ["2026-11-20T07:15:30.123Z", "2026-11-20T07:00:00Z", "2026-11-20T06:30:00Z"]
LOCALS = ["2026-11-20T08:15:30.123", "2026-11-20T07:00:00", None]
UTC = dt.timezone.utc
INSTANT_VALUES = [dt.datetime(2026, 11, 20, 7, 15, 30, 123000, tzinfo=UTC), dt.datetime(2026, 11, 20, 7, tzinfo=UTC),
                  dt.datetime(2026, 11, 20, 6, 30, tzinfo=UTC)]
EXPECTED = {"instants": INSTANTS, "stamped": INSTANTS, "locals": LOCALS}


@pytest.fixture
async def api(make_catalogue: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Hub]]:
    """The API over three datasets: ISO datetimes with offsets, without, and a pattern reading %z."""
    make_catalogue("instants", SCHEMA, INSTANTS_FEED, options={"delimiter": ";"})
    make_catalogue("locals", SCHEMA, LOCALS_FEED, options={"delimiter": ";"})
    hub = make_catalogue("stamped", STAMPED, STAMPED_FEED, options={"delimiter": ";"})
    app = create_app(hub.settings, hub)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as client:
        yield client, hub
    app.state.query_engine.close()
    app.state.sql_pool.close()


async def ok(client: httpx.AsyncClient, url: str, **params: Any) -> httpx.Response:
    response = await client.get(url, params=params)
    assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize("name", ["instants", "stamped", "locals"])
async def test_records_json_and_ndjson_write_instants_with_z_and_local_times_without(
    api: tuple[httpx.AsyncClient, Hub], name: str
) -> None:
    client, _ = api
    expected = EXPECTED[name]
    records = (await ok(client, f"{API}/datasets/{name}/records", order_by="id")).json()["results"]
    assert [r["ts"] for r in records] == expected
    selected = (await ok(client, f"{API}/datasets/{name}/records", select="id, ts", order_by="id")).json()["results"]
    assert [r["ts"] for r in selected] == expected
    exports = f"{API}/datasets/{name}/exports"
    assert [r["ts"] for r in (await ok(client, f"{exports}/json")).json()] == expected
    assert [json.loads(line)["ts"] for line in (await ok(client, f"{exports}/ndjson")).text.splitlines()] == expected
    rows = list(csv.DictReader(io.StringIO((await ok(client, f"{exports}/csv")).text)))
    assert [r["ts"] or None for r in rows] == expected


@pytest.mark.parametrize("name", ["instants", "stamped", "locals"])
async def test_parquet_and_xlsx_keep_instants_apart_from_local_times(
    api: tuple[httpx.AsyncClient, Hub], name: str
) -> None:
    client, _ = api
    exports = f"{API}/datasets/{name}/exports"
    for params in ({}, {"where": "id < 10"}):  # the stored parts, and a query written by DuckDB
        table = pq.read_table(io.BytesIO((await ok(client, f"{exports}/parquet", **params)).content))
        kind = table.schema.field("ts").type
        assert pa.types.is_timestamp(kind) and (kind.tz is not None) == (name != "locals")
        values = table.sort_by("id").column("ts").to_pylist()
        if name == "locals":
            assert values == [dt.datetime(2026, 11, 20, 8, 15, 30, 123000), dt.datetime(2026, 11, 20, 7), None]
        else:
            assert values == INSTANT_VALUES
    sheet = openpyxl.load_workbook(io.BytesIO((await ok(client, f"{exports}/xlsx")).content)).active
    cells = [row[1] for row in sheet.iter_rows(min_row=2)]
    naive = [None if v is None else v.astimezone(UTC).replace(tzinfo=None) if v.tzinfo else v
             for v in (INSTANT_VALUES if name != "locals" else
                       [dt.datetime(2026, 11, 20, 8, 15, 30, 123000), dt.datetime(2026, 11, 20, 7), None])]
    assert [c.value for c in cells] == naive
    stamped = [c.number_format for c in cells if c.value is not None]
    assert all(f.endswith('"Z"') for f in stamped) if name != "locals" else not any("Z" in f for f in stamped)


@pytest.mark.parametrize("name", ["instants", "stamped", "locals"])
async def test_the_sql_endpoint_writes_instants_with_z(api: tuple[httpx.AsyncClient, Hub], name: str) -> None:
    client, _ = api
    body = (await ok(client, f"{API}/sql", sql=f'SELECT ts FROM "{name}" ORDER BY id')).json()
    assert [row[0] for row in body["rows"]] == EXPECTED[name]


@pytest.mark.parametrize(("name", "where", "ids"), [
    ("instants", "ts = timestamp'2026-11-20T08:15:30.123+01:00'", [1]),
    ("instants", "ts = timestamp'2026-11-20T07:15:30.123Z'", [1]),
    ("instants", "ts = timestamp'2026-11-20 02:15:30.123-05:00'", [1]),
    ("instants", "ts = timestamp'2026-11-20T08:00:00+0100'", [2]),
    ("instants", "ts >= timestamp'2026-11-20T08:00:00+01:00'", [1, 2]),
    ("instants", "ts < timestamp'2026-11-20T07:00:00Z'", [3]),
    ("instants", "ts = timestamp'2026-11-20T07:00:00'", [2]),  # no offset against instants: read as UTC
    ("stamped", "ts = timestamp'2026-11-20T08:15:30.123+01:00'", [1]),
    ("locals", "ts = timestamp'2026-11-20T08:15:30.123'", [1]),
    ("locals", "ts >= date'2026-11-20'", [1, 2]),
])
async def test_a_timestamp_literal_with_an_offset_compares_as_an_instant(
    api: tuple[httpx.AsyncClient, Hub], name: str, where: str, ids: list[int]
) -> None:
    client, _ = api
    records = (await ok(client, f"{API}/datasets/{name}/records", where=where, order_by="id")).json()["results"]
    assert [r["id"] for r in records] == ids
    facets = (await ok(client, f"{API}/datasets/{name}/facets", facet="id", where=where)).json()
    assert sorted(int(v["value"]) for f in facets["facets"] for v in f["facets"]) == ids
    exported = (await ok(client, f"{API}/datasets/{name}/exports/json", where=where)).json()
    assert sorted(r["id"] for r in exported) == ids


@pytest.mark.parametrize(("name", "hours"), [
    ("instants", ["2026-11-20T06:00:00Z", "2026-11-20T07:00:00Z"]),
    ("locals", [None, "2026-11-20T07:00:00", "2026-11-20T08:00:00"]),
])
async def test_date_trunc_keeps_instants_instants(api: tuple[httpx.AsyncClient, Hub], name: str, hours: list) -> None:
    client, _ = api
    grouped = (await ok(client, f"{API}/datasets/{name}/records", group_by="date_trunc('hour', ts) as hour",
                        select="hour, count(*) as n", order_by="hour")).json()["results"]
    assert {r["hour"] for r in grouped} == set(hours)
    selected = (await ok(client, f"{API}/datasets/{name}/records", select="date_trunc('hour', ts) as hour",
                         order_by="id")).json()["results"]
    assert {r["hour"] for r in selected} == set(hours)


@pytest.mark.parametrize(("value", "ids"), [
    ("2026-11-20T08:15:30.123+01:00", [1]), ("2026-11-20T07:15:30.123Z", [1]), ("2026-11-20T07:00:00", [2])])
async def test_refine_with_an_offset_compares_as_an_instant(
    api: tuple[httpx.AsyncClient, Hub], value: str, ids: list[int]
) -> None:
    client, _ = api
    records = (await ok(client, f"{API}/datasets/instants/records", refine=f"ts:{value}")).json()["results"]
    assert [r["id"] for r in records] == ids
    excluded = (await ok(client, f"{API}/datasets/instants/records", exclude=f"ts:{value}")).json()["results"]
    assert sorted(r["id"] for r in excluded) == sorted({1, 2, 3} - set(ids))


@pytest.mark.parametrize("name", ["instants", "stamped", "locals"])
async def test_facet_values_of_a_datetime_are_written_as_records_write_them_and_refine_back(
    api: tuple[httpx.AsyncClient, Hub], name: str
) -> None:
    client, _ = api
    body = (await ok(client, f"{API}/datasets/{name}/facets", facet="ts")).json()
    values = [v["value"] for f in body["facets"] for v in f["facets"]]
    assert sorted(values, key=str) == sorted(EXPECTED[name], key=str)
    for value in (v for v in values if v is not None):
        records = (await ok(client, f"{API}/datasets/{name}/records", refine=f"ts:{value}")).json()["results"]
        assert [r["ts"] for r in records] == [value]
