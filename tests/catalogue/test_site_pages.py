"""What the built site's pages hold, read as files (no browser): versions and diffs, downloads, previews,
map and chart data, citations, escaping, the Content-Security-Policy, feeds, sitemap and the API base setting."""

from __future__ import annotations

import html
import json
import re
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pyarrow.parquet as pq
import pytest
from sqlalchemy import update

from catalogue.hub import Hub
from catalogue.ingest.pipeline import Delivery, ingest_delivery
from catalogue.meta.models import Dataset
from catalogue.sitegen.builder import SiteBuilder

SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "name", "type": "string"},
                     {"name": "amount", "type": "number"}], "primaryKey": ["id"]}
V1 = b"id,name,amount\n1,eins,1.5\n2,zwei,2.5\n3,drei,3.5\n"
V2 = b"id,name,amount\n1,eins,1.5\n3,DREI,3.5\n"  # 0 added, 1 removed (2), 1 changed (3)
HOSTILE = '<script>alert("t")</script><img src=x onerror=alert(1)>'


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text of the page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def hrefs(self) -> list[str]:
        return [a["href"] for t, a in self.tags if t == "a" and a.get("href")]  # type: ignore[misc]


def read(site: Path, page: str) -> str:
    return (site / page).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """Dataset ``zahlen`` with two versions (the second removes one row and changes one), site built."""
    from tests.conftest import catalogue_maker

    maker = catalogue_maker(tmp_path_factory.mktemp("pages"))
    make = next(maker)
    hub = make("zahlen", SCHEMA, V1)
    result = ingest_delivery(hub, "zahlen", Delivery(V2, "csv", {}, "replace", {"source_url": "test"}))
    assert result.status == "published", result.report
    SiteBuilder(hub).build()
    yield hub
    next(maker, None)


def test_the_versions_table_shows_added_removed_and_changed_rows_and_links_the_diff(two_versions: Hub) -> None:
    site = two_versions.settings.site_dir
    for root, prefix in (("", "../"), ("en/", "../../")):
        page = read(site, f"{root}datasets/zahlen.html")
        cell = page.split('<section id="versions"', 1)[1].split("</section>", 1)[0]
        numbers = re.findall(r'class="(added|removed|changed)">[+−~](\d+)', cell)
        assert numbers == [("added", "0"), ("removed", "1"), ("changed", "1")]
        assert f'{prefix}api/v1/datasets/zahlen/diff?from=1&amp;to=2' in cell
        assert 'href="../datasets/zahlen/v2.html"' in cell and 'href="../datasets/zahlen/v1.html"' in cell
    version_page = read(site, "datasets/zahlen/v2.html")
    assert "<h1>Version 2" in version_page and '~1<span class="visually-hidden"> Zeilen geändert' in version_page


def test_downloads_cover_every_format_relative_to_the_page_with_sizes(two_versions: Hub) -> None:
    site = two_versions.settings.site_dir
    page = Tags(read(site, "datasets/zahlen.html"))
    base = "../api/v1/datasets/zahlen"
    v2 = sorted({h for h in page.hrefs() if h.startswith(base) and ("version=2" in h or h.endswith("/2/datapackage.json"))})
    assert v2 == sorted([f"{base}/exports/{f}?version=2" for f in ("csv", "json", "ndjson", "parquet", "xlsx")]
                        + [f"{base}/exports/csv?version=2&number_style=german", f"{base}/versions/2/datapackage.json"])
    box = read(site, "datasets/zahlen.html").split('<div class="download-box">', 1)[1].split("</div>", 1)[0]
    sizes = re.findall(r'<span class="muted size">([\d,]+ k?B)</span>', box)
    assert len(sizes) == 7  # every row format, German CSV and the zip; the descriptor's size is not known in advance
    assert '<a href="../data/zahlen/zahlen-v2.zip" download>Data Package (ZIP)' in box
    with zipfile.ZipFile(site / "data" / "zahlen" / "zahlen-v2.zip") as archive:
        assert archive.namelist() == ["datapackage.json", "data/zahlen-v2.parquet"]
        package = json.loads(archive.read("datapackage.json"))
        assert [r["path"] for r in package["resources"]] == ["data/zahlen-v2.parquet"]
        assert pq.read_table(archive.open("data/zahlen-v2.parquet")).num_rows == 2
    # A page one level deeper links one level further up.
    assert f"../{base}/exports/parquet?version=2" in Tags(read(site, "datasets/zahlen/v2.html")).hrefs()


