"""The static site on a small catalogue, three datasets to a page: pagination, links, incremental rebuilds.

Every incremental build is checked against a full build of the same catalogue
into another directory: both must leave the same files with the same content.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from sqlalchemy import delete, select, update

from catalogue.hub import Hub, open_hub
from catalogue.meta.models import Dataset, Organization, Version
from catalogue.settings import Settings
from catalogue.sitegen.builder import SiteBuilder

LICENSE = "http://dcat-ap.de/def/licenses/dl-zero-de/2.0"
SCHEMA = {"fields": [{"name": "id", "type": "integer"}], "primaryKey": ["id"]}
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
GENERATED = re.compile(r"(Erzeugt am|Generated on) \d{4}-\d\d-\d\d \d\d:\d\d UTC")
LANG_ROOTS = ("", "en/")
BASE = "http://hub.test/"


class Page(HTMLParser):
    """The links of a page: every href/src, the alternate-language link, and the page navigation."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.alternate = ""
        self.nav: list[tuple[str, str | None, str | None]] = []  # (href, aria-label, aria-current)
        self._in_nav = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.refs += [v for k, v in attrs if k in ("href", "src") and v]
        if tag == "link" and a.get("rel") == "alternate" and a.get("hreflang"):
            self.alternate = a["href"] or ""
        if tag == "nav" and a.get("class") == "pagination":
            self._in_nav = True
        if tag == "a" and self._in_nav:
            self.nav.append((a["href"] or "", a.get("aria-label") or a.get("rel"), a.get("aria-current")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav":
            self._in_nav = False


def add_publisher(hub: Hub, name: str) -> None:
    with hub.sessions.begin() as session:
        session.add(Organization(name=name, title=f"Amt {name}", title_en=f"Office {name}"))


def add_dataset(hub: Hub, name: str, publisher: str, minute: int) -> None:
    """A dataset with one metadata-only version, modified ``minute`` minutes into 2026."""
    with hub.sessions.begin() as session:
        org = session.scalars(select(Organization).where(Organization.name == publisher)).one()
        moment = START + timedelta(minutes=minute)
        dataset = Dataset(name=name, title=f"Titel {name}", title_en=f"Title {name}", license=LICENSE,
                          publisher=org, table_schema=SCHEMA, created_at=moment, modified_at=moment)
        version = Version(dataset=dataset, number=1, row_count=10, bytes=100, content_hash=f"{minute:064x}",
                          descriptor_key=f"datasets/{name}/v1.datapackage.json", created_at=moment)
        session.add_all([dataset, version])
        session.flush()
        dataset.current_version = version


def delete_dataset(hub: Hub, name: str) -> None:
    with hub.sessions.begin() as session:
        dataset = session.scalars(select(Dataset).where(Dataset.name == name)).one()
        dataset.current_version = None
        session.flush()
        session.execute(delete(Version).where(Version.dataset_id == dataset.id))
        session.delete(dataset)


def set_values(hub: Hub, name: str, **values: object) -> None:
    with hub.sessions.begin() as session:
        session.execute(update(Dataset).where(Dataset.name == name).values(**values))


def publisher_id(hub: Hub, name: str) -> int:
    with hub.sessions() as session:
        return session.scalars(select(Organization.id).where(Organization.name == name)).one()


@pytest.fixture
def small_hub(tmp_path: Path) -> Iterator[Hub]:
    """ds-01 … ds-14, odd ones from amt-a, even ones from amt-b: index pages 3-3-3-3-2, each publisher 3-3-1."""
    hub = open_hub(Settings(data_dir=tmp_path / "var", site_page_size=3))
    add_publisher(hub, "amt-a")
    add_publisher(hub, "amt-b")
    for i in range(1, 15):
        add_dataset(hub, f"ds-{i:02d}", "amt-a" if i % 2 else "amt-b", minute=i)
    yield hub
    hub.close()


def snapshot(site: Path) -> dict[str, str]:
    """Every file of a built site by path, without the build time in the footer."""
    return {p.relative_to(site).as_posix(): GENERATED.sub(r"\1", p.read_text(encoding="utf-8"))
            for p in sorted(site.rglob("*")) if p.is_file() and "vendor" not in p.parts}


def full_build_elsewhere(hub: Hub, tmp_path: Path) -> dict[str, str]:
    """A full build of the same catalogue into a fresh directory."""
    settings = Settings(data_dir=tmp_path / "reference", database_url=hub.settings.resolved_database_url,
                        site_page_size=hub.settings.site_page_size)
    reference = open_hub(settings)
    try:
        SiteBuilder(reference).build()
    finally:
        reference.close()
    return snapshot(settings.site_dir)


def html_pages(site: Path) -> list[str]:
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))


