"""The built static site (German at the root, English under en/), served by the app in process.

The tests only read, so they share the session's harvested demo catalogue (``demo_hub``/``api``).
"""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
import yaml

from catalogue.hub import Hub

pytestmark = pytest.mark.anyio

BASE = "http://hub.test/"
DATASETS = ["car-parks", "city-districts", "egovernment-services", "groundwater-levels", "parking-occupancy",
            "waste-bin-fill-levels"]
PUBLISHERS = ["abfallwirtschaft", "stadtverwaltung", "stadtwerke", "wasserverband"]
PAGES = (["index.html", "page/1.html", "search.html", "impressum.html", "datenschutz.html", "api.html"]
         + [f"datasets/{n}{page}" for n in DATASETS for page in (".html", "/v1.html", "/sql.html")]
         + [f"publishers/{p}.html" for p in PUBLISHERS])
LANGS = {"de": "", "en": "en/"}
LICENCE_TITLES = {
    "http://dcat-ap.de/def/licenses/dl-by-de/2.0": "Datenlizenz Deutschland – Namensnennung – Version 2.0",
    "http://dcat-ap.de/def/licenses/dl-zero-de/2.0": "Datenlizenz Deutschland – Zero – Version 2.0",
    "http://dcat-ap.de/def/licenses/cc-by/4.0": "Creative Commons Namensnennung – 4.0 International (CC BY 4.0)",
}