def test_every_older_version_offers_every_format_with_known_sizes_or_size_on_request(two_versions: Hub) -> None:
    site = two_versions.settings.site_dir
    base = "../api/v1/datasets/zahlen"
    expected = ([f"{base}/exports/{f}?version=1" for f in ("csv", "json", "ndjson", "parquet", "xlsx")]
                + [f"{base}/exports/csv?version=1&number_style=german", f"{base}/versions/1/datapackage.json",
                   f"{base}/versions/1/datapackage.zip"])
    table = read(site, "datasets/zahlen.html").split('<section id="versions"', 1)[1].split("</section>", 1)[0]
    assert sorted(h for h in Tags(table).hrefs() if "version=1" in h or "/versions/1/" in h) == sorted(expected)
    # The version's own English page (two levels deeper) lists the same downloads, each with a size or "on request".
    page = read(site, "en/datasets/zahlen/v1.html")
    box = page.split('<section id="downloads"', 1)[1].split("</section>", 1)[0]
    assert sorted(h for h in Tags(box).hrefs()) == sorted(f"../../{h}" for h in expected)
    items = re.findall(r"<li>(.*?)</li>", box, re.S)
    assert len(items) == len(expected)
    assert all(re.search(r'class="muted (size">≈? ?[\d.]+ k?B|size-on-request">size on request)</span>', i)
               for i in items), items
    parquet = next(i for i in items if "exports/parquet" in i)
    zipped = next(i for i in items if "datapackage.zip" in i)
    csv = next(i for i in items if "exports/csv?version=1\"" in i)
    # The stored part's size: Parquet exact, the API's zip (the parts plus the descriptor) about as large.
    assert re.search(r'class="muted size">[\d.]+ k?B<', parquet) and 'class="muted size">≈ ' in zipped
    assert "size on request" in csv
    assert "Größe auf Anfrage" in read(site, "datasets/zahlen/v1.html")


def test_an_older_version_keeps_the_sizes_measured_while_it_was_current(tmp_path: Path) -> None:
    from tests.conftest import catalogue_maker

    maker = catalogue_maker(tmp_path)
    make = next(maker)
    try:
        hub = make("zahlen", SCHEMA, V1)
        SiteBuilder(hub).build()  # version 1 is current: every download measured
        box = read(hub.settings.site_dir, "en/datasets/zahlen/v1.html").split('<section id="downloads"', 1)[1]
        measured = re.findall(r'exports/csv\?version=1" download>.*?class="muted size">([\d.]+ B)<', box)
        result = ingest_delivery(hub, "zahlen", Delivery(V2, "csv", {}, "replace", {"source_url": "test"}))
        assert result.status == "published", result.report
        SiteBuilder(hub).build()
        site = hub.settings.site_dir
    finally:
        next(maker, None)
    assert len(measured) == 1  # measured (by writing the export once) while version 1 was current
    for page in ("en/datasets/zahlen/v1.html", "en/datasets/zahlen.html"):
        text = read(site, page)
        assert re.findall(r'exports/csv\?version=1" download>.*?class="muted size">([\d.]+ B)<', text) == measured
    # The zip of a version that is no longer current is the API's (the site keeps only the current one's).
    assert "zahlen/versions/1/datapackage.zip" in read(site, "en/datasets/zahlen/v1.html")


def test_a_configured_api_base_url_is_used_for_downloads_examples_and_the_search_fallback(tmp_path: Path) -> None:
    from tests.conftest import catalogue_maker

    maker = catalogue_maker(tmp_path)
    make = next(maker)
    try:
        hub = make("zahlen", SCHEMA, V1, site_api_base_url="https://api.example.org/api/v1/")
        SiteBuilder(hub).build()
        settings = hub.settings
    finally:
        next(maker, None)
    page = read(settings.site_dir, "en/datasets/zahlen.html")
    assert "https://api.example.org/api/v1/datasets/zahlen/exports/parquet?version=1" in Tags(page).hrefs()
    assert "curl -sS &#39;https://api.example.org/api/v1/datasets/zahlen/records?version=1&amp;limit=10&#39;" in page
    assert 'action="https://api.example.org/api/v1/datasets"' in read(settings.site_dir, "index.html")
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp and "connect-src 'self' https://api.example.org;" in html.unescape(csp.group(1))


