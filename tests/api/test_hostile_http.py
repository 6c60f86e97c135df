"""Hostile HTTP: every route and every parameter, bad bytes, Range headers, security headers.

The contract tests walk the app's own OpenAPI description, so a route or parameter added
later is tried without anyone listing it here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, unquote_to_bytes

import httpx
import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from starlette.responses import FileResponse, RangeNotSatisfiable

from api.middleware import MAX_PARAM_CHARS, query_problem, valid_byte_ranges
from api.params import INT64_MAX
from catalogue.hub import Hub
from catalogue.settings import PROJECT_ROOT

pytestmark = pytest.mark.anyio
API = "/api/v1"

# A valid value for every path and required parameter, so one hostile value at a time is what fails.
VALID = {"name": "car-parks", "fmt": "csv", "number": "1", "job_id": "1", "from": "1", "sql": "SELECT 1",
         "extension": "ttl", "file_name": "0.parquet", "identifier": "P01", "resource_id": "car-parks"}
CKAN_PATHS = ("/api/3/action/", "/api/action/", "/datastore/dump/")
OVERLONG = "x" * (MAX_PARAM_CHARS + 1)
OUT_OF_RANGE = str(INT64_MAX + 1)
BAD_UTF8 = "%FF%E4%FC"  # raw percent-encoded bytes: never valid UTF-8


def _operations(openapi: dict[str, Any]) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    for path, ops in openapi["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, [p for p in op.get("parameters", []) if p["in"] in ("path", "query")]


def _is_int(param: dict[str, Any]) -> bool:
    schema = param["schema"]
    return schema.get("type") == "integer" or any(s.get("type") == "integer" for s in schema.get("anyOf", []))


def _url(path: str, params: list[dict[str, Any]], hostile: dict[str, str], extra: str = "") -> str:
    """``path`` with every path parameter and required query parameter filled in, and ``hostile`` raw."""
    for p in params:
        if p["in"] == "path":
            raw = hostile.get(p["name"], quote(VALID[p["name"]], safe=""))
            path = path.replace("{" + p["name"] + "}", raw)
    query = [f"{p['name']}={quote(VALID[p['name']])}" for p in params
             if p["in"] == "query" and p.get("required") and p["name"] not in hostile]
    query += [f"{n}={v}" for n, v in hostile.items() if any(p["name"] == n and p["in"] == "query" for p in params)]
    if extra:
        query.append(extra)
    return path + ("?" + "&".join(query) if query else "")


def _hostile_cases(openapi: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for method, path, params in _operations(openapi):
        if method != "GET":
            continue
        yield f"GET {path} unknown parameter", _url(path, params, {}, extra="no_such_parameter=1")
        for p in params:
            yield f"GET {path} {p['name']} invalid UTF-8", _url(path, params, {p["name"]: BAD_UTF8})
            yield f"GET {path} {p['name']} over-long", _url(path, params, {p["name"]: OVERLONG})
            if _is_int(p):
                for value in (OUT_OF_RANGE, "-" + OUT_OF_RANGE + "0", "1" + "0" * 40, "9" * 5000, "1e400", "0x10"):
                    yield f"GET {path} {p['name']}={value[:12]}...", _url(path, params, {p["name"]: value})


def _assert_envelope_4xx(response: httpx.Response, case: str) -> None:
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text[:300])
    body = response.json()
    # The CKAN Action API answers in CKAN's envelope (the server's own checks in the hub's: api/openapi_ckan.py).
    if set(body) == {"help", "success", "error"} and any(f" {p}" in case for p in CKAN_PATHS):
        assert body["success"] is False and body["error"]["__type"] and body["error"]["message"], case
        return
    assert set(body) == {"error"}, case
    assert body["error"]["status"] == response.status_code, case
    assert re.fullmatch(r"[a-z]+(-[a-z]+)*", body["error"]["code"]), case
    assert body["error"]["message"], case


async def test_every_route_and_parameter_answers_hostile_values_with_a_4xx_envelope(api: httpx.AsyncClient) -> None:
    openapi = (await api.get("/openapi.json")).json()
    cases = list(_hostile_cases(openapi))
    assert len(cases) > 100  # the walk found the routes (records alone has a dozen parameters)
    failures = []
    for case, url in cases:
        response = await api.get(url)
        try:
            _assert_envelope_4xx(response, case)
        except (AssertionError, ValueError) as exc:
            failures.append(f"{case}: {response.status_code} {response.text[:160]!r} ({exc})")
    assert failures == []


async def test_every_integer_parameter_is_bounded_to_64_bits(api: httpx.AsyncClient) -> None:
    openapi = (await api.get("/openapi.json")).json()
    unbounded = []
    for method, path, params in _operations(openapi):
        for p in params:
            if _is_int(p):
                schemas = [p["schema"], *p["schema"].get("anyOf", [])]
                maxima = [s["maximum"] for s in schemas if s.get("type") == "integer" and "maximum" in s]
                minima = [s.get("minimum", s.get("exclusiveMinimum")) for s in schemas if s.get("type") == "integer"]
                if not maxima or maxima[0] > INT64_MAX or minima[0] is None or minima[0] < -INT64_MAX - 1:
                    unbounded.append(f"{method} {path} {p['name']}")
    assert unbounded == []


@pytest.mark.parametrize("body", [
    {"sql": "SELECT 1", "max_rows": INT64_MAX + 1},
    {"sql": "SELECT 1", "timeout_ms": -(INT64_MAX + 2)},
    {"sql": "SELECT 1", "unknown": 1},
    {"sql": "x" * 1_000_000},
    {"sql": 5},
    {},
])
async def test_the_sql_body_answers_hostile_members_with_a_4xx_envelope(api: httpx.AsyncClient, body: Any) -> None:
    _assert_envelope_4xx(await api.post(f"{API}/sql", json=body), str(body)[:60])


@pytest.mark.parametrize("body", [
    b'{"sql": "SELECT \'\xff\'"}',  # invalid UTF-8 bytes
    b'{"sql": "SELECT \'\\ud800\'"}',  # a lone surrogate spelled as a JSON escape: valid JSON, no valid text
    b'{"sql": "\\udfff"}',
    b"[" * 100_000,  # nesting deeper than any parser recurses
    b'{"sql": "SELECT 1", "max_rows": 1e400}',
])
async def test_invalid_text_in_the_sql_body_is_a_4xx_envelope(api: httpx.AsyncClient, body: bytes) -> None:
    response = await api.post(f"{API}/sql", content=body, headers={"Content-Type": "application/json"})
    _assert_envelope_4xx(response, repr(body[:40]))


@pytest.mark.parametrize("sql", ["SELECT 'é' +", "ä+"])  # found by tests/api/test_fuzz.py (a 500 until 32c0f85)
async def test_non_ascii_text_before_an_operator_in_sql_is_no_500(api: httpx.AsyncClient, sql: str) -> None:
    _assert_envelope_4xx(await api.get(f"{API}/sql", params={"sql": sql}), sql)


# -- invalid UTF-8 is refused, never replaced by U+FFFD -------------------------------

@pytest.mark.parametrize(("query", "parameter"), [
    ("where=name%3D%27M%FCller%27", "where"),
    ("refine=name:%FF", "refine"),
    ("select=%E4rger", "select"),
    ("order_by=lot_id&where=%C3", "where"),  # a truncated two-byte sequence
    ("where=%ED%A0%80", "where"),  # an encoded surrogate is not UTF-8 either
    ("%FF=1", "\\xff"),  # the name itself
])
async def test_invalid_utf8_in_a_parameter_is_a_400_naming_it(api: httpx.AsyncClient, query: str, parameter: str) -> None:
    response = await api.get(f"{API}/datasets/car-parks/records?{query}")
    error = response.json()["error"]
    assert (response.status_code, error["code"], error["details"]) == (400, "invalid-parameter",
                                                                       {"parameter": parameter})
    assert "UTF-8" in error["message"]


@pytest.mark.parametrize("url", [f"{API}/datasets?q=%E4rger", f"{API}/sql?sql=SELECT%20%27%FF%27",
                                 f"{API}/datasets/car-parks/facets?facet=%FC"])
async def test_invalid_utf8_is_refused_on_other_routes(api: httpx.AsyncClient, url: str) -> None:
    response = await api.get(url)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid-parameter")


async def test_valid_utf8_and_plus_signs_still_pass(api: httpx.AsyncClient) -> None:
    response = await api.get(f"{API}/datasets/car-parks/records?where=name%3D%27Parkdeck+M%C3%BChlentor%27")
    assert (response.status_code, [r["name"] for r in response.json()["results"]]) == (200, ["Parkdeck Mühlentor"])


async def test_invalid_utf8_in_the_path_is_a_400(api: httpx.AsyncClient) -> None:
    response = await api.get(f"{API}/datasets/car%FFparks")
    assert (response.status_code, response.json()["error"]["details"]) == (400, {"parameter": "path"})


# -- Range on stored files (RFC 9110) --------------------------------------------------

PARQUET = f"{API}/datasets/car-parks/exports/parquet"


@pytest.mark.parametrize("header", ["bytes=3-1", "bytes=abc", "items=0-3", "bytes=", "bytes=1-2,x", "bytes 0-3",
                                    "bytes=--1", "bytes=0-1-2"])
async def test_an_unparsable_range_is_ignored(api: httpx.AsyncClient, header: str) -> None:
    whole = await api.get(PARQUET)
    response = await api.get(PARQUET, headers={"Range": header})
    assert (response.status_code, response.content) == (200, whole.content)


@pytest.mark.parametrize("header", ["bytes=99999999-", "bytes=99999999-99999999", "bytes=-0",
                                    "bytes=99999999999999999999999999-"])
async def test_an_unsatisfiable_range_is_a_416_envelope(api: httpx.AsyncClient, header: str) -> None:
    size = len((await api.get(PARQUET)).content)
    response = await api.get(PARQUET, headers={"Range": header})
    assert (response.status_code, response.headers["content-range"], response.headers["content-type"]) == (
        416, f"bytes */{size}", "application/json")
    assert response.json()["error"]["code"] == "range-not-satisfiable"


async def test_a_valid_range_still_gets_206(api: httpx.AsyncClient) -> None:
    whole = (await api.get(PARQUET)).content
    response = await api.get(PARQUET, headers={"Range": "bytes=0-3"})
    assert (response.status_code, response.content, response.headers["content-range"]) == (
        206, whole[:4], f"bytes 0-3/{len(whole)}")
    suffix = await api.get(PARQUET, headers={"Range": "bytes=-4"})
    assert (suffix.status_code, suffix.content) == (206, whole[-4:])


def test_byte_range_syntax() -> None:
    assert [valid_byte_ranges(v) for v in ("bytes=0-0", "bytes=5-", "bytes=-5", "BYTES=1-2, 4-5", "bytes=0-1,3-")] \
        == [True] * 5
    assert [valid_byte_ranges(v) for v in ("bytes=3-1", "bytes=abc", "items=0-3", "bytes=-", "bytes=1-2,")] \
        == [False] * 5


# -- security headers ------------------------------------------------------------------

async def test_api_answers_carry_nosniff_and_a_closed_policy(api: httpx.AsyncClient) -> None:
    for url in (f"{API}/datasets", f"{API}/datasets/nope", f"{API}/datasets/car-parks/exports/csv", "/health",
                "/openapi.json", f"{API}/datasets?x=1"):
        headers = (await api.get(url)).headers
        assert (headers["x-content-type-options"], headers["x-frame-options"], headers["referrer-policy"],
                headers["content-security-policy"]) == ("nosniff", "DENY", "no-referrer",
                                                         "default-src 'none'; frame-ancestors 'none'"), url


async def test_site_pages_carry_a_strict_content_security_policy(api: httpx.AsyncClient) -> None:
    for url in ("/", "/en/", "/no-such-page.html", "/static/style.css"):
        headers = (await api.get(url)).headers
        assert headers["x-content-type-options"] == "nosniff", url
        assert headers["x-frame-options"] == "DENY", url
        policy = dict(d.strip().split(" ", 1) for d in headers["content-security-policy"].split(";"))
        assert (policy["default-src"], policy["frame-ancestors"], policy["object-src"]) == (
            "'self'", "'none'", "'none'"), url
        assert "unsafe-inline" not in headers["content-security-policy"]


def test_site_templates_need_no_inline_script_or_style() -> None:
    """The CSP allows no inline code: a template adding some would be blocked in the browser."""
    found = []
    for template in (PROJECT_ROOT / "site" / "templates").rglob("*.html"):
        text = template.read_text(encoding="utf-8")
        # A JSON data block (schema.org JSON-LD, labels) is no code: the browser never runs it.
        if re.search(r"<script(?![^>]*\b(?:src=|type=\"application/(?:ld\+)?json\"))|<style|\sstyle=|\son[a-z]+=|javascript:",
                     text, re.IGNORECASE):
            found.append(template.name)
        if re.search(r"""(?:src|href)=["']?(?:https?:)?//""", text):
            found.append(f"{template.name} (loads from another origin)")
    assert found == []