def cards(site: Path, page: str) -> list[str]:
    """Dataset names of the cards in the "all datasets"/publisher listing of a page, in order."""
    listing = (site / page).read_text(encoding="utf-8").split('<section id="datasets"', 1)[1]
    return re.findall(r'<h3 class="card__title"><a href="[./]*datasets/([^"]+)\.html">', listing)


SITE_PAGES = ["404.html", "index.html", "search.html", "impressum.html", "datenschutz.html", "api.html", "harvest.html"]


def test_listings_are_paginated_by_title_in_both_languages(small_hub: Hub) -> None:
    site = small_hub.settings.site_dir
    pages = SiteBuilder(small_hub).build()
    names = [f"ds-{i:02d}" for i in range(1, 15)]
    listings = {
        "page/1.html": names[0:3], "page/2.html": names[3:6], "page/3.html": names[6:9], "page/4.html": names[9:12],
        "page/5.html": names[12:14],
        "publishers/amt-a.html": ["ds-01", "ds-03", "ds-05"],
        "publishers/amt-a/page/2.html": ["ds-07", "ds-09", "ds-11"],
        "publishers/amt-a/page/3.html": ["ds-13"],
        "publishers/amt-b.html": ["ds-02", "ds-04", "ds-06"],
        "publishers/amt-b/page/2.html": ["ds-08", "ds-10", "ds-12"],
        "publishers/amt-b/page/3.html": ["ds-14"],
    }
    expected = sorted(f"{root}{page}" for root in LANG_ROOTS
                      for page in [*SITE_PAGES, *listings, *(f"datasets/{n}.html" for n in names),
                                   *(f"datasets/{n}/v1.html" for n in names)])
    assert html_pages(site) == expected
    assert pages == len(expected)
    for root in LANG_ROOTS:
        assert {page: cards(site, root + page) for page in listings} == listings
    front = (site / "index.html").read_text(encoding="utf-8")
    recent = front.split('<section id="recent"', 1)[1].split("</section>", 1)[0]
    assert re.findall(r'href="datasets/([^"]+)\.html"', recent) == [f"ds-{i:02d}" for i in range(14, 8, -1)]
    assert "<strong>14</strong> Datensätze" in front
    # The front page shows each recently updated dataset once, and no full listing.
    assert sorted(re.findall(r'href="datasets/([^"]+)\.html"', front)) == [f"ds-{i:02d}" for i in range(9, 15)]


def test_page_navigation_marks_the_current_page_and_links_its_neighbours(small_hub: Hub) -> None:
    site = small_hub.settings.site_dir
    SiteBuilder(small_hub).build()
    de = Page((site / "page/3.html").read_text(encoding="utf-8")).nav
    assert de == [
        ("../page/2.html#datasets", "prev", None),
        ("../page/1.html#datasets", "Seite 1", None),
        ("../page/2.html#datasets", "Seite 2", None),
        ("../page/3.html#datasets", "Seite 3", "page"),
        ("../page/4.html#datasets", "Seite 4", None),
        ("../page/5.html#datasets", "Seite 5", None),
        ("../page/4.html#datasets", "next", None),
    ]
    en = Page((site / "en/publishers/amt-b.html").read_text(encoding="utf-8")).nav
    assert en == [
        ("../publishers/amt-b.html#datasets", "Page 1", "page"),
        ("../publishers/amt-b/page/2.html#datasets", "Page 2", None),
        ("../publishers/amt-b/page/3.html#datasets", "Page 3", None),
        ("../publishers/amt-b/page/2.html#datasets", "next", None),
    ]
    page_two = (site / "en/page/2.html").read_text(encoding="utf-8")
    assert "<title>All datasets – Page 2 of 5 – " in page_two and 'aria-label="Pagination"' in page_two
    assert Page((site / "publishers/amt-a/page/3.html").read_text(encoding="utf-8")).nav[0] == (
        "../../../publishers/amt-a/page/2.html#datasets", "prev", None)


def test_every_relative_link_resolves_and_the_language_switch_keeps_the_page(small_hub: Hub) -> None:
    site = small_hub.settings.site_dir
    SiteBuilder(small_hub).build()
    broken, switches = [], {}
    for page in html_pages(site):
        if page.endswith("404.html"):
            continue  # its links are absolute: it is served for any missing path
        parsed = Page((site / page).read_text(encoding="utf-8"))
        for ref in parsed.refs:
            target = urlsplit(urljoin(BASE + page, ref))
            if target.netloc == "hub.test" and not target.path.startswith("/api/"):
                if not (site / target.path.lstrip("/")).is_file():
                    broken.append((page, ref))
        switches[page] = urlsplit(urljoin(BASE + page, parsed.alternate)).path.lstrip("/")
    assert broken == []
    assert switches == {page: page[3:] if page.startswith("en/") else f"en/{page}" for page in switches}


