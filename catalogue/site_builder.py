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

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from catalogue.hub import Hub
from catalogue.licenses import license_info
from catalogue.metadata import list_publishers, list_versions
from catalogue.models import Dataset, Organization, Version
from catalogue.table_schema import geometry_fields, primary_key
from catalogue.vocabularies import FREQUENCIES, THEMES, label

LANGS = ("de", "en")


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


def _constraints_text(field: dict[str, Any]) -> str:
    parts = []
    for key, value in field.get("constraints", {}).items():
        parts.append(key if value is True else f"{key}: {', '.join(map(str, value)) if isinstance(value, list) else value}")
    return "; ".join(parts)


class SiteBuilder:
    """Renders every page of the catalogue into ``settings.site_dir``."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.settings = hub.settings
        templates = self.settings.site_templates_dir
        self.env = Environment(
            loader=FileSystemLoader(templates / "templates"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )
        self.texts = {lang: json.loads((templates / "i18n" / f"{lang}.json").read_text(encoding="utf-8")) for lang in LANGS}
        self.generated_at = _when(datetime.now(timezone.utc))
        self.api = self.settings.api_prefix

    def build(self, progress: Callable[[str], None] | None = None, only: Collection[str] | None = None) -> int:
        """Render all pages; returns the number of pages written.

        With ``only`` (dataset names), re-render just those datasets' pages, their
        publishers' pages and the index pages; the page of a named dataset that no
        longer exists is removed. A dataset moved to another publisher needs a full
        build (its former publisher's page is not re-rendered).
        """
        out = self.settings.site_dir
        out.mkdir(parents=True, exist_ok=True)
        if only is None:
            static = self.settings.site_templates_dir / "static"
            shutil.copytree(static, out / "static", dirs_exist_ok=True)
        pages = 0
        with self.hub.sessions() as session:
            datasets = list(session.scalars(
                select(Dataset).order_by(Dataset.name)
                .options(selectinload(Dataset.publisher), selectinload(Dataset.current_version))
            ))
            publishers = list_publishers(session)
            changed = datasets if only is None else [d for d in datasets if d.name in set(only)]
            if only is not None:
                for gone in set(only) - {d.name for d in datasets}:
                    for lang in LANGS:
                        (out / ("" if lang == "de" else "en/") / "datasets" / f"{gone}.html").unlink(missing_ok=True)
            touched = {d.publisher_id for d in changed}
            versions = {d.id: list_versions(session, d) for d in changed}
            counts = Counter(d.publisher_id for d in datasets)
            for lang in LANGS:
                # Index cards and publisher pages show no version list: other datasets' views skip it.
                views = {d.name: self.dataset_view(d, versions.get(d.id, []), lang) for d in datasets}
                pub_views = [self.publisher_view(p, counts[p.id]) for p in publishers]
                self._write(lang, "index.html", "index.html", datasets=list(views.values()), publishers=pub_views)
                # Served for any missing path, so its links must not depend on where it is shown.
                self._write(lang, "404.html", "error.html", absolute=True, status=404, message="")
                pages += 2
                for d in changed:
                    self._write(lang, f"datasets/{d.name}.html", "dataset.html", d=views[d.name])
                    pages += 1
                    if progress:
                        progress(d.name)
                own: dict[int, list[dict[str, Any]]] = {}
                for d in datasets:
                    own.setdefault(d.publisher_id, []).append(views[d.name])
                for p, view in zip(publishers, pub_views):
                    if only is None or p.id in touched:
                        self._write(lang, f"publishers/{p.name}.html", "publisher.html", p=view, datasets=own.get(p.id, []))
                        pages += 1
        return pages

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
            return texts[key]

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
        schema = d.table_schema
        has_geometry = bool(geometry_fields(schema))
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
            "primary_key": primary_key(schema),
            "schema_fields": [
                {"name": f["name"], "type": f.get("type", "string"), "title": f.get("title", ""),
                 "description": f.get("description", ""), "format": f.get("format", "") if f.get("format") != "default" else "",
                 "constraints": _constraints_text(f)}
                for f in schema["fields"]
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
