"""Build the static catalogue site (German at the root, English under en/).

Pages are rendered with Jinja2 from the templates in ``site/`` using the same
catalogue functions the API uses, so site and API never disagree.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable, Collection
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemBytecodeCache, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from catalogue.hub import Hub
from catalogue.meta.licenses import license_info
from catalogue.meta.metadata import list_publishers
from catalogue.meta.models import Dataset, Organization, Version
from catalogue.sitegen.listings import Listing, Manifest, index_listing, publisher_listing
from catalogue.schema.model import Field
from catalogue.meta.vocabularies import FREQUENCIES, THEMES, label

LANGS = ("de", "en")
RECENT_CARDS = 6  # recently updated datasets on the front page
CHUNK = 500  # names or ids per IN (...) query: SQLite caps the bound parameters of one statement


def human_bytes(size: int, lang: str) -> str:
    """``12,3 kB`` (German) or ``12.3 kB`` (English)."""
    value, unit = float(size), "B"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            break
        value /= 1000
    text = f"{value:.0f}" if unit == "B" else f"{value:.1f}"
    return (text.replace(".", ",") if lang == "de" else text) + f" {unit}"


def _when(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _constraints_text(field: Field) -> str:
    parts = []
    for key, value in field.constraints.items():
        parts.append(key if value is True else f"{key}: {', '.join(map(str, value)) if isinstance(value, list) else value}")
    return "; ".join(parts)


def _load_datasets(session: Session, names: Collection[str] | None) -> dict[str, Dataset]:
    """The datasets ``names`` (None: all) with publisher and current version, by name."""
    query = select(Dataset).options(selectinload(Dataset.publisher), selectinload(Dataset.current_version))
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


class SiteBuilder:
    """Renders the pages of the catalogue into ``settings.site_dir``."""

    def __init__(self, hub: Hub) -> None:
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
        self.generated_at = _when(datetime.now(timezone.utc))
        self.api = self.settings.api_prefix

    def build(self, progress: Callable[[str], None] | None = None, only: Collection[str] | None = None) -> int:
        """Render all pages; returns the number of pages written.

        With ``only`` (names of datasets added, changed or removed since the last
        build), render just those datasets' pages and the listing pages that differ
        from the last build: the pages showing those datasets, the pages after a
        dataset added or removed, and the front page if its counts or recently
        updated datasets changed. The pages of a dataset (or publisher) that no longer
        exists are removed, and so are listing pages beyond the last. A change of a
        publisher's own metadata, or of the templates, needs a full build.
        """
        out = self.settings.site_dir
        out.mkdir(parents=True, exist_ok=True)
        size = self.settings.site_page_size
        if only is None:
            shutil.copytree(self.settings.site_templates_dir / "static", out / "static", dirs_exist_ok=True)
        previous = Manifest.read(out)
        before = previous if only is not None and previous and previous.page_size == size else None
        with self.hub.sessions() as session:
            publishers = list_publishers(session)
            owner = {p.id: p.name for p in publishers}
            current = Manifest(size, dict(sorted((name, owner[pid]) for name, pid in
                                                 session.execute(select(Dataset.name, Dataset.publisher_id)))),
                               [p.name for p in publishers])
            recent = list(session.scalars(
                select(Dataset.name).where(Dataset.current_version_id.is_not(None))
                .order_by(Dataset.modified_at.desc(), Dataset.name).limit(RECENT_CARDS)
            ))
            changed = set(current.datasets) if only is None else set(only) & current.datasets.keys()
            plan = self._plan(current, before, changed, recent)
            shown = {n for _, listing, numbers in plan for k in numbers for n in listing.page(k)}
            needed = changed | set(recent) | shown
            datasets = _load_datasets(session, None if only is None else needed)
            versions = _load_versions(session, [datasets[n] for n in changed])
            counts = Counter(current.datasets.values())
            pages = 0
            for lang in LANGS:
                # Cards show no version list: only the pages of changed datasets need one.
                views = {n: self.dataset_view(d, versions.get(d.id, []), lang) for n, d in datasets.items()}
                pub_views = {p.name: self.publisher_view(p, counts[p.name]) for p in publishers}
                if only is None:
                    # Served for any missing path, so its links must not depend on where it is shown.
                    self._write(lang, "404.html", "error.html", absolute=True, status=404, message="")
                    pages += 1
                for name in sorted(changed):
                    self._write(lang, f"datasets/{name}.html", "dataset.html", d=views[name])
                    pages += 1
                    if progress:
                        progress(name)
                for publisher, listing, numbers in plan:
                    for number in sorted(numbers):
                        context: dict[str, Any] = {"datasets": [views[n] for n in listing.page(number)],
                                                   "pagination": listing.pagination(number)}
                        if publisher is not None:
                            template, context["p"] = "publisher.html", pub_views[publisher]
                        elif number == 1:
                            template = "index.html"
                            context.update(recent=[views[n] for n in recent], publishers=list(pub_views.values()),
                                           total=len(current.datasets))
                        else:
                            template = "datasets.html"
                        self._write(lang, listing.path(number), template, **context)
                        pages += 1
                    if numbers:
                        self._remove_pages_beyond(lang, listing)
        self._remove_gone(current, previous, only)
        if current != previous:
            current.write(out)
        return pages

    def _plan(self, current: Manifest, before: Manifest | None, changed: set[str],
              recent: list[str]) -> list[tuple[str | None, Listing, set[int]]]:
        """Each listing (with its publisher; None for the index) and the numbers of its pages to render."""
        size = current.page_size
        index = index_listing(list(current.datasets), size)
        front = index.pages_to_render(None if before is None else list(before.datasets), changed)
        if before is None or before.datasets != current.datasets or before.publishers != current.publishers \
                or changed & set(recent):
            front.add(1)  # the front page's counts, publishers or recently updated datasets changed
        plan: list[tuple[str | None, Listing, set[int]]] = [(None, index, front)]
        old = {} if before is None else before.by_publisher()
        for publisher, names in current.by_publisher().items():
            listing = publisher_listing(publisher, names, size)
            plan.append((publisher, listing, listing.pages_to_render(old.get(publisher), changed)))
        return plan

    def _remove_pages_beyond(self, lang: str, listing: Listing) -> None:
        folder = self.settings.site_dir / ("" if lang == "de" else "en") / listing.rest
        for path in folder.glob("*.html"):
            if path.stem.isdigit() and int(path.stem) > listing.page_count:
                path.unlink()

    def _remove_gone(self, current: Manifest, previous: Manifest | None, only: Collection[str] | None) -> None:
        """Remove the pages of datasets and publishers that no longer exist."""
        gone = (set(only or ()) | set(previous.datasets if previous else ())) - current.datasets.keys()
        gone_publishers = set(previous.publishers if previous else ()) - set(current.publishers)
        for lang in LANGS:
            root = self.settings.site_dir / ("" if lang == "de" else "en")
            for name in gone:
                (root / "datasets" / f"{name}.html").unlink(missing_ok=True)
            for name in gone_publishers:
                (root / "publishers" / f"{name}.html").unlink(missing_ok=True)
                shutil.rmtree(root / "publishers" / name, ignore_errors=True)

    def _write(self, lang: str, page: str, template: str, absolute: bool = False, **context: Any) -> None:
        depth = page.count("/")
        root = "../" * depth
        lang_root = "" if lang == "de" else "en/"
        other_root = "en/" if lang == "de" else ""
        to_site_root = "../" * (depth + (0 if lang == "de" else 1))
        if absolute:
            root, to_site_root = "/" + lang_root, "/"
        texts = self.texts[lang]

        def t(key: str) -> str:
            return str(texts[key])

        def txt(obj: dict[str, Any], field: str) -> Any:
            english = obj.get(f"{field}_en")
            return english if lang == "en" and english else obj[field]

        html = self.env.get_template(template).render(
            t=t, txt=txt, lang=lang, root=root, static=f"{to_site_root}static/",
            other_lang_url=f"{to_site_root}{other_root}{page}", api=self.api,
            site={"title": texts.get("site_title", "Datendrehscheibe Musterstadt"), "generated_at": self.generated_at},
            **context,
        )
        target = self.settings.site_dir / lang_root / page
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(html, encoding="utf-8")

    def publisher_view(self, org: Organization, dataset_count: int) -> dict[str, Any]:
        """Template context P for one publisher."""
        return {
            "name": org.name, "title": org.title, "title_en": org.title_en, "description": org.description,
            "description_en": org.description_en, "homepage": org.homepage, "email": org.email,
            "dataset_count": dataset_count,
        }

    def dataset_view(self, d: Dataset, versions: list[Version], lang: str) -> dict[str, Any]:
        """Template context D for one dataset in one language."""
        schema = d.schema
        has_geometry = bool(schema.geometry_fields)
        lic = license_info(d.license)
        current = d.current_version
        base = f"{self.api}/datasets/{d.name}"
        return {
            "name": d.name, "title": d.title, "title_en": d.title_en,
            "description": d.description, "description_en": d.description_en,
            "keywords": list(d.keywords),
            "themes": [{"code": c, "label": label(THEMES, c, lang)} for c in d.themes],
            "publisher": {"name": d.publisher.name, "title": d.publisher.title, "title_en": d.publisher.title_en},
            "license": {"iri": lic["iri"], "title": lic["title"], "short": lic["short"]},
            "contact": dict(d.contact) if d.contact else None,
            "update_frequency": label(FREQUENCIES, d.update_frequency, lang),
            "spatial_bbox": d.spatial.get("bbox"),
            "temporal": {
                "start": d.temporal_start.isoformat() if d.temporal_start else None,
                "end": d.temporal_end.isoformat() if d.temporal_end else None,
            },
            "primary_key": list(schema.primary_key),
            "schema_fields": [
                {"name": f.name, "type": f.type, "title": f.title or "", "description": f.description or "",
                 "format": "" if f.format == "default" else f.format, "constraints": _constraints_text(f)}
                for f in schema.fields
            ],
            "has_geometry": has_geometry,
            "current_version": current.number if current else None,
            "row_count": current.row_count if current else None,
            "modified": _when(d.modified_at) if current else None,
            "versions": [self._version_view(d.name, v, has_geometry, lang) for v in versions],
            "api_records_url": f"{base}/records",
            "citation": self._citation(d, current) if current else "",
        }

    def _version_view(self, name: str, v: Version, has_geometry: bool, lang: str) -> dict[str, Any]:
        base = f"{self.api}/datasets/{name}"
        downloads = [
            {"label": "Parquet", "url": f"{base}/exports/parquet?version={v.number}"},
            {"label": "CSV", "url": f"{base}/exports/csv?version={v.number}"},
        ]
        if has_geometry:
            downloads.append({"label": "GeoJSON", "url": f"{base}/exports/geojson?version={v.number}"})
        downloads.append({"label": "Data Package (JSON)", "url": f"{base}/versions/{v.number}/datapackage.json"})
        return {
            "number": v.number, "created_at": _when(v.created_at), "row_count": v.row_count,
            "bytes_human": human_bytes(v.bytes, lang), "sha256": v.content_hash,
            "changes": {"added": v.changes.get("added", 0), "removed": v.changes.get("removed", 0)} if v.number > 1 else None,
            "downloads": downloads,
        }

    def _citation(self, d: Dataset, v: Version) -> str:
        year = v.created_at.year
        url = f"{self.settings.public_url.rstrip('/')}{self.api}/datasets/{d.name}/versions/{v.number}"
        return (
            f"{d.publisher.title} ({year}): {d.title}, Version {v.number}. Datendrehscheibe Musterstadt. "
            f"{url} (Lizenz: {license_info(d.license)['short']}; SHA-256: {v.content_hash})"
        )


def build_site(hub: Hub, progress: Callable[[str], None] | None = None, changed: Collection[str] | None = None) -> Path:
    """Build the whole site, or with ``changed`` only what those datasets touch; returns its directory."""
    SiteBuilder(hub).build(progress, only=changed)
    return hub.settings.site_dir