def test_a_changed_title_re_renders_its_page_and_the_listing_pages_showing_it(small_hub: Hub) -> None:
    site = small_hub.settings.site_dir
    SiteBuilder(small_hub).build()
    for page in site.rglob("*.html"):
        page.write_text("", encoding="utf-8")
    set_values(small_hub, "ds-08", title="Titel ds-08 neu", title_en="Title ds-08 new")  # keeps its place

    pages = SiteBuilder(small_hub).build(only=["ds-08"])

    rendered = sorted(p for p in html_pages(site) if (site / p).read_text(encoding="utf-8"))
    assert rendered == sorted(f"{root}{page}" for root in LANG_ROOTS
                              for page in ["index.html", "harvest.html", "datasets/ds-08.html", "datasets/ds-08/v1.html",
                                           "page/3.html", "publishers/amt-b/page/2.html"])
    assert pages == len(rendered)
    assert "Titel ds-08 neu" in (site / "page/3.html").read_text(encoding="utf-8")
    assert "Title ds-08 new" in (site / "en/publishers/amt-b/page/2.html").read_text(encoding="utf-8")


def test_a_retitled_dataset_moves_to_its_place_by_title_in_each_language(small_hub: Hub) -> None:
    site = small_hub.settings.site_dir
    SiteBuilder(small_hub).build()
    set_values(small_hub, "ds-14", title="Ährenfeld", title_en="Zebra crossings")  # Ä sorts as A

    SiteBuilder(small_hub).build(only=["ds-14"])

    assert cards(site, "page/1.html") == ["ds-14", "ds-01", "ds-02"]
    assert cards(site, "publishers/amt-b.html") == ["ds-14", "ds-02", "ds-04"]
    assert cards(site, "en/page/1.html") == ["ds-01", "ds-02", "ds-03"]
    assert cards(site, "en/page/5.html") == ["ds-13", "ds-14"]


def test_an_added_dataset_re_renders_the_pages_from_its_position_on(small_hub: Hub) -> None:
    site = small_hub.settings.site_dir
    SiteBuilder(small_hub).build()
    for page in site.rglob("*.html"):
        page.write_text("", encoding="utf-8")
    add_dataset(small_hub, "ds-07b", "amt-b", minute=0)  # not among the recently updated

    SiteBuilder(small_hub).build(only=["ds-07b"])

    rendered = sorted(p for p in html_pages(site) if (site / p).read_text(encoding="utf-8"))
    assert rendered == sorted(f"{root}{page}" for root in LANG_ROOTS for page in [
        "datasets/ds-07b.html", "datasets/ds-07b/v1.html", "index.html", "harvest.html", "page/1.html", "page/3.html",
        "page/4.html", "page/5.html",
        "publishers/amt-b.html", "publishers/amt-b/page/2.html", "publishers/amt-b/page/3.html"])
    assert cards(site, "page/3.html") == ["ds-07", "ds-07b", "ds-08"]
    assert cards(site, "en/page/5.html") == ["ds-12", "ds-13", "ds-14"]


def title_changed(hub: Hub) -> list[str]:
    set_values(hub, "ds-08", title="Neuer Titel")
    return ["ds-08"]


def recently_updated(hub: Hub) -> list[str]:
    set_values(hub, "ds-05", modified_at=START + timedelta(days=1))
    return ["ds-05"]


def added_in_the_middle(hub: Hub) -> list[str]:
    add_dataset(hub, "ds-07b", "amt-b", minute=20)
    return ["ds-07b"]


def removed(hub: Hub) -> list[str]:
    delete_dataset(hub, "ds-05")
    return ["ds-05"]


def removed_without_being_named(hub: Hub) -> list[str]:
    delete_dataset(hub, "ds-03")
    return []


def moved_to_another_publisher(hub: Hub) -> list[str]:
    set_values(hub, "ds-04", publisher_id=publisher_id(hub, "amt-a"))
    return ["ds-04"]


def page_count_grew(hub: Hub) -> list[str]:
    add_dataset(hub, "ds-15", "amt-a", minute=15)
    add_dataset(hub, "ds-16", "amt-b", minute=16)
    return ["ds-15", "ds-16"]