def test_the_preview_table_shows_the_first_rows(two_versions: Hub) -> None:
    page = read(two_versions.settings.site_dir, "datasets/zahlen.html")
    preview = page.split('<section id="preview"', 1)[1].split("</section>", 1)[0]
    cells = re.findall(r"<td>([^<]*)</td>", preview)
    assert cells == ["1", "eins", "1.5", "3", "DREI", "3.5"]


def test_citations_name_version_and_hash_as_text_bibtex_and_ris(two_versions: Hub) -> None:
    from catalogue.meta.metadata import get_dataset

    with two_versions.sessions() as session:
        digest = get_dataset(session, "zahlen").current_version.content_hash  # type: ignore[union-attr]
    page = read(two_versions.settings.site_dir, "datasets/zahlen.html")
    cite = page.split('<section id="cite"', 1)[1]
    plain, bibtex, ris = re.findall(r'<pre class="citation"[^>]*>(.*?)</pre>', cite, re.S)
    assert "Version 2" in plain and digest in plain
    assert bibtex.startswith("@dataset{zahlen_v2,") and "version = {2}" in bibtex and digest in bibtex
    assert ris.startswith("TY  - DATA") and "ET  - Version 2" in ris and digest in ris and ris.endswith("ER  -")


def test_hostile_metadata_and_cells_are_escaped_and_markdown_is_sanitised(tmp_path: Path) -> None:
    from tests.conftest import catalogue_maker

    maker = catalogue_maker(tmp_path)
    make = next(maker)
    try:
        content = f'id,name,amount\n1,"{HOSTILE.replace(chr(34), chr(34) * 2)}",1\n'.encode()
        hub = make("boese", SCHEMA, content)
        with hub.sessions.begin() as session:
            session.execute(update(Dataset).where(Dataset.name == "boese").values(
                title=HOSTILE, keywords=[HOSTILE, "javascript:alert(1)"],
                description="**fett** [klick](javascript:alert(1)) <a href=\"javascript:alert(2)\">x</a> "
                            + HOSTILE + " [gut](https://example.org/)"))
        SiteBuilder(hub).build()
        site = hub.settings.site_dir
        for page in ("datasets/boese.html", "en/datasets/boese.html", "page/1.html", "index.html"):
            text = read(site, page)
            tags = Tags(text)
            scripts = [a.get("src") for t, a in tags.tags if t == "script" and a.get("type") != "application/ld+json"]
            assert len(scripts) == 1 and scripts[0].endswith("static/js/site.js"), page  # the site's own only
            assert not [a for _, a in tags.tags if any(k.startswith("on") for k in a)], page
            assert not [h for h in tags.hrefs() if h.strip().lower().startswith("javascript:")], page
            assert "<img" not in text, page
        dataset_page = read(site, "datasets/boese.html")
        assert "<strong>fett</strong>" in dataset_page and 'href="https://example.org/"' in dataset_page
        assert "&lt;script&gt;alert(&#34;t&#34;)&lt;/script&gt;" in dataset_page  # the title and the preview cell
        index = json.loads(read(site, "search/index.json"))
        assert index["docs"][0]["title"] == HOSTILE  # kept as data; search.js sets it as text
    finally:
        next(maker, None)


def test_every_page_sets_a_strict_csp_and_only_the_sql_console_allows_webassembly(two_versions: Hub) -> None:
    site = two_versions.settings.site_dir
    pages = sorted(site.rglob("*.html"))
    assert any(p.name == "sql.html" for p in pages)
    for path in pages:
        match = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">',
                          path.read_text(encoding="utf-8"))
        assert match, path
        policy = html.unescape(match.group(1))
        assert "default-src 'self'" in policy and "object-src 'none'" in policy and "unsafe-inline" not in policy
        assert ("'wasm-unsafe-eval'" in policy) == (path.name == "sql.html"), path


def test_feeds_sitemap_and_robots_are_well_formed(two_versions: Hub) -> None:
    site = two_versions.settings.site_dir
    atom = "{http://www.w3.org/2005/Atom}"
    feed = ElementTree.parse(site / "feeds" / "zahlen.atom").getroot()
    assert [e.findtext(f"{atom}title") for e in feed.iter(f"{atom}entry")] == ["Test zahlen – Version 2",
                                                                             "Test zahlen – Version 1"]
    assert [e.find(f"{atom}link").get("href") for e in feed.iter(f"{atom}entry")] == [  # type: ignore[union-attr]
        "http://127.0.0.1:8000/datasets/zahlen/v2.html", "http://127.0.0.1:8000/datasets/zahlen/v1.html"]
    overall = ElementTree.parse(site / "feeds" / "all.atom").getroot()
    assert len(list(overall.iter(f"{atom}entry"))) == 2
    sitemap = ElementTree.parse(site / "sitemap.xml").getroot()
    locs = {e.text for e in sitemap.iter("{http://www.sitemaps.org/schemas/sitemap/0.9}loc")}
    assert {"http://127.0.0.1:8000/datasets/zahlen.html", "http://127.0.0.1:8000/en/impressum.html"} <= locs
    assert read(site, "robots.txt") == "User-agent: *\nAllow: /\nSitemap: http://127.0.0.1:8000/sitemap.xml\n"


