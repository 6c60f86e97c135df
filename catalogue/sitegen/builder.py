"""Build the static catalogue site (German at the root, English under en/).

Pages are rendered with Jinja2 from the templates in ``site/`` using the same
catalogue functions the API uses, so site and API never disagree. Besides the pages
the build writes what the site's JavaScript enhances them with (the search index,
map and chart data, a copy of each current version's Parquet file), Atom feeds,
sitemap.xml and robots.txt: everything a static host needs, with no request to
another origin.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable, Collection
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemBytecodeCache, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from catalogue.hub import Hub
from catalogue.meta.job_reads import page_jobs, public_job, source_names
from catalogue.meta.downloads import served_formats
from catalogue.meta.licenses import LICENSES
from catalogue.meta.metadata import list_publishers
from catalogue.meta.models import Dataset, HarvestJob, Version
from catalogue.meta.vocabularies import FREQUENCIES, THEMES, label
from catalogue.query.engine import VersionRef
from catalogue.query.exports import format_names
from catalogue.sitegen import feeds, search_index
from catalogue.sitegen.build_lock import site_build_lock
from catalogue.sitegen.static_files import copy_static
from catalogue.sitegen.data_files import VersionData
from catalogue.sitegen.listings import Listing, Manifest, index_listing, publisher_listing
from catalogue.sitegen.partial_files import write_whole
from catalogue.sitegen.rich_text import markdown
from catalogue.sitegen.views import card_view, dataset_view, entry_card, human_bytes, publisher_view, when

__all__ = ["SiteBuilder", "build_site", "human_bytes"]

LANGS = ("de", "en")
RECENT_CARDS = 6  # recently updated datasets on the front page
CHUNK = 500  # names or ids per IN (...) query: SQLite caps the bound parameters of one statement
HARVEST_JOBS_SHOWN = 100  # runs on the harvest status page, newest first
STATIC_PAGES = ("search.html", "impressum.html", "datenschutz.html", "api.html", "harvest.html")
# The dataset whose geometries every map draws beneath the dataset's own (no tile server by default).
BASEMAP_DATASET = "city-districts"


def _load_datasets(session: Session, names: Collection[str] | None) -> dict[str, Dataset]:
    """The datasets ``names`` (None: all) with publisher and current version, by name."""
    query = (select(Dataset).where(Dataset.private.is_(False))
             .options(selectinload(Dataset.publisher), selectinload(Dataset.current_version)))
    if names is None:
        return {d.name: d for d in session.scalars(query)}
    wanted = sorted(names)
    return {d.name: d for i in range(0, len(wanted), CHUNK)
            for d in session.scalars(query.where(Dataset.name.in_(wanted[i:i + CHUNK])))}


def _load_versions(session: Session, datasets: Collection[Dataset]) -> dict[int, list[Version]]:
    """Every version of ``datasets``, newest first, by dataset id."""
    ids = sorted(d.id for d in datasets)
    found: dict[int, list[Version]] = {}
    for i in range(0, len(ids), CHUNK):
        query = (select(Version).where(Version.dataset_id.in_(ids[i:i + CHUNK]))
                 .order_by(Version.dataset_id, Version.number.desc()))
        for v in session.scalars(query):
            found.setdefault(v.dataset_id, []).append(v)
    return found


def _last_jobs(session: Session, datasets: Collection[Dataset]) -> dict[int, HarvestJob]:
    """The latest finished harvest job of each of ``datasets``, by dataset id."""
    ids = sorted(d.id for d in datasets)
    found: dict[int, HarvestJob] = {}
    for i in range(0, len(ids), CHUNK):
        latest = (select(func.max(HarvestJob.id)).where(HarvestJob.dataset_id.in_(ids[i:i + CHUNK]),
                                                         HarvestJob.finished_at.is_not(None))
                  .group_by(HarvestJob.dataset_id))
        for job in session.scalars(select(HarvestJob).options(selectinload(HarvestJob.dataset))
                                   .where(HarvestJob.id.in_(latest))):
            if job.dataset_id is not None:  # always, by the query (a catalogue run has no dataset)
                found[job.dataset_id] = job
    return found


class _Cards(dict[str, dict[str, Any]]):
    """The cards of one language by dataset name, each made from its search entry on first use."""

    def __init__(self, entries: dict[str, Any], publishers: dict[str, tuple[str, str]], lang: str) -> None:
        super().__init__()
        self.entries, self.publishers, self.lang = entries, publishers, lang

    def __missing__(self, name: str) -> dict[str, Any]:
        card = self[name] = entry_card(self.entries[name], self.publishers, self.lang)
        return card


def _put(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless the file holds exactly these bytes already (so a rebuild leaves an
    unchanged file, and its modification time, as it was); True if it wrote."""
    data = text.encode("utf-8")
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
    write_whole(path, data)  # whole or not at all: the API serves the site while it is rebuilt
    return True


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else ""


