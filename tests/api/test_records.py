"""The records API: ODSQL parameters, predicates, paging, versions, facets, diffs."""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.anyio
BASE = "/api/v1/datasets/parking-occupancy"


async def _all(api: httpx.AsyncClient, name: str = "parking-occupancy", **params: Any) -> list[dict]:
    r = await api.get(f"/api/v1/datasets/{name}/exports/json", params=params)
    assert r.status_code == 200
    return r.json()


async def _records(api: httpx.AsyncClient, **params: Any) -> dict:
    r = await api.get(f"{BASE}/records", params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def test_select_fields_aliases_and_order(api: httpx.AsyncClient) -> None:
    rows = await _all(api)
    body = await _records(api, select="lot_id, free as f, occupied + free as total", order_by="free desc, lot_id",
                          limit=3)
    expected = sorted(rows, key=lambda r: (-r["free"], r["lot_id"], r["timestamp"]))[:3]
    assert [r["f"] for r in body["results"]] == [r["free"] for r in expected]
    assert set(body["results"][0]) == {"lot_id", "f", "total"}
    assert all(r["total"] == c["capacity"] for r, c in zip(body["results"], expected))
    assert body["total_count"] == 576


async def test_aggregates_match_python(api: httpx.AsyncClient) -> None:
    rows = await _all(api)
    free = [r["free"] for r in rows]
    body = await _records(api, select="count(*) as n, count(distinct lot_id) as lots, sum(free) as s, avg(free) as a,"
                                         " min(free) as lo, max(free) as hi, median(free) as med, percentile(free, 90) as p90")
    assert body["total_count"] == 1
    (got,) = body["results"]
    ordered = sorted(free)
    rank = 0.9 * (len(ordered) - 1)
    p90 = ordered[math.floor(rank)] + (ordered[math.ceil(rank)] - ordered[math.floor(rank)]) * (rank - math.floor(rank))
    assert got == {"n": 576, "lots": 6, "s": sum(free), "a": pytest.approx(statistics.mean(free)), "lo": min(free),
                   "hi": max(free), "med": statistics.median(free), "p90": pytest.approx(p90)}


async def test_group_by_time_bucket(api: httpx.AsyncClient) -> None:
    rows = await _all(api)
    expected: Counter[str] = Counter()
    for r in rows:
        expected[r["timestamp"][:13] + ":00:00"] += r["occupied"]
    body = await _records(api, group_by="date_trunc('hour', timestamp) as hour",
                          select="hour, sum(occupied) as occupied", order_by="hour", limit=100)
    assert body["total_count"] == 24
    assert {r["hour"]: r["occupied"] for r in body["results"]} == dict(expected)


async def test_group_by_field_with_count(api: httpx.AsyncClient) -> None:
    body = await _records(api, group_by="lot_id", select="lot_id, count(*) as n", order_by="lot_id")
    assert body["results"] == [{"lot_id": f"P0{i}", "n": 96} for i in range(1, 7)]


@pytest.mark.parametrize(
    ("where", "check"),
    [
        ("lot_id = 'P01'", lambda r: r["lot_id"] == "P01"),
        ('lot_id = "P01" and free > 300', lambda r: r["lot_id"] == "P01" and r["free"] > 300),
        ("lot_id in ('P02', 'P03')", lambda r: r["lot_id"] in ("P02", "P03")),
        ("lot_id like 'P0%' and not lot_id = 'P04'", lambda r: r["lot_id"] != "P04"),
        ("free < 100 or occupied < 20", lambda r: r["free"] < 100 or r["occupied"] < 20),
        ("timestamp >= date'2026-11-20' and timestamp < timestamp'2026-11-20 06:00:00'",
         lambda r: r["timestamp"] < "2026-11-20T06:00:00"),
        ("hour(timestamp) = 8", lambda r: r["timestamp"][11:13] == "08"),
        ("free between 100 and 200", lambda r: 100 <= r["free"] <= 200),
        ("search(\"p05\")", lambda r: r["lot_id"] == "P05"),
        ("startswith(lot_id, 'P0') and capacity > 500", lambda r: r["capacity"] > 500),
        # P01 and P02 lie within 1 km of this point; P03 is 850 m away; the rest further.
        ("within_distance(location, geom'POINT(10.0 53.55)', 1km)",
         lambda r: _metres(r["location"]["coordinates"], (10.0, 53.55)) <= 1000),
        ("within_distance(location, geom'POINT(10.0 53.55)', 500m)",
         lambda r: _metres(r["location"]["coordinates"], (10.0, 53.55)) <= 500),
        ("in_bbox(location, 53.54, 9.98, 53.56, 10.0)",
         lambda r: 9.98 <= r["location"]["coordinates"][0] <= 10.0 and 53.54 <= r["location"]["coordinates"][1] <= 53.56),
        ("intersects(location, geom'POLYGON((9.97 53.54, 10.03 53.54, 10.03 53.58, 9.97 53.58, 9.97 53.54))')",
         lambda r: 9.97 <= r["location"]["coordinates"][0] <= 10.03 and 53.54 <= r["location"]["coordinates"][1] <= 53.58),
        ('intersects(location, geom\'{"type": "Polygon", "coordinates": [[[9.97, 53.54], [10.03, 53.54], [10.03, 53.58], '
         '[9.97, 53.58], [9.97, 53.54]]]}\')',
         lambda r: 9.97 <= r["location"]["coordinates"][0] <= 10.03 and 53.54 <= r["location"]["coordinates"][1] <= 53.58),
    ],
)
async def test_where_predicates_match_python(api: httpx.AsyncClient, where: str, check: Any) -> None:
    rows = await _all(api)
    expected = [r for r in rows if check(r)]
    assert 0 < len(expected) < len(rows), "the case must select some but not all rows"
    body = await _records(api, where=where, limit=1000)
    assert body["total_count"] == len(expected)
    assert body["results"] == expected


def _metres(a: list[float], b: tuple[float, float]) -> float:
    lon1, lat1, lon2, lat2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371008.8 * math.asin(math.sqrt(h))


async def test_is_null_and_refine_exclude(api: httpx.AsyncClient) -> None:
    rows = await _all(api, "waste-bin-fill-levels")
    with_note = [r for r in rows if r["note"] is not None]
    assert 0 < len(with_note) < len(rows)
    r = await api.get("/api/v1/datasets/waste-bin-fill-levels/records",
                         params={"where": "note is not null", "limit": 100})
    assert r.json()["results"] == with_note
    r = await api.get("/api/v1/datasets/waste-bin-fill-levels/records", params={"where": "note is null"})
    assert r.json()["total_count"] == len(rows) - len(with_note)
    r = await api.get("/api/v1/datasets/waste-bin-fill-levels/records",
                         params=[("refine", "district:Altstadt"), ("exclude", "volume_litres:240"), ("limit", 100)])
    assert r.json()["results"] == [x for x in rows if x["district"] == "Altstadt" and x["volume_litres"] != 240]


async def test_facets_count_values_under_filters(api: httpx.AsyncClient) -> None:
    rows = await _all(api, "waste-bin-fill-levels")
    r = await api.get("/api/v1/datasets/waste-bin-fill-levels/facets",
                         params=[("facet", "district"), ("where", "fill_level_percent > 50")])
    assert r.status_code == 200
    counts = Counter(x["district"] for x in rows if x["fill_level_percent"] > 50)
    assert r.json() == {
        "dataset": "waste-bin-fill-levels", "version": 1,
        "facets": [{"name": "district", "facets": [
            {"value": v, "count": n} for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]}],
    }


async def test_offset_wall_and_cursor(api: httpx.AsyncClient) -> None:
    r = await api.get(f"{BASE}/records", params={"offset": 9950, "limit": 100})
    assert r.status_code == 400 and r.json()["error"]["details"] == {"parameter": "offset", "maximum": 10000}
    rows = await _all(api)
    seen, url = [], f"{BASE}/records?limit=250&where=free > 10"
    while url:
        page = (await api.get(url)).json()
        seen += page["results"]
        url = page["links"].get("next")
    assert seen == [x for x in rows if x["free"] > 10]


@pytest.mark.parametrize(
    ("params", "token"),
    [
        ({"where": "free >"}, ">"),
        ({"where": "read_csv('/etc/passwd') is not null"}, "READ_CSV"),
        ({"where": "getenv('HOME') = 'x'"}, "getenv"),
        ({"where": "nope = 1"}, "nope"),
        ({"where": "free = 1; DROP TABLE x"}, None),
        ({"where": "lot_id in (select 1)"}, None),
        ({"where": "lot_id = 'a' union select * from duckdb_settings()"}, None),
        ({"where": "count(*) > 1"}, None),
        ({"where": "cast(free as varchar) = '1'"}, None),
        ({"where": "t.free = 1"}, "t.free"),
        ({"select": "*, current_setting('memory_limit')"}, None),
        ({"select": "lot_id from read_parquet('x')"}, None),
        ({"select": "query('select 1')"}, "query"),
        ({"order_by": "(select 1)"}, None),
        ({"group_by": "lot_id; attach 'x'"}, None),
        ({"where": "within_distance(location, geom'POINT(1 2)', 'x')"}, None),
        ({"where": "in_bbox(location, 200, 0, 1, 1)"}, None),
        ({"refine": "nope:1"}, None),
        ({"select": "lot_id, avg(free)"}, None),
    ],
)
async def test_hostile_and_bad_query_parameters_are_400(
    api: httpx.AsyncClient, demo_hub: Any, params: dict, token: str | None
) -> None:
    before = _store_digest(demo_hub.settings.store_dir)
    r = await api.get(f"{BASE}/records", params=params)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] in ("invalid-query", "invalid-parameter")
    if token:
        assert token in error["message"]
    assert _store_digest(demo_hub.settings.store_dir) == before


