"""Every page type of the demo site in real headless Chromium: German and English, desktop and 390 px.

Checked per page: it loads (200), axe-core finds no violation of any impact (WCAG 2.1 AA / BITV 2.0
rules), no request goes to another origin (each is aborted and reported), no script error, and the
first Tab lands on an element with a visible focus indicator. Screenshots of every page are saved
(``$URBANDATA_SCREENSHOTS`` or the test's temporary directory).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.site_browser.harness import browse, screenshot_dir

pytestmark = pytest.mark.usefixtures("browser_ready")

GEOMETRY_DATASET = "car-parks"
TIME_SERIES_DATASET = "parking-occupancy"


def page_types(site: Path) -> dict[str, str]:
    """One page of each type (name -> path below the site root), found in the built site itself."""
    found: dict[str, str] = {}
    wanted = {
        "home": r"index\.html", "search": r"search\.html", "api": r"api\.html", "impressum": r"impressum\.html",
        "datenschutz": r"datenschutz\.html", "not-found": r"404\.html", "datasets": r"datasets(/index)?\.html",
        "dataset-geometry": rf"datasets/{GEOMETRY_DATASET}\.html",
        "dataset-series": rf"datasets/{TIME_SERIES_DATASET}\.html",
        "version": rf"datasets/{TIME_SERIES_DATASET}/v\d+(/index)?\.html|datasets/{TIME_SERIES_DATASET}/versions/\d+\.html",
        "sql": rf"datasets/{TIME_SERIES_DATASET}/sql\.html", "publisher": r"publishers/[^/]+\.html",
        "harvest": r"harvest\.html",
    }
    paths = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if not p.relative_to(site).as_posix().startswith("en/"))
    for kind, pattern in wanted.items():
        match = next((p for p in paths if re.fullmatch(pattern, p)), None)
        if match:
            found[kind] = match
    return found


def test_the_demo_site_has_every_page_type(demo_site: Path) -> None:
    """The page types the issue lists exist in German and in English (the other tests open them)."""
    found = page_types(demo_site)
    missing = sorted(set(("home", "search", "api", "impressum", "datenschutz", "not-found", "dataset-geometry",
                          "dataset-series", "version", "publisher", "sql", "harvest")) - set(found))
    assert not missing, f"page types missing from the built site: {missing} (found {found})"
    english = [p for p in found.values() if not (demo_site / "en" / p).is_file()]
    assert not english, f"no English version of: {english}"


def _pages(hub_url: str, site: Path) -> list[dict[str, Any]]:
    pages = []
    for kind, path in page_types(site).items():
        for lang, prefix in (("de", ""), ("en", "en/")):
            for width in (1280, 390):
                pages.append({"name": f"{kind}-{lang}-{width}", "url": f"{hub_url}/{prefix}{path}", "width": width,
                              "axe": True, "bypass_csp": False})
    return pages


def _problems(result: dict[str, Any]) -> list[str]:
    problems = []
    if result.get("error"):
        problems.append(f"did not load: {result['error']}")
    if result.get("status") != 200 and not result["name"].startswith("not-found"):
        problems.append(f"HTTP {result.get('status')}")
    for violation in result["axe"]:
        problems.append(f"axe {violation['impact']} {violation['id']}: {violation['help']} at {violation['nodes']}")
    if result["foreign"]:
        problems.append(f"requests to other origins: {result['foreign'][:5]}")
    if result["page_errors"]:
        problems.append(f"script errors: {result['page_errors'][:3]}")
    if result["dialogs"]:
        problems.append(f"dialogs opened: {result['dialogs']}")
    focus = result.get("focus") or {}
    if not focus.get("visible"):
        problems.append(f"first Tab focus not visible: {focus}")
    return problems


def test_every_page_type_is_accessible_private_and_works_in_chromium(hub_url: str, demo_site: Path,
                                                                      tmp_path: Path) -> None:
    results = browse(_pages(hub_url, demo_site), [hub_url], screenshot_dir(tmp_path, "pages"))
    assert len(results) >= 2 * 2 * 8, [r["name"] for r in results]
    problems = {r["name"]: p for r in results if (p := _problems(r))}
    assert not problems, "\n".join(f"{name}: {'; '.join(p)}" for name, p in sorted(problems.items()))
    shots = [Path(r["screenshot"]) for r in results]
    assert all(s.is_file() and s.stat().st_size > 1000 for s in shots)