async def test_site_links_in_the_built_pages_stay_local(demo_hub: Hub) -> None:
    """Built pages load nothing from elsewhere either (the CSP would block it)."""
    offending = [p.name for p in demo_hub.settings.site_dir.rglob("*.html")
                 if re.search(r"<script(?![^>]*\b(?:src=|type=\"application/(?:ld\+)?json\"))|\sstyle=|"
                              r"<(?:img|link)[^>]+(?:src|href)=\"https?://", p.read_text("utf-8"))]
    assert offending == []


async def test_an_unexpected_error_still_carries_the_security_headers(demo_hub: Hub) -> None:
    from api.app import create_app

    app = create_app(demo_hub.settings, demo_hub)

    async def boom() -> None:
        raise RuntimeError("a bug of ours")

    app.add_api_route("/boom", boom)
    app.router.routes.insert(0, app.router.routes.pop())  # before the site, which would answer its 404 page
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
        response = await client.get("/boom")
    app.state.query_engine.close()
    app.state.sql_pool.close()
    assert (response.status_code, response.json()["error"]["code"], response.headers["x-content-type-options"],
            response.headers["x-frame-options"]) == (500, "internal-error", "nosniff", "DENY")


async def test_range_rules_hold_for_site_files_too(api: httpx.AsyncClient) -> None:
    whole = await api.get("/static/style.css")
    ignored = await api.get("/static/style.css", headers={"Range": "bytes=9-2"})
    outside = await api.get("/static/style.css", headers={"Range": f"bytes={len(whole.content)}-"})
    assert (ignored.status_code, ignored.content) == (200, whole.content)
    assert (outside.status_code, outside.headers["content-range"], outside.json()["error"]["status"]) == (
        416, f"bytes */{len(whole.content)}", 416)