def test_the_atom_feeds_are_valid_atom_1_0(two_versions: Hub) -> None:
    import feedparser

    site = two_versions.settings.site_dir
    for feed_file, count in (("zahlen.atom", 2), ("all.atom", 2)):
        parsed = feedparser.parse((site / "feeds" / feed_file).read_bytes())
        assert not parsed.bozo, parsed.get("bozo_exception")  # well-formed, nothing feedparser had to forgive
        assert parsed.version == "atom10" and parsed.namespaces.get("") == "http://www.w3.org/2005/Atom"
        # RFC 4287 4.1.1: a feed has an id, a title, an updated date and an author (or every entry has one).
        feed = parsed.feed
        assert feed.id and feed.title and feed.updated_parsed and feed.author
        assert any(link.rel == "self" and link.href.endswith(f"feeds/{feed_file}") for link in feed.links)
        assert len(parsed.entries) == count
        ids = [e.id for e in parsed.entries]
        assert len(set(ids)) == count and all(i.startswith("urn:urbandata:zahlen:v") for i in ids)
        for e in parsed.entries:  # 4.1.2: an id, a title, an updated date, an alternate link (no content given)
            assert e.title and e.updated_parsed and e.summary
            assert [link.href for link in e.links if link.rel == "alternate"] == [e.link]


def test_the_version_page_shows_its_diff_summary_and_links_the_diff(two_versions: Hub) -> None:
    site = two_versions.settings.site_dir
    for page, prefix in (("datasets/zahlen/v2.html", "../../"), ("en/datasets/zahlen/v2.html", "../../../")):
        text = read(site, page)
        numbers = re.findall(r'class="(added|removed|changed)">[+−~](\d+)', text)
        assert numbers == [("added", "0"), ("removed", "1"), ("changed", "1")]
        assert f"{prefix}api/v1/datasets/zahlen/diff?from=1&to=2" in Tags(text).hrefs()
    first = read(site, "datasets/zahlen/v1.html")  # the first version has nothing to compare with
    assert "diff?from=" not in first


def test_impressum_and_datenschutz_come_from_the_settings(tmp_path: Path) -> None:
    from catalogue.hub import open_hub
    from catalogue.settings import Settings

    hub = open_hub(Settings(data_dir=tmp_path / "var", site_impressum="Amt für Beispiele\n\nHauptstraße 1",
                            site_privacy="Keine Cookies."))
    try:
        SiteBuilder(hub).build()
        site = hub.settings.site_dir
        assert "<p>Amt für Beispiele</p>\n<p>Hauptstraße 1</p>" in read(site, "impressum.html")
        assert "<p>Keine Cookies.</p>" in read(site, "en/datenschutz.html")
        assert "<h1>Legal notice (Impressum)</h1>" in read(site, "en/impressum.html")
    finally:
        hub.close()


def test_demo_pages_have_map_and_chart_data_and_license_texts(demo_hub: Hub) -> None:
    site = demo_hub.settings.site_dir
    geometry = {"car-parks", "city-districts", "groundwater-levels", "parking-occupancy"}
    series = {"groundwater-levels", "parking-occupancy", "waste-bin-fill-levels"}
    for name in ("car-parks", "city-districts", "egovernment-services", "groundwater-levels", "parking-occupancy",
                 "waste-bin-fill-levels"):
        page = read(site, f"datasets/{name}.html")
        assert ('class="map" data-map="../data/' in page) == (name in geometry), name
        assert ('class="chart" data-chart="../data/' in page) == (name in series), name
        assert (site / "data" / name / "map.json").is_file() == (name in geometry), name
        assert 'href="https://www.govdata.de/dl-de/' in page or 'href="https://creativecommons.org/' in page
        assert "dcat-ap.de/def/licenses" not in " ".join(Tags(page).hrefs())
    parks: dict[str, Any] = json.loads(read(site, "data/car-parks/map.json"))
    assert parks["type"] == "FeatureCollection" and len(parks["features"]) == 6
    assert {f["geometry"]["type"] for f in parks["features"]} == {"Point"}
    chart = json.loads(read(site, "data/parking-occupancy/chart.json"))
    assert (chart["entity"], chart["time"], chart["value"]) == ("lot_id", "timestamp", "occupied")
    assert [s["name"] for s in chart["series"]] == ["P01", "P02", "P03", "P04", "P05", "P06"]
    assert json.loads(read(site, "data/basemap.json"))["type"] == "FeatureCollection"