def _store_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "reports" not in p.parts):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


async def test_version_pinning_as_of_and_diff(client: httpx.AsyncClient, harvested: Any, feed_dir: Path) -> None:
    from harvesters.runner import harvest_source

    v1_rows = await _all(client, "groundwater-levels")
    v1_time = (await client.get("/api/v1/datasets/groundwater-levels/versions/1")).json()["created_at"]
    feed = feed_dir / "feeds" / "groundwater-levels.json"
    rows = json.loads(feed.read_text(encoding="utf-8"))
    rows[0]["level_m_nn"] = 9.99
    removed = rows.pop()
    rows.append({**removed, "date": "2026-12-01"})
    feed.write_text(json.dumps(rows), encoding="utf-8")
    assert harvest_source(harvested, "groundwater-levels").version == 2

    current = await client.get("/api/v1/datasets/groundwater-levels/records", params={"limit": 1})
    pinned = await client.get("/api/v1/datasets/groundwater-levels/records", params={"limit": 1, "version": 1})
    as_of = await client.get("/api/v1/datasets/groundwater-levels/records", params={"limit": 1, "as_of": v1_time})
    assert (current.headers["X-Dataset-Version"], pinned.headers["X-Dataset-Version"]) == ("2", "1")
    assert as_of.json()["version"] == 1 and as_of.json()["results"] == pinned.json()["results"] == v1_rows[:1]
    assert current.json()["results"][0]["level_m_nn"] == 9.99

    diff = (await client.get("/api/v1/datasets/groundwater-levels/diff", params={"from": 1, "to": 2})).json()
    assert diff == {
        "dataset": "groundwater-levels", "from": 1, "to": 2, "key": ["gauge_id", "date"], "compared_by": "primary key",
        "schema": {"added_fields": [], "removed_fields": [], "changed_fields": []},
        "summary": {"added": 1, "removed": 1, "changed": 1},
        "added": [{**_as_record(removed), "date": "2026-12-01"}],
        "removed": [_as_record(removed)],
        "changed": [{"before": v1_rows[0], "after": {**v1_rows[0], "level_m_nn": 9.99}}],
        "truncated": False, "limit": 1000,
    }
    csv_text = (await client.get("/api/v1/datasets/groundwater-levels/diff",
                                 params={"from": 1, "to": 2, "format": "csv"})).text
    assert [line.split(",")[0] for line in csv_text.strip().splitlines()] == [
        "_change", "added", "removed", "before", "after"]


def _as_record(row: dict) -> dict:
    return {**row, "location": {"type": "Point", "coordinates": row["location"]}}


async def test_catalogue_search_by_words(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/v1/datasets", params={"q": "PARK"})
    names = [d["name"] for d in r.json()["results"]]
    assert r.status_code == 200 and set(names) == {"car-parks", "parking-occupancy"}
    r = await api.get("/api/v1/datasets", params={"q": "abfall füllstand"})
    assert [d["name"] for d in r.json()["results"]] == ["waste-bin-fill-levels"]
    r = await api.get("/api/v1/datasets", params={"q": "gibtesnicht"})
    assert r.json() == {"total_count": 0, "limit": 100, "offset": 0, "results": []}