# -- properties of the checks themselves, on any input ---------------------------------

RANGE_LIKE = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"\A(bytes|BYTES|items|bytes )=[ 0-9,\-a]{0,24}\Z"),
)


@given(header=RANGE_LIKE, size=st.integers(min_value=1, max_value=10_000))
@hyp_settings(max_examples=300, deadline=None)
def test_a_range_we_pass_on_is_never_malformed_for_starlette(header: str, size: int) -> None:
    """Whatever we let through, Starlette parses: it answers 206 or 416, never its bare-text 400."""
    if valid_byte_ranges(header):
        try:
            FileResponse._parse_range_header(header, size)
        except RangeNotSatisfiable:
            pass


@given(query=st.binary(max_size=60).map(lambda b: b.replace(b"%", b"")) | st.from_regex(
    rb"\A([a-z%0-9A-F+]{0,6}=[a-z%0-9A-F+]{0,9}&?){0,4}\Z"))
@hyp_settings(max_examples=300, deadline=None)
def test_a_query_we_pass_on_decodes_without_replacement(query: bytes) -> None:
    """No query string that passes the check reaches a route with a byte replaced by U+FFFD."""
    if query_problem(query) is None:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True, errors="strict",
                                     encoding="utf-8"):
            assert "\ufffd" not in name + value or "\ufffd".encode() in unquote_to_bytes(query)


@pytest.mark.parametrize(("url", "headers"), [
    (f"{API}/datasets/car-parks/records", {"If-None-Match": "x" * 16_000}),
    (f"{API}/datasets/car-parks/records", {"If-None-Match": ",".join(['"a"'] * 3000)}),
    (PARQUET, {"Range": "bytes=" + ",".join(f"{i}-{i}" for i in range(3000))}),
    (PARQUET, {"Range": "bytes=0-1", "If-Range": "x" * 1000}),
    (f"{API}/datasets/car-parks/records?limit=2", {"Host": "evil.example:99999"}),
])
async def test_hostile_headers_get_an_answer_not_a_crash(
    api: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> None:
    response = await api.get(url, headers=headers)
    assert response.status_code in (200, 206, 304), response.text[:200]