def page_count_shrank(hub: Hub) -> list[str]:
    delete_dataset(hub, "ds-13")
    delete_dataset(hub, "ds-14")
    return ["ds-13", "ds-14"]


def new_publisher(hub: Hub) -> list[str]:
    add_publisher(hub, "amt-c")
    add_dataset(hub, "ds-00", "amt-c", minute=30)
    return ["ds-00"]


CHANGES = [title_changed, recently_updated, added_in_the_middle, removed, removed_without_being_named,
           moved_to_another_publisher, page_count_grew, page_count_shrank, new_publisher]


@pytest.mark.parametrize("change", CHANGES, ids=[c.__name__ for c in CHANGES])
def test_an_incremental_build_leaves_the_site_a_full_build_makes(
    small_hub: Hub, tmp_path: Path, change: Callable[[Hub], list[str]]
) -> None:
    site = small_hub.settings.site_dir
    SiteBuilder(small_hub).build()
    before = snapshot(site)

    SiteBuilder(small_hub).build(only=change(small_hub))

    after = snapshot(site)
    assert after != before
    assert after == full_build_elsewhere(small_hub, tmp_path)


def test_pages_past_the_last_and_of_removed_datasets_go_on_a_full_build_too(small_hub: Hub) -> None:
    site = small_hub.settings.site_dir
    SiteBuilder(small_hub).build()
    for name in ("ds-12", "ds-13", "ds-14"):
        delete_dataset(small_hub, name)

    SiteBuilder(small_hub).build()

    for root in LANG_ROOTS:
        assert not (site / root / "page/5.html").exists()
        assert not (site / root / "publishers/amt-b/page/3.html").exists()
        assert not (site / root / "datasets/ds-13.html").exists()
        assert (site / root / "page/4.html").exists()
        assert cards(site, f"{root}publishers/amt-b/page/2.html") == ["ds-08", "ds-10"]


def test_a_new_page_size_re_renders_every_listing(small_hub: Hub, tmp_path: Path) -> None:
    SiteBuilder(small_hub).build()
    set_values(small_hub, "ds-01", title="Neuer Titel")
    resized = open_hub(Settings(data_dir=small_hub.settings.data_dir, site_page_size=5))
    try:
        SiteBuilder(resized).build(only=["ds-01"])
        site = resized.settings.site_dir
        assert sorted(p for p in html_pages(site) if p.startswith("page/")) == ["page/1.html", "page/2.html", "page/3.html"]
        assert snapshot(site) == full_build_elsewhere(resized, tmp_path)
    finally:
        resized.close()


def test_one_changed_dataset_rewrites_its_pages_and_the_site_wide_indexes_only(small_hub: Hub) -> None:
    site = small_hub.settings.site_dir
    SiteBuilder(small_hub).build()
    kept = {".manifest.json", ".search-docs.json"}  # what the incremental build compares against
    for path in site.rglob("*"):
        if path.is_file() and path.name not in kept and "static" not in path.parts:
            path.write_text("", encoding="utf-8")
    set_values(small_hub, "ds-08", description="Neue Beschreibung")

    SiteBuilder(small_hub).build(only=["ds-08"])

    rewritten = sorted(p.relative_to(site).as_posix() for p in site.rglob("*")
                       if p.is_file() and p.name not in kept and "static" not in p.parts and p.stat().st_size)
    assert rewritten == sorted([
        *(f"{root}{page}" for root in LANG_ROOTS for page in [
            "datasets/ds-08.html", "datasets/ds-08/v1.html", "index.html", "harvest.html", "page/3.html",
            "publishers/amt-b/page/2.html"]),
        "feeds/all.atom", "feeds/ds-08.atom", "robots.txt", "search/index.json", "sitemap.xml"])
    index = json.loads((site / "search" / "index.json").read_text(encoding="utf-8"))
    assert len(index["docs"]) == 14  # the other datasets' entries came from the kept ones
    assert "neue" in index["terms"] and "beschreibung" in index["terms"]


def test_an_incremental_build_without_kept_search_entries_still_indexes_every_dataset(small_hub: Hub) -> None:
    site = small_hub.settings.site_dir
    SiteBuilder(small_hub).build()
    (site / ".search-docs.json").unlink()  # as a site built before the entries were kept

    SiteBuilder(small_hub).build(only=["ds-08"])

    index = json.loads((site / "search" / "index.json").read_text(encoding="utf-8"))
    assert sorted(d["name"] for d in index["docs"]) == [f"ds-{i:02d}" for i in range(1, 15)]
