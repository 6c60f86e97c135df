"""What JavaScript adds to the site, in real headless Chromium: search, map, chart, the SQL console
(DuckDB-WASM reading the version's Parquet by HTTP), and the site copied to another static host with
the API elsewhere. Also the harness's own checks, on pages made to fail them."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from catalogue.hub import Hub, open_hub
from catalogue.settings import Settings
from catalogue.sitegen.builder import build_site
from tests.site_browser.harness import browse, screenshot_dir, static_server

pytestmark = pytest.mark.usefixtures("browser_ready")


def test_the_harness_reports_violations_foreign_requests_and_dialogs(tmp_path: Path) -> None:
    """Each check of browse.mjs can fail: an inaccessible page, a CDN script and an executed alert are reported."""
    (tmp_path / "bad.html").write_text(
        '<!doctype html><html><head><title>x</title><script src="https://cdn.example.org/x.js"></script></head>'
        '<body><main><h1>x</h1><img src="a.png"><button></button><script>alert("ran")</script></main></body></html>')
    with static_server(tmp_path) as url:
        [result] = browse([{"name": "bad", "url": f"{url}/bad.html", "axe": True}], [url], None)
    assert {"image-alt", "button-name", "html-has-lang"} <= {v["id"] for v in result["axe"]}
    assert result["foreign"] == ["https://cdn.example.org/x.js"]
    assert result["dialogs"] == ["ran"]


def test_search_finds_german_word_forms(hub_url: str, tmp_path: Path) -> None:
    """'Parkhaus' finds the 'Parkhäuser', 'Grundwasser' the 'Grundwasserstände' (umlauts folded, words by their
    beginning); the result list is built from the static index."""
    results = browse([{"name": f"search-{q}", "url": f"{hub_url}/search.html?q={q}", "wait_for": ".search[data-ready]",
                       "checks": {"text": "document.querySelector('.search').innerText"}}
                      for q in ("Parkhaus", "Grundwasser")], [hub_url], screenshot_dir(tmp_path, "search"))
    parking, water = results
    assert not parking.get("wait_error") and not water.get("wait_error"), results
    assert "Parkhäuser" in parking["checks"]["text"], parking["checks"]
    assert "Grundwasser" in water["checks"]["text"], water["checks"]
    assert not parking["page_errors"] and not water["page_errors"]


def test_map_and_chart_are_drawn(hub_url: str, tmp_path: Path) -> None:
    """The geometry dataset's map (MapLibre, vendored) and the time series' chart are drawn."""
    map_page, chart_page = browse([
        {"name": "map", "url": f"{hub_url}/datasets/car-parks.html", "wait_for": ".map[data-drawn]",
         "checks": {"drawn": "document.querySelector('.map').getAttribute('data-drawn')"}},
        {"name": "chart", "url": f"{hub_url}/datasets/parking-occupancy.html", "wait_for": ".chart[data-drawn]",
         "checks": {"drawn": "document.querySelector('.chart').getAttribute('data-drawn')",
                    "lines": "document.querySelectorAll('.chart svg path, .chart svg polyline').length"}},
    ], [hub_url], screenshot_dir(tmp_path, "map-chart"))
    assert map_page["checks"]["drawn"] == "maplibre", map_page
    assert chart_page["checks"]["drawn"] in ("svg", "uplot"), chart_page
    assert chart_page["checks"]["lines"] > 0, chart_page
    assert not map_page["page_errors"] and not chart_page["page_errors"]


SQL_RUN = """(() => { const form = document.querySelector('form.sql-console');
  form.querySelector('textarea').value = 'SELECT count(*) AS n FROM data';
  form.requestSubmit(); return true; })()"""


def _sql_console(url: str, allowed: list[str], shots: Path) -> dict:
    [result] = browse([{"name": "sql", "url": url, "script": SQL_RUN, "wait_for": "form.sql-console[data-answered]",
                        "wait_ms": 90000, "bypass_csp": False,
                        "checks": {"answered": "document.querySelector('form.sql-console').getAttribute('data-answered')",
                                   "cell": "document.querySelector('.sql-console__result td')?.textContent"}}],
                      allowed, shots)
    return result


def test_the_sql_console_answers_in_the_browser(hub_url: str, tmp_path: Path) -> None:
    """DuckDB-WASM counts the current version's rows from its Parquet file, as the API counts them."""
    rows = httpx.get(f"{hub_url}/api/v1/datasets/parking-occupancy/records", params={"limit": 1}).json()["total_count"]
    result = _sql_console(f"{hub_url}/datasets/parking-occupancy/sql.html", [hub_url], screenshot_dir(tmp_path, "sql"))
    assert result["checks"]["answered"] == "1", result
    assert result["checks"]["cell"] == str(rows), result
    assert any(".parquet bytes=" in r for r in result["ranges"]), result["ranges"]  # read by HTTP Range requests
    assert not result["foreign"] and not result["page_errors"], result


@pytest.fixture(scope="module")
def copied_site(demo_hub: Hub, hub_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo site built for another host: the API's base URL is the running hub's, the site a plain folder."""
    out = tmp_path_factory.mktemp("elsewhere")
    settings = Settings(data_dir=demo_hub.settings.data_dir, site_api_base_url=f"{hub_url}/api/v1")
    hub = open_hub(settings)
    try:
        build_site(hub)
    finally:
        hub.close()
    shutil.copytree(settings.site_dir, out / "site")
    shutil.rmtree(settings.site_dir)
    build_site(demo_hub)  # the shared demo site, as the other tests expect it
    return out / "site"


def test_the_site_on_another_static_host_searches_previews_charts_queries_and_downloads(
        copied_site: Path, hub_url: str, tmp_path: Path) -> None:
    with static_server(copied_site) as site:
        search, dataset = browse([
            {"name": "elsewhere-search", "url": f"{site}/search.html?q=Parkhaus", "wait_for": ".search[data-ready]",
             "checks": {"text": "document.querySelector('.search').innerText"}},
            {"name": "elsewhere-dataset", "url": f"{site}/datasets/parking-occupancy.html", "wait_for": ".chart[data-drawn]",
             "checks": {"chart": "document.querySelector('.chart').getAttribute('data-drawn')",
                        "preview_rows": "document.querySelectorAll('#preview tbody tr').length",
                        "downloads": "[...document.querySelectorAll('a[href]')].map(a => a.href)"
                                     ".filter(h => h.includes('/exports/') || h.endsWith('.parquet'))"}},
        ], [site, hub_url], screenshot_dir(tmp_path, "elsewhere"))
        sql = _sql_console(f"{site}/datasets/parking-occupancy/sql.html", [site, hub_url], tmp_path / "elsewhere-sql")
    assert "Parkhäuser" in search["checks"]["text"], search["checks"]
    assert dataset["checks"]["chart"] == "svg" or dataset["checks"]["chart"] == "uplot", dataset
    assert dataset["checks"]["preview_rows"] > 0, dataset
    downloads = dataset["checks"]["downloads"]
    api_links = [h for h in downloads if h.startswith(hub_url)]
    assert api_links, downloads
    for href in api_links[:3]:
        assert httpx.get(href, timeout=60).status_code == 200, href
    assert sql["checks"]["answered"] == "1", sql
    assert not search["foreign"] and not dataset["foreign"] and not sql["foreign"]
