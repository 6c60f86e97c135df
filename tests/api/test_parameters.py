"""Parameters: one declaration for records, facets and exports; unknown names refused; integers bounded; links."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import httpx
import pytest

from api.params import DATA_PARAMETERS, INT64_MAX, DataParams
from catalogue.errors import InvalidParameter
from catalogue.hub import Hub
from catalogue.query.paging import next_page, page_limit
from catalogue.query.records import RecordsRequest
from catalogue.settings import Settings

pytestmark = pytest.mark.anyio
API = "/api/v1"
RECORDS_KNOWN = ["as_of", "cursor", "exclude", "group_by", "limit", "offset", "order_by", "refine", "select",
                 "version", "where"]


async def test_a_mistyped_parameter_is_a_400_naming_it_and_the_known_ones(api: httpx.AsyncClient) -> None:
    response = await api.get(f"{API}/datasets/car-parks/records", params={"wehre": "capacity > 400"})
    assert (response.status_code, response.json()) == (400, {"error": {
        "code": "invalid-parameter", "status": 400,
        "message": f"Unknown query parameter 'wehre' for {API}/datasets/car-parks/records; known parameters: "
                   f"{', '.join(RECORDS_KNOWN)}.",
        "details": {"parameter": "wehre", "unknown": ["wehre"], "known": RECORDS_KNOWN}}})


@pytest.mark.parametrize(("path", "unknown"), [
    ("/datasets/car-parks/records?format=csv", "format"),  # records answer JSON only: csv is an export
    ("/datasets/car-parks/facets?select=name", "select"),  # facets take no select
    ("/datasets/car-parks/exports/csv?limit=3", "limit"),  # exports have no row limit
    ("/datasets?limt=3", "limt"),
    ("/datasets/car-parks?version=1", "version"),
    ("/datasets/car-parks/versions/1?x=", "x"),
    ("/datasets/car-parks/diff?from=1&fromat=csv", "fromat"),
    ("/publishers?q=amt", "q"),
    ("/sql?sql=SELECT 1&timeout=5", "timeout"),
])
async def test_unknown_parameters_are_refused_on_every_kind_of_route(
    api: httpx.AsyncClient, path: str, unknown: str
) -> None:
    response = await api.get(API + path)
    error = response.json()["error"]
    assert (response.status_code, error["code"], error["details"]["unknown"]) == (400, "invalid-parameter", [unknown])


async def test_health_refuses_unknown_parameters_too(api: httpx.AsyncClient) -> None:
    response = await api.get("/health", params={"verbose": "1"})
    assert (response.status_code, response.json()["error"]["details"]["known"]) == (400, [])


async def test_an_unknown_member_of_the_sql_body_is_refused(api: httpx.AsyncClient) -> None:
    response = await api.post(f"{API}/sql", json={"sql": "SELECT 1", "timeout": 5})
    error = response.json()["error"]
    assert (response.status_code, error["code"], error["details"]["problems"][0]["parameter"]) == (
        400, "invalid-parameter", "body.timeout")


async def test_known_parameters_still_answer(api: httpx.AsyncClient) -> None:
    answers = [await api.get(API + path) for path in (
        "/datasets/car-parks/records?limit=2&offset=1&order_by=lot_id&version=1",
        "/datasets/car-parks/facets?facet=operator&limit=3",
        "/datasets/car-parks/exports/csv?delimiter=;&select=lot_id",
        "/datasets?limit=2&q=park",
    )]
    assert [a.status_code for a in answers] == [200] * 4


# RecordsRequest fields that another API's parameters set, and how the records API says the same.
SET_ELSEWHERE = {"bbox": "OGC API items' bbox (api/routes/ogc.py); on the records API: where=in_bbox(...)"}


def test_every_records_request_field_is_an_http_parameter() -> None:
    """A field added to RecordsRequest must be declared once in api.params (else no client can set it), unless
    another API's parameter sets it (SET_ELSEWHERE, which must name only fields that exist)."""
    names = {f.name for f in fields(RecordsRequest)}
    assert [n for n in sorted(names) if n not in DATA_PARAMETERS and n not in SET_ELSEWHERE] == []
    assert set(SET_ELSEWHERE) <= names - set(DATA_PARAMETERS)


def test_the_request_is_derived_from_the_parameters() -> None:
    values = {"select": "a", "where": "b > 1", "group_by": "a", "order_by": "a desc", "limit": 5, "offset": 2,
              "refine": ["x:1"], "exclude": ["y:2"], "cursor": "c", "version": 3, "as_of": None}
    assert DataParams(values).request() == RecordsRequest(
        select="a", where="b > 1", group_by="a", order_by="a desc", limit=5, offset=2, refine=["x:1"],
        exclude=["y:2"], cursor="c")
    assert DataParams({"where": "b > 1"}).request(limit=None) == RecordsRequest(where="b > 1", limit=None)


def _another(value: Any) -> Any:
    if isinstance(value, list):
        return ["k:v"]
    if isinstance(value, int):
        return value + 1
    return "other"


@pytest.mark.parametrize("name", [f.name for f in fields(RecordsRequest)])
def test_every_request_field_changes_the_cache_key(name: str) -> None:
    base = RecordsRequest()
    changed = RecordsRequest(**{name: _another(getattr(base, name))})
    assert base.cache_key("records") != changed.cache_key("records")