class Tags(HTMLParser):
    """Every start tag of a page with its attributes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def attrs(self, tag: str, name: str) -> list[str]:
        return [a[name] for t, a in self.tags if t == tag and a.get(name)]  # type: ignore[misc]


def definition(settings_dir: Path, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = yaml.safe_load((settings_dir / "definitions" / f"{name}.yaml").read_text(encoding="utf-8"))
    return doc, json.loads((settings_dir / doc["schema"]).read_text(encoding="utf-8"))


async def page(api: httpx.AsyncClient, url: str) -> str:
    response = await api.get(url)
    assert (response.status_code, response.headers["content-type"]) == (200, "text/html; charset=utf-8"), url
    return response.text


async def test_every_page_exists_in_both_languages_and_is_served(api: httpx.AsyncClient, demo_hub: Hub) -> None:
    site = demo_hub.settings.site_dir
    for lang, prefix in LANGS.items():
        other = "en/" if lang == "de" else ""
        for name in PAGES:
            text = await page(api, f"/{prefix}{name}")
            assert text == (site / prefix / name).read_text(encoding="utf-8")
            assert f'<html lang="{lang}">' in text
            # The language switch points at the same page in the other language.
            (alternate,) = [a["href"] for t, a in Tags(text).tags
                            if t == "link" and a.get("rel") == "alternate" and a.get("hreflang")]
            assert urljoin(f"{BASE}{prefix}{name}", alternate) == f"{BASE}{other}{name}"
        assert await page(api, f"/{prefix}") == (site / prefix / "index.html").read_text(encoding="utf-8")


async def test_dataset_pages_show_metadata_schema_and_working_downloads(
    api: httpx.AsyncClient, demo_hub: Hub
) -> None:
    for name in DATASETS:
        doc, schema = definition(demo_hub.settings.definitions_dir, name)
        has_geometry = any(f["type"] in ("geojson", "geopoint") for f in schema["fields"])
        for lang, prefix in LANGS.items():
            text = await page(api, f"/{prefix}datasets/{name}.html")
            title = doc["title"] if lang == "de" else doc["title_en"]
            assert f"<h1>{html.escape(title)}</h1>" in text
            assert html.escape(LICENCE_TITLES[doc["license"]]) in text
            for field in schema["fields"]:
                assert f"<code>{field['name']}</code>" in text
            base = f"/api/v1/datasets/{name}"
            # Relative links: the site works wherever it is served from, the API under the same root.
            page_url = f"{BASE}{prefix}datasets/{name}.html"
            links = {urljoin(page_url, h) for h in Tags(text).attrs("a", "href")}
            downloads = {urlsplit(u)._replace(scheme="", netloc="").geturl() for u in links
                         if urlsplit(u).path.startswith(base)}
            formats = ["csv", "json", "ndjson", "parquet", "xlsx", *(["geojson"] if has_geometry else [])]
            assert downloads == {f"{base}/exports/{f}?version=1" for f in formats} | {
                f"{base}/exports/csv?version=1&number_style=german", f"{base}/versions/1/datapackage.json",
                f"{base}/records"}
            for url in sorted(downloads):
                response = await api.get(url)
                assert response.status_code == 200, (url, response.text[:200])
                if "/exports/" in url:
                    assert response.headers["x-dataset-version"] == "1"
                    assert len(response.content) > 0


async def test_publisher_pages_list_their_datasets(api: httpx.AsyncClient, demo_hub: Hub) -> None:
    owners = {name: definition(demo_hub.settings.definitions_dir, name)[0]["publisher"] for name in DATASETS}
    for prefix in LANGS.values():
        for publisher in PUBLISHERS:
            links = Tags(await page(api, f"/{prefix}publishers/{publisher}.html")).attrs("a", "href")
            listed = sorted({h[len("../datasets/"):-len(".html")] for h in links if h.startswith("../datasets/")})
            assert listed == sorted(n for n, p in owners.items() if p == publisher)


async def test_every_local_link_and_asset_resolves(api: httpx.AsyncClient) -> None:
    seen: set[str] = set()
    for prefix in LANGS.values():
        for name in PAGES:
            url = f"{BASE}{prefix}{name}"
            tags = Tags(await page(api, url))
            sources = [a["src"] for _, a in tags.tags if a.get("src")]
            for ref in tags.attrs("a", "href") + tags.attrs("link", "href") + sources:  # type: ignore[operator]
                target = urlsplit(urljoin(url, ref))
                if target.scheme in ("http", "https") and target.netloc == "hub.test":
                    seen.add(target._replace(fragment="").geturl())
    assert f"{BASE}static/style.css" in seen
    broken = [u for u in sorted(seen) if (await api.get(u)).status_code != 200]
    assert broken == []


async def test_no_page_loads_anything_from_another_host(api: httpx.AsyncClient, demo_hub: Hub) -> None:
    site = demo_hub.settings.site_dir
    for path in sorted(site.rglob("*.html")):
        tags = Tags(path.read_text(encoding="utf-8"))
        loaded = [a.get("src") for _, a in tags.tags if a.get("src")] + [
            a.get("href") for t, a in tags.tags if t == "link"]
        assert [u for u in loaded if urlsplit(u).netloc or u.startswith("//")] == [], path  # type: ignore[arg-type]
        assert not [t for t, _ in tags.tags if t in ("iframe", "object", "embed")], path
    css = (site / "static" / "style.css").read_text(encoding="utf-8")
    assert "@import" not in css and "url(http" not in css.replace(" ", "") and "url(//" not in css.replace(" ", "")


async def test_the_404_page_keeps_its_stylesheet_below_the_root(api: httpx.AsyncClient) -> None:
    url = f"{BASE}datasets/no-such-dataset.html"
    response = await api.get(url)
    assert response.status_code == 404
    (stylesheet,) = [a["href"] for t, a in Tags(response.text).tags if t == "link" and a.get("rel") == "stylesheet"]
    assert (await api.get(urljoin(url, stylesheet))).status_code == 200


async def test_the_builders_hidden_files_are_not_served(api: httpx.AsyncClient, demo_hub: Hub) -> None:
    from catalogue.sitegen.listings import MANIFEST

    assert (demo_hub.settings.site_dir / MANIFEST).is_file()  # it is there, in the served directory
    for path in (MANIFEST, f"en/../{MANIFEST}", "en/.hidden"):
        assert (await api.get(f"{BASE}{path}")).status_code == 404, path
    assert (await api.get(f"{BASE}index.html")).status_code == 200


def test_the_build_writes_the_openapi_document_for_the_api_docs_page(make_catalogue: Any) -> None:
    from api.openapi_doc import openapi_document
    from catalogue.sitegen.builder import build_site

    hub = make_catalogue("zahlen", {"fields": [{"name": "id", "type": "integer"}]}, b"id\n1\n")
    site = build_site(hub, openapi=openapi_document(hub))
    doc = json.loads((site / "openapi.json").read_text(encoding="utf-8"))
    assert doc["info"]["title"] == "urbandata API" and "/api/v1/datasets/{name}/exports/{fmt}" in doc["paths"]
    for page in ("api.html", "en/api.html"):
        tags = Tags((site / page).read_text(encoding="utf-8"))
        assert [a["data-spec"] for t, a in tags.tags if a.get("class") == "api-docs"] == ["openapi.json"
                                                                                       if page == "api.html" else
                                                                                       "../openapi.json"]
        assert ("openapi.json" if page == "api.html" else "../openapi.json") in tags.attrs("a", "href")


async def test_the_api_examples_name_urls_the_api_answers(api: httpx.AsyncClient, demo_hub: Hub) -> None:
    public = demo_hub.settings.public_url.rstrip("/")
    text = (demo_hub.settings.site_dir / "datasets" / "car-parks.html").read_text(encoding="utf-8")
    examples = html.unescape(text.split('<section id="api"', 1)[1].split("</section>", 1)[0])
    urls = sorted(set(re.findall(re.escape(public) + r"/api/v1/[^'\"\s)<]+", examples)))
    assert len(urls) >= 4  # records, parquet, csv, geojson
    for url in urls:
        response = await api.get(url[len(public):])
        assert response.status_code == 200, (url, response.text[:200])