class SiteBuilder:
    """Renders the pages of the catalogue into ``settings.site_dir``."""

    def __init__(self, hub: Hub, now: datetime | None = None) -> None:
        """``now``: the build's time (shown on every page); the current time unless given."""
        self.hub = hub
        self.settings = hub.settings
        templates = self.settings.site_templates_dir
        # Compiling the templates costs more than an incremental build renders: keep them compiled
        # between builds (Jinja checks each against its source's checksum).
        compiled = self.settings.data_dir / "cache" / "site-templates"
        compiled.mkdir(parents=True, exist_ok=True)
        self.env = Environment(
            loader=FileSystemLoader(templates / "templates"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            auto_reload=False,  # one build, one set of templates: skip the mtime check on every page
            bytecode_cache=FileSystemBytecodeCache(str(compiled)),
        )
        self.texts = {lang: json.loads((templates / "i18n" / f"{lang}.json").read_text(encoding="utf-8")) for lang in LANGS}
        self.now = now or datetime.now(timezone.utc)
        self.generated_at = when(self.now)
        configured = self.settings.site_api_base_url.rstrip("/")
        self.api_base = configured  # empty: relative to each page
        self.api_url = configured or self.settings.public_url.rstrip("/") + self.settings.api_prefix
        self.site_url = self.settings.public_url.rstrip("/") + "/"
        self.connect = " ".join(o for o in {_origin(configured), _origin(self.settings.site_tile_url)} if o)

    def build(self, progress: Callable[[str], None] | None = None, only: Collection[str] | None = None,
              openapi: dict[str, Any] | None = None) -> int:
        """Render all pages; returns the number of pages written.

        With ``only`` (names of datasets added, changed or removed since the last
        build), render just those datasets' pages, the listing pages that differ from
        the last build, and the site-wide pages and files (front page, search index,
        feeds, sitemap). The pages of a dataset (or publisher) that no longer exists
        are removed, and so are listing pages beyond the last. A site with no manifest
        (none built yet, or its manifest lost) is built whole. A change of a
        publisher's own metadata, of the templates or of the settings needs a full build.
        ``openapi`` (the API's OpenAPI document, which the kernel cannot make) is written as
        ``openapi.json`` for the API documentation page.

        One build of the site runs at a time (``build_lock``); a second one waits, then finds the
        first one's manifest.
        """
        out = self.settings.site_dir
        size = self.settings.site_page_size
        with site_build_lock(out):
            previous = Manifest.read(out)
            if previous is None:
                only = None
            if openapi is not None:
                _put(out / "openapi.json", json.dumps(openapi, ensure_ascii=False, indent=1))
            if only is None:
                copy_static(self.settings.site_templates_dir / "static", out / "static")
            before = previous if only is not None and previous and previous.page_size == size else None
            data = VersionData(self.hub)
            try:
                with self.hub.sessions() as session:
                    return self._build(session, data, previous, before, only, progress)
            finally:
                data.close()

    def build_search_index(self) -> int:
        """Rewrite the search index from every public dataset, as a full build does (no page is rendered);
        returns the number of datasets in it. The benchmark times this on its own."""
        formats = format_names(self.hub.registry)
        with self.hub.sessions() as session:
            publishers = list_publishers(session)
            entries = {d.name: self._search_entry(d, formats) for d in _load_datasets(session, None).values()}
        search_index.write_index(self.settings.site_dir, entries,
                                 {p.name: (p.title, p.title_en or "") for p in publishers})
        return len(entries)

    def _build(self, session: Session, data: VersionData, previous: Manifest | None, before: Manifest | None,
               only: Collection[str] | None, progress: Callable[[str], None] | None) -> int:
        out = self.settings.site_dir
        size = self.settings.site_page_size
        publishers = list_publishers(session)
        owner = {p.id: p.name for p in publishers}
        rows = session.execute(select(Dataset.name, Dataset.publisher_id, Dataset.title, Dataset.title_en)
                               .where(Dataset.private.is_(False))).all()
        current = Manifest(size, dict(sorted((r.name, owner[r.publisher_id]) for r in rows)),
                           [p.name for p in publishers], {r.name: (r.title, r.title_en or "") for r in rows})
        recent = list(session.scalars(
            select(Dataset.name).where(Dataset.current_version_id.is_not(None), Dataset.private.is_(False))
            .order_by(Dataset.modified_at.desc(), Dataset.name).limit(RECENT_CARDS)
        ))
        changed = set(current.datasets) if only is None else set(only) & current.datasets.keys()
        plans = {lang: self._plan(current, before, changed, lang) for lang in LANGS}
        datasets = _load_datasets(session, None if only is None else changed)
        changed_ds = [datasets[n] for n in sorted(changed)]
        versions = _load_versions(session, changed_ds)
        jobs = _last_jobs(session, changed_ds)
        formats = data.formats()
        facts, copies = self._version_files(data, changed_ds, progress)
        older = {d.name: {v.number: data.known_sizes(d.name, v.content_hash) for v in versions.get(d.id, [])
                          if v.id != d.current_version_id} for d in changed_ds}
        counts = Counter(current.datasets.values())
        entries = {} if only is None else search_index.read_entries(out)
        for d in changed_ds:
            entries[d.name] = self._search_entry(d, formats)
        # A site built before the entries were kept (or with them lost): read the missing datasets once; and
        # an entry whose title or publisher is not the catalogue's (a change not named in ``only``) again.
        stale = {n for n, e in entries.items() if n in current.datasets and (
            e["doc"]["publisher"] != current.datasets[n] or (e["doc"]["title"], e["doc"]["title_en"]) != current.titles[n])}
        for d in _load_datasets(session, (current.datasets.keys() - entries.keys()) | stale).values():
            entries[d.name] = self._search_entry(d, formats)
        for name in set(entries) - current.datasets.keys():
            del entries[name]
        titles = {p.name: (p.title, p.title_en or "") for p in publishers}
        pages = 0
        for lang in LANGS:
            # Cards come from the search entries (the kept ones and the changed datasets' new ones), so the
            # listings a change shifts re-render without reading their datasets from the catalogue.
            cards = _Cards(entries, titles, lang)
            pub_views = {p.name: publisher_view(p, counts[p.name]) for p in publishers}
            if only is None:
                # Served for any missing path, so its links must not depend on where it is shown.
                self._write(lang, "404.html", "error.html", absolute=True, status=404, message="")
                pages += 1 + self._write_static_pages(lang, formats)
            for d in changed_ds:
                view = dataset_view(d, versions.get(d.id, []), lang, api_url=self.api_url,
                                    public_url=self.settings.public_url, facts=facts.get(d.name),
                                    last_job=jobs.get(d.id), now=self.now, formats=formats,
                                    has_parquet_copy=copies.get(d.name, False), older_sizes=older[d.name])
                pages += self._write_dataset(lang, view)
            if only is not None:  # the runs change with every harvest; a full build writes it with the static pages
                self._write_harvest_page(session, lang)
                pages += 1
            self._write(lang, "index.html", "index.html", recent=[cards[n] for n in recent],
                        publishers=sorted(pub_views.values(), key=lambda p: search_index.fold(
                            p["title_en"] if lang == "en" and p["title_en"] else p["title"])),
                        total=len(current.datasets), themes=self._theme_counts(entries, lang),
                        version_count=self._published_count(session))
            pages += 1
            for publisher, listing, numbers in plans[lang]:
                for number in sorted(numbers):
                    context: dict[str, Any] = {"datasets": [cards[n] for n in listing.page(number)],
                                               "pagination": listing.pagination(number)}
                    if publisher is not None:
                        template, context["p"] = "publisher.html", pub_views[publisher]
                    else:
                        template = "datasets.html"
                    self._write(lang, listing.path(number), template, **context)
                    pages += 1
                if numbers:
                    self._remove_pages_beyond(lang, listing)
        self._remove_gone(current, previous, only)
        search_index.write_index(out, entries, titles)
        self._write_feeds(session, changed_ds, versions)
        self._write_sitemap(current, publishers=[p.name for p in publishers])
        if current != previous:
            current.write(out)
        return pages

    def _plan(self, current: Manifest, before: Manifest | None, changed: set[str],
              lang: str) -> list[tuple[str | None, Listing, set[int]]]:
        """Each listing (with its publisher; None for all datasets) and the numbers of its pages to render."""
        size = current.page_size
        index = index_listing(current.ordered(lang), size)
        plan: list[tuple[str | None, Listing, set[int]]] = [
            (None, index, index.pages_to_render(None if before is None else before.ordered(lang), changed))]
        old = {} if before is None else before.by_publisher(lang)
        for publisher, names in current.by_publisher(lang).items():
            listing = publisher_listing(publisher, names, size)
            plan.append((publisher, listing, listing.pages_to_render(old.get(publisher), changed)))
        return plan

    def _theme_counts(self, entries: dict[str, Any], lang: str) -> list[dict[str, Any]]:
        """Each theme's public datasets (the search entries hold every public dataset's themes)."""
        counts = Counter(c for entry in entries.values() for c in entry["doc"]["themes"])
        return [{"code": c, "label": label(THEMES, c, lang), "count": n}
                for c, n in sorted(counts.items(), key=lambda item: label(THEMES, item[0], lang))]

    def _published_count(self, session: Session) -> int:
        return int(session.scalar(select(func.count()).select_from(Version).join(Dataset, Version.dataset_id == Dataset.id)
                                  .where(Dataset.private.is_(False))) or 0)

    def _version_files(self, data: VersionData, datasets: list[Dataset],
                       progress: Callable[[str], None] | None) -> tuple[dict[str, Any], dict[str, bool]]:
        """Preview, map and chart data of each dataset's current version, its Parquet copy; map and chart files."""
        facts: dict[str, Any] = {}
        copies: dict[str, bool] = {}
        root = self.settings.site_dir / "data"
        for d in datasets:
            folder = root / d.name
            shutil.rmtree(folder, ignore_errors=True)
            v = d.current_version
            if v is None:
                continue
            ref = VersionRef.of(self.hub, d, v)
            found = data.facts(ref, bool(d.schema.geometry_fields))
            facts[d.name] = found
            folder.mkdir(parents=True, exist_ok=True)
            for kind in ("map", "chart"):
                if found.get(kind):
                    text = json.dumps(found[kind], ensure_ascii=False, separators=(",", ":"))
                    _put(folder / f"{kind}.json", text)
                    if kind == "map" and d.name == BASEMAP_DATASET:
                        _put(root / "basemap.json", text)
            parquet = folder / f"v{v.number}.parquet"
            copies[d.name] = data.copy_parquet(ref, parquet)
            if parquet.is_file():
                zipped = data.write_package_zip(ref, v.descriptor_key, parquet, folder / f"{d.name}-v{v.number}.zip")
                facts[d.name] = {**found, "package_zip": zipped}
            if progress:
                progress(d.name)
        return facts, copies

    def _search_entry(self, d: Dataset, formats: list[str]) -> dict[str, Any]:
        de, en = card_view(d, "de"), card_view(d, "en")
        schema = d.schema
        has_geometry = bool(schema.geometry_fields)
        doc = {
            "name": d.name, "title": d.title, "title_en": d.title_en or "", "excerpt": de["excerpt"],
            "excerpt_en": en["excerpt"], "publisher": d.publisher.name, "themes": list(d.themes),
            "license": de["license"]["short"], "frequency": d.update_frequency,
            "formats": served_formats(formats, schema),
            "geometry": has_geometry, "timeseries": schema.time_field is not None,
            "modified": de["modified"], "version": de["current_version"],
        }
        texts = [d.title, d.title_en or "", d.description or "", d.description_en or "", *d.keywords,
                 *(f.name for f in schema.fields), *(f.title or "" for f in schema.fields)]
        return {"doc": doc, "terms": search_index.doc_terms(texts),
                "title_terms": search_index.doc_terms([d.title, d.title_en or ""]),
                "rows": d.current_version.row_count if d.current_version else None}

    def _write_dataset(self, lang: str, d: dict[str, Any]) -> int:
        name = d["name"]
        self._write(lang, f"datasets/{name}.html", "dataset.html", d=d)
        folder = self.settings.site_dir / ("" if lang == "de" else "en") / "datasets" / name
        shutil.rmtree(folder, ignore_errors=True)
        for v in d["versions"]:
            self._write(lang, v["page"], "version.html", d=d, v=v)
        if d["parquet_copy"]:
            self._write(lang, f"datasets/{name}/sql.html", "sql.html", d=d, wasm=True)
        return 1 + len(d["versions"]) + (1 if d["parquet_copy"] else 0)

    def _write_static_pages(self, lang: str, formats: list[str]) -> int:
        self._write(lang, "search.html", "search.html",
                    licences=sorted(v["short"] for v in LICENSES.values()),
                    frequencies=[{"code": c, "label": label(FREQUENCIES, c, lang)} for c in FREQUENCIES],
                    formats=formats, themes=[{"code": c, "label": label(THEMES, c, lang)} for c in THEMES])
        self._write(lang, "impressum.html", "legal.html", heading=self.texts[lang]["impressum"],
                    body=markdown(self.settings.site_impressum))
        self._write(lang, "datenschutz.html", "legal.html", heading=self.texts[lang]["privacy"],
                    body=markdown(self.settings.site_privacy))
        self._write(lang, "api.html", "api.html", has_openapi=(self.settings.site_dir / "openapi.json").is_file())
        with self.hub.sessions() as session:
            self._write_harvest_page(session, lang)
        return len(STATIC_PAGES)

    def _write_harvest_page(self, session: Session, lang: str) -> None:
        """The harvest status page: each source's last run, then the latest runs (public datasets only)."""
        total, jobs = page_jobs(session, HARVEST_JOBS_SHOWN, 0)
        names = source_names(session, jobs)
        runs = [public_job(job, names.get(job.source_id) if job.source_id is not None else None) for job in jobs]
        last: dict[str, dict[str, Any]] = {}
        for run in runs:
            last.setdefault(run["source"] or run["dataset"], run)
        self._write(lang, "harvest.html", "harvest.html", runs=runs, total=total,
                    sources=[last[k] for k in sorted(last)])

    def _write_feeds(self, session: Session, changed: list[Dataset], versions: dict[int, list[Version]]) -> None:
        out = self.settings.site_dir / "feeds"
        out.mkdir(parents=True, exist_ok=True)
        for d in changed:
            entries = [feeds.FeedEntry(d.name, d.title, v.number, v.created_at, v.row_count, v.content_hash)
                       for v in versions.get(d.id, [])]
            _put(out / f"{d.name}.atom", feeds.atom(
                f"urn:urbandata:{d.name}", d.title, f"{self.site_url}feeds/{d.name}.atom", self.site_url, entries,
                entries[0].created_at if entries else self.now))
        newest = session.execute(
            select(Dataset.name, Dataset.title, Version.number, Version.created_at, Version.row_count,
                   Version.content_hash).join(Version, Version.dataset_id == Dataset.id)
            .where(Dataset.private.is_(False))
            .order_by(Version.created_at.desc(), Version.id.desc()).limit(feeds.ATOM_ENTRIES)).all()
        entries = [feeds.FeedEntry(*row) for row in newest]
        _put(out / "all.atom", feeds.atom(
            "urn:urbandata:all", "Datendrehscheibe Musterstadt", f"{self.site_url}feeds/all.atom", self.site_url,
            entries, entries[0].created_at if entries else self.now))

    def _write_sitemap(self, current: Manifest, publishers: list[str]) -> None:
        out = self.settings.site_dir
        pages = ["index.html", *STATIC_PAGES, *(f"datasets/{n}.html" for n in current.datasets),
                 *(f"publishers/{p}.html" for p in publishers)]
        _put(out / "sitemap.xml", feeds.sitemap(self.site_url, pages))
        _put(out / "robots.txt", feeds.robots(self.site_url))

    def _remove_pages_beyond(self, lang: str, listing: Listing) -> None:
        folder = self.settings.site_dir / ("" if lang == "de" else "en") / listing.rest
        for path in folder.glob("*.html"):
            if path.stem.isdigit() and int(path.stem) > listing.page_count:
                path.unlink()

    def _remove_gone(self, current: Manifest, previous: Manifest | None, only: Collection[str] | None) -> None:
        """Remove the pages and files of datasets and publishers that no longer exist."""
        gone = (set(only or ()) | set(previous.datasets if previous else ())) - current.datasets.keys()
        gone_publishers = set(previous.publishers if previous else ()) - set(current.publishers)
        site = self.settings.site_dir
        for name in gone:
            shutil.rmtree(site / "data" / name, ignore_errors=True)
            if name == BASEMAP_DATASET:
                (site / "data" / "basemap.json").unlink(missing_ok=True)
            (site / "feeds" / f"{name}.atom").unlink(missing_ok=True)
        for lang in LANGS:
            root = site / ("" if lang == "de" else "en")
            for name in gone:
                (root / "datasets" / f"{name}.html").unlink(missing_ok=True)
                shutil.rmtree(root / "datasets" / name, ignore_errors=True)
            for name in gone_publishers:
                (root / "publishers" / f"{name}.html").unlink(missing_ok=True)
                shutil.rmtree(root / "publishers" / name, ignore_errors=True)

    def _csp(self, wasm: bool) -> str:
        """The pages' Content-Security-Policy: own scripts and styles only; WebAssembly only on the SQL console."""
        extra = f" {self.connect}" if self.connect else ""
        script = "'self' 'wasm-unsafe-eval'" if wasm else "'self'"
        return (f"default-src 'self'; script-src {script}; style-src 'self'; img-src 'self' data:; "
                f"connect-src 'self'{extra}; worker-src 'self'; object-src 'none'; base-uri 'self'; "
                f"form-action 'self'{' ' + _origin(self.api_base) if _origin(self.api_base) else ''}")

    def _write(self, lang: str, page: str, template: str, absolute: bool = False, wasm: bool = False,
               **context: Any) -> None:
        depth = page.count("/")
        root = "../" * depth
        lang_root = "" if lang == "de" else "en/"
        other_root = "en/" if lang == "de" else ""
        to_site_root = "../" * (depth + (0 if lang == "de" else 1))
        if absolute:
            root, to_site_root = "/" + lang_root, "/"
        api = self.api_base or (to_site_root + self.settings.api_prefix.strip("/"))
        texts = self.texts[lang]

        def t(key: str) -> str:
            return str(texts[key])

        def txt(obj: dict[str, Any], field: str) -> Any:
            english = obj.get(f"{field}_en")
            return english if lang == "en" and english else obj[field]

        html = self.env.get_template(template).render(
            t=t, txt=txt, lang=lang, root=root, static=f"{to_site_root}static/", site_root=to_site_root,
            other_lang_url=f"{to_site_root}{other_root}{page}", api=api, api_url=self.api_url,
            csp=self._csp(wasm), tile_url=self.settings.site_tile_url,
            site={"title": texts.get("site_title", "Datendrehscheibe Musterstadt"), "generated_at": self.generated_at},
            **context,
        )
        _put(self.settings.site_dir / lang_root / page, html)


def build_site(hub: Hub, progress: Callable[[str], None] | None = None, changed: Collection[str] | None = None,
               openapi: dict[str, Any] | None = None) -> Path:
    """Build the whole site, or with ``changed`` only what those datasets touch; returns its directory."""
    SiteBuilder(hub).build(progress, only=changed, openapi=openapi)
    return hub.settings.site_dir
