"""Hostile text from definitions and delivered data never executes on the site (real Chromium, the site's
own Content-Security-Policy in force): script tags, event handlers and javascript: links in titles,
descriptions, keywords, field descriptions and cell values are shown as text or dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from catalogue.hub import open_hub
from catalogue.ingest.pipeline import Delivery, ingest_delivery
from catalogue.meta.definitions import load_definitions, sync_definitions
from catalogue.settings import Settings
from catalogue.sitegen.builder import build_site
from tests.api.live_server import live_server
from tests.site_browser.harness import browse, screenshot_dir

pytestmark = pytest.mark.usefixtures("browser_ready")

PAYLOADS = [
    "<script>alert('script')</script>",
    "<img src=x onerror=alert('img')>",
    "\"><svg onload=alert('attr')>",
    "[klick](javascript:alert('link'))",
    "<a href=\"javascript:alert('href')\">a</a>",
    "'-alert('quote')-'",
]
NAME = "boese-daten"


@pytest.fixture(scope="module")
def hostile_hub(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hostile")
    defs = root / "defs"
    (defs / "definitions").mkdir(parents=True)
    (defs / "schemas").mkdir()
    (defs / "publishers.yaml").write_text(yaml.safe_dump({"publishers": [{
        "name": "testamt", "title": "Testamt " + PAYLOADS[0], "description": PAYLOADS[1]}]}), encoding="utf-8")
    schema = {"fields": [{"name": "id", "type": "integer"},
                         {"name": "label", "type": "string", "description": PAYLOADS[2]}], "primaryKey": ["id"]}
    (defs / "schemas" / f"{NAME}.json").write_text(json.dumps(schema), encoding="utf-8")
    (defs / "definitions" / f"{NAME}.yaml").write_text(yaml.safe_dump({
        "name": NAME, "title": "Böse " + PAYLOADS[0], "title_en": "Evil " + PAYLOADS[1],
        "description": "\n\n".join(PAYLOADS), "description_en": "\n\n".join(reversed(PAYLOADS)),
        "keywords": PAYLOADS[:3], "publisher": "testamt",
        "license": "http://dcat-ap.de/def/licenses/dl-zero-de/2.0", "schema": f"schemas/{NAME}.json"}),
        encoding="utf-8")
    settings = {"data_dir": str(root / "var"), "definitions_dir": str(defs)}
    hub = open_hub(Settings(**settings))
    try:
        sync_definitions(hub, load_definitions(defs))
        lines = ["id,label"] + [f'{i},"{p.replace(chr(34), chr(34) * 2)}"' for i, p in enumerate(PAYLOADS)]
        result = ingest_delivery(hub, NAME, Delivery("\n".join(lines).encode(), "csv", {}, "replace",
                                                     {"source_url": "test"}))
        assert result.status == "published", result.report
        build_site(hub)
    finally:
        hub.close()
    return settings


CHECKS = {
    "javascript_links": "[...document.querySelectorAll('a[href]')].filter(a => a.href.trim().toLowerCase()"
                        ".startsWith('javascript:')).length",
    "handlers": "[...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.startsWith('on')))"
                ".length",
    "injected_scripts": "[...document.scripts].filter(s => !s.src && s.type !== 'application/json'"
                        " && s.type !== 'application/ld+json').length",
    "text": "document.body.innerText",
}


def test_hostile_texts_are_shown_never_run(hostile_hub: dict[str, str], tmp_path: Path) -> None:
    with live_server(hostile_hub, tmp_path / "server.log") as url:
        pages = [(f"{prefix}{path}", lang) for lang, prefix in (("de", ""), ("en", "en/"))
                 for path in ("index.html", f"datasets/{NAME}.html", "search.html?q=script", "publishers/testamt.html")]
        results = browse([{"name": f"hostile-{i}", "url": f"{url}/{page}", "checks": CHECKS,
                           "wait_for": ".search[data-ready]" if "search" in page else None, "wait_ms": 15000}
                          for i, (page, _) in enumerate(pages)], [url], screenshot_dir(tmp_path, "hostile"))
    for result in results:
        assert result.get("status") == 200, result
        assert result["dialogs"] == [], result["url"]
        assert not result["page_errors"], (result["url"], result["page_errors"])
        checks = result["checks"]
        assert checks["javascript_links"] == 0 and checks["handlers"] == 0, (result["url"], checks)
        assert checks["injected_scripts"] == 0, (result["url"], checks)
    dataset_page = results[1]["checks"]["text"]
    assert "<script>alert('script')</script>" in dataset_page, "the hostile title is shown as text"