def test_the_cache_key_ignores_filter_order_and_tells_kinds_and_extras_apart() -> None:
    one = RecordsRequest(refine=["a:1", "b:2"], exclude=["c:3", "d:4"])
    other = RecordsRequest(refine=["b:2", "a:1"], exclude=["d:4", "c:3"])
    assert one.cache_key("records") == other.cache_key("records")
    assert one.cache_key("records") != one.cache_key("facets")
    assert one.cache_key("facets", facet=("a",), size=3) != one.cache_key("facets", facet=("a",), size=4)
    hash(one.cache_key("facets", facet=("a", "b"), size=3))  # a dict key


def test_page_limit_walls() -> None:
    settings = Settings(default_page_size=100, max_returned_rows=1000, max_offset_rows=10_000)
    assert [page_limit(None, 0, settings), page_limit(7, 9_993, settings)] == [100, 7]
    with pytest.raises(InvalidParameter) as above:
        page_limit(1001, 0, settings)
    with pytest.raises(InvalidParameter) as past:
        page_limit(1000, 9_001, settings)
    assert (above.value.details, past.value.details) == (
        {"parameter": "limit", "maximum": 1000}, {"parameter": "offset", "maximum": 10_000})


def test_next_page_rules() -> None:
    common = {"offset": 0, "limit": 10, "total_count": 25, "max_offset_rows": 100}
    assert next_page(next_cursor="abc", keyed=True, **common) == {"cursor": "abc", "limit": 10}
    assert next_page(next_cursor=None, keyed=False, **common) == {"offset": 10, "limit": 10}
    assert next_page(next_cursor=None, keyed=True, **common) is None  # keyed plans page by cursor only
    assert next_page(next_cursor=None, keyed=False, **{**common, "offset": 20}) is None  # the last page
    assert next_page(next_cursor=None, keyed=False, **{**common, "total_count": 500, "offset": 85}) is None  # wall


TOO_BIG = [str(INT64_MAX + 1), "99999999999999999999", "-9223372036854775809", "1" + "0" * 400]


@pytest.mark.parametrize("value", TOO_BIG)
@pytest.mark.parametrize("template", [
    "/datasets/car-parks/versions/{v}",
    "/datasets/car-parks/versions/{v}/datapackage.json",
    "/datasets/car-parks/deliveries/{v}/report",
    "/datasets/car-parks/records?version={v}",
    "/datasets/car-parks/records?limit={v}",
    "/datasets/car-parks/records?offset={v}",
    "/datasets/car-parks/facets?version={v}",
    "/datasets/car-parks/exports/csv?version={v}",
    "/datasets/car-parks/diff?from={v}",
    "/datasets/car-parks/diff?from=1&to={v}",
    "/datasets?offset={v}",
    "/sql?sql=SELECT 1&max_rows={v}",
])
async def test_integers_beyond_64_bits_are_a_400(api: httpx.AsyncClient, template: str, value: str) -> None:
    response = await api.get(API + template.format(v=value))
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid-parameter")


async def test_the_largest_64_bit_version_is_simply_not_found(api: httpx.AsyncClient) -> None:
    answers = [await api.get(f"{API}/datasets/car-parks{p}") for p in (
        f"/versions/{INT64_MAX}", f"/deliveries/{INT64_MAX}/report", f"/records?version={INT64_MAX}")]
    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [
        (404, "version-not-found"), (404, "not-found"), (404, "version-not-found")]


async def test_links_come_from_the_public_url_never_the_host_header(api: httpx.AsyncClient, demo_hub: Hub) -> None:
    url = f"{API}/datasets/car-parks/records?limit=2&order_by=lot_id"
    answers = [(await api.get(url, headers={"Host": host})).json()["links"]["next"]
               for host in ("hub.test", "evil.example", "evil.example:666")]
    public = demo_hub.settings.public_url.rstrip("/")
    assert len(set(answers)) == 1
    assert httpx.URL(answers[0]).copy_with(query=None) == httpx.URL(f"{public}{API}/datasets/car-parks/records")
    assert dict(httpx.URL(answers[0]).params) == {"limit": "2", "order_by": "lot_id", "version": "1", "offset": "2"}


@pytest.mark.parametrize("as_of", [
    "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
    "99999999999999999999", "-99999999999999999999", "1e400", "nan", "2026-02-30T00:00:00",
])
@pytest.mark.parametrize("route", ["records", "facets", "exports/csv"])
async def test_an_impossible_instant_is_a_4xx(api: httpx.AsyncClient, route: str, as_of: str) -> None:
    response = await api.get(f"{API}/datasets/car-parks/{route}", params={"as_of": as_of})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["status"] == response.status_code


@pytest.mark.parametrize("path", [
    "/api/v1/datasets/car-parks/versions/{v}/datapackage.json",
    "/api/v1/datasets/car-parks/versions/{v}/datapackage.zip",
    "/api/v1/datasets/car-parks/versions/{v}/parts/x.parquet",
    "/api/v1/datasets/car-parks/facets?version={v}",
    "/api/v1/datasets/car-parks/exports/parquet?version={v}",
    "/api/v1/datasets/car-parks/diff?from=1&to={v}",
    "/api/3/action/resource_show?id=car-parks@{v}",
    "/api/3/action/datastore_search?resource_id=car-parks@{v}",
    "/datastore/dump/car-parks@{v}",
    "/ogc/collections/car-parks/items/{v}",
])
async def test_numbers_past_the_catalogues_integer_columns_find_nothing(api: httpx.AsyncClient, path: str) -> None:
    """On PostgreSQL (the production-backend run) such a number once reached the database and failed as a 500."""
    for value in (INT64_MAX, 2**31):
        response = await api.get(path.format(v=value))
        assert response.status_code in (400, 404, 409), (path, value, response.status_code, response.text[:200])