def test_schema_types_are_not_broken_mid_word(demo_hub: Hub) -> None:
    css = read(demo_hub.settings.site_dir, "static/style.css")
    assert "break-word" not in css and "word-break: break-all" not in css
    assert '<td><code class="type">datetime</code></td>' in read(demo_hub.settings.site_dir,
                                                                 "datasets/parking-occupancy.html")


def test_the_sql_console_reads_the_versions_parquet_copy(demo_hub: Hub) -> None:
    import pyarrow.parquet as pq

    site = demo_hub.settings.site_dir
    copy = pq.read_table(site / "data" / "parking-occupancy" / "v1.parquet")
    assert copy.num_rows > 0
    page = read(site, "en/datasets/parking-occupancy/sql.html")
    assert 'data-parquet="../../../data/parking-occupancy/v1.parquet"' in page
    assert '<script src="../../../static/js/sql.js" defer></script>' in page
    assert not list((site / "data" / "parking-occupancy").glob("*.arrows"))


def test_private_datasets_are_left_out_of_every_page_index_and_feed(tmp_path: Path) -> None:
    from tests.conftest import catalogue_maker

    maker = catalogue_maker(tmp_path)
    make = next(maker)
    try:
        make("offen", SCHEMA, V1)
        hub = make("geheim", SCHEMA, V1)
        SiteBuilder(hub).build()
        site = hub.settings.site_dir
        assert (site / "datasets" / "geheim.html").is_file()
        with hub.sessions.begin() as session:
            session.execute(update(Dataset).where(Dataset.name == "geheim").values(private=True))

        SiteBuilder(hub).build(only=["geheim"])

        leftovers = [p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()
                     and "static" not in p.parts and "geheim" in p.read_bytes().decode("utf-8", "replace")]
        assert leftovers == []  # no page, data file, feed, sitemap entry or search entry names it
        assert [d["name"] for d in json.loads(read(site, "search/index.json"))["docs"]] == ["offen"]
    finally:
        next(maker, None)


def test_the_declared_update_frequency_stands_beside_the_actual_freshness(two_versions: Hub) -> None:
    with two_versions.sessions.begin() as session:
        session.execute(update(Dataset).where(Dataset.name == "zahlen").values(update_frequency="DAILY"))
    try:
        SiteBuilder(two_versions).build(only=["zahlen"])
        page = read(two_versions.settings.site_dir, "en/datasets/zahlen.html")
        meta = page.split('<section id="metadata"', 1)[1]
        frequency = meta.split("<dt>Update frequency</dt>", 1)[1].split("</dd>", 1)[0]
        assert "daily" in frequency and '<span class="badge badge--ok">up to date</span>' in frequency
        assert "<dt>Validation</dt>" in meta and '<span class="badge badge--ok">valid</span>' in meta
    finally:
        with two_versions.sessions.begin() as session:
            session.execute(update(Dataset).where(Dataset.name == "zahlen").values(update_frequency="IRREG"))
        SiteBuilder(two_versions).build(only=["zahlen"])


def test_the_harvest_status_page_shows_every_sources_last_run_in_both_languages(demo_hub: Hub) -> None:
    from sqlalchemy import select

    from catalogue.meta.models import HarvestSource

    with demo_hub.sessions() as session:
        sources = set(session.scalars(select(HarvestSource.name)))
    site = demo_hub.settings.site_dir
    for page, word, api in ((read(site, "harvest.html"), "veröffentlicht", "api/v1"),
                            (read(site, "en/harvest.html"), "published", "../api/v1")):
        assert sources and all(f'<th scope="row">{name}</th>' in page for name in sources), sources
        assert f'<span class="badge status-published">{word}</span>' in page
        assert f'href="{api}/harvest/jobs"' in page  # relative: the site works from any host or folder
    assert 'href="harvest.html"' in read(site, "index.html")
