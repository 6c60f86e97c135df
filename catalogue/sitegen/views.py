"""Template contexts of the site's pages: a dataset (D), one of its versions (V), a publisher (P).

Paths of API links are relative to the API base (``/datasets/...``): each page prefixes
them with its ``api`` (the setting ``site_api_base_url``, or a path relative to the page).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from catalogue.meta.licenses import license_info
from catalogue.meta.models import Dataset, HarvestJob, Organization, Version
from catalogue.meta.schema_org import schema_org_dataset
from catalogue.meta.vocabularies import FREQUENCIES, THEMES, label
from catalogue.schema.model import Field
from catalogue.sitegen import citation
from catalogue.sitegen.api_examples import examples
from catalogue.sitegen.data_files import chart_fields, download_options
from catalogue.sitegen.rich_text import markdown, plain_excerpt

CARD_EXCERPT = 200
# How old the newest version may get under each declared update frequency before it is overdue.
EXPECTED_AGE = {
    "CONT": timedelta(days=1), "HOURLY": timedelta(days=1), "DAILY": timedelta(days=2),
    "WEEKLY": timedelta(days=14), "MONTHLY": timedelta(days=62), "QUARTERLY": timedelta(days=184),
    "ANNUAL": timedelta(days=731),
}


def number(n: int, lang: str) -> str:
    """``1.234.567`` (German) or ``1,234,567`` (English), as the templates' ``num`` macro writes it."""
    return f"{n:,}".replace(",", "." if lang == "de" else ",")


def human_bytes(size: int, lang: str) -> str:
    """``12,3 kB`` (German) or ``12.3 kB`` (English)."""
    value, unit = float(size), "B"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            break
        value /= 1000
    text = f"{value:.0f}" if unit == "B" else f"{value:.1f}"
    return (text.replace(".", ",") if lang == "de" else text) + f" {unit}"


def when(moment: datetime | None) -> str | None:
    """``2026-12-05 01:00 UTC``."""
    if moment is None:
        return None
    return _utc(moment).strftime("%Y-%m-%d %H:%M UTC")


def _utc(moment: datetime) -> datetime:
    return (moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment).astimezone(timezone.utc)


def _constraints_text(field: Field) -> str:
    parts = []
    for key, value in field.constraints.items():
        parts.append(key if value is True else f"{key}: {', '.join(map(str, value)) if isinstance(value, list) else value}")
    return "; ".join(parts)


def _localised(obj: Any, field: str, lang: str) -> str:
    english = getattr(obj, f"{field}_en", None)
    return str(english if lang == "en" and english else getattr(obj, field) or "")


def freshness(d: Dataset, now: datetime) -> str:
    """``current``, ``overdue`` or ``unknown`` (no version, or a frequency without an expected age)."""
    expected = EXPECTED_AGE.get(d.update_frequency)
    if expected is None or d.current_version is None:
        return "unknown"
    return "overdue" if now - _utc(d.modified_at) > expected else "current"


def publisher_view(org: Organization, dataset_count: int) -> dict[str, Any]:
    """Template context P for one publisher."""
    return {
        "name": org.name, "title": org.title, "title_en": org.title_en, "description": org.description,
        "description_en": org.description_en, "homepage": org.homepage, "email": org.email,
        "dataset_count": dataset_count,
    }


def card_view(d: Dataset, lang: str) -> dict[str, Any]:
    """What a dataset card and the search index show of ``d``."""
    lic = license_info(d.license)
    current = d.current_version
    return {
        "name": d.name, "title": d.title, "title_en": d.title_en,
        "description": d.description, "description_en": d.description_en,
        "excerpt": plain_excerpt(_localised(d, "description", lang), CARD_EXCERPT),
        "keywords": list(d.keywords),
        "themes": [{"code": c, "label": label(THEMES, c, lang)} for c in d.themes],
        "publisher": {"name": d.publisher.name, "title": d.publisher.title, "title_en": d.publisher.title_en},
        "license": {"iri": lic["iri"], "title": lic["title"], "short": lic["short"], "url": lic["url"]},
        "current_version": current.number if current else None,
        "row_count": current.row_count if current else None,
        "modified": when(d.modified_at) if current else None,
    }


def entry_card(entry: dict[str, Any], publishers: dict[str, tuple[str, str]], lang: str) -> dict[str, Any]:
    """What a dataset card shows, from the dataset's search-index entry (``SiteBuilder._search_entry``) and its
    publisher's (German, English) title: the listings re-render from the entries the last build kept, with no
    dataset read from the catalogue; the fields match ``card_view``'s where the card template reads them, and
    what the template would compute per card comes ready (a theme's query value, the row count's text)."""
    doc = entry["doc"]
    title, title_en = publishers[doc["publisher"]]
    return {
        "name": doc["name"], "title": doc["title"], "title_en": doc["title_en"],
        "excerpt": doc["excerpt_en"] if lang == "en" else doc["excerpt"],
        "themes": [{"code": c, "label": label(THEMES, c, lang), "query": quote(c, safe="/")} for c in doc["themes"]],
        "publisher": {"name": doc["publisher"], "title": title, "title_en": title_en},
        "license": {"short": doc["license"]},
        "current_version": doc["version"], "row_count": entry["rows"], "modified": doc["modified"],
        "rows_text": None if entry["rows"] is None else number(entry["rows"], lang),
    }


def dataset_view(d: Dataset, versions: list[Version], lang: str, *, api_url: str, public_url: str,
                 facts: dict[str, Any] | None, last_job: HarvestJob | None, now: datetime,
                 formats: list[str], has_parquet_copy: bool,
                 older_sizes: dict[int, dict[str, int]] | None = None) -> dict[str, Any]:
    """Template context D for one dataset's page in one language.

    ``older_sizes``: download sizes of older versions (by number) measured while each was current.
    """
    schema = d.schema
    has_geometry = bool(schema.geometry_fields)
    current = d.current_version
    view = card_view(d, lang)
    sizes = (facts or {}).get("sizes", {})
    view.update({
        "description_html": markdown(_localised(d, "description", lang)),
        "contact": dict(d.contact) if d.contact else None,
        "update_frequency": label(FREQUENCIES, d.update_frequency, lang),
        "freshness": freshness(d, now),
        "spatial_bbox": d.spatial.get("bbox"),
        "temporal": {"start": d.temporal_start.isoformat() if d.temporal_start else None,
                     "end": d.temporal_end.isoformat() if d.temporal_end else None},
        "primary_key": list(schema.primary_key),
        "schema_fields": [
            {"name": f.name, "type": f.type, "title": f.title or "", "description": f.description or "",
             "format": "" if f.format == "default" else f.format, "constraints": _constraints_text(f)}
            for f in schema.fields
        ],
        "has_geometry": has_geometry,
        "is_timeseries": chart_fields(schema) is not None,
        "versions": [{**version_view(d.name, v, lang, formats,
                                     sizes if current is not None and v.number == current.number
                                     else (older_sizes or {}).get(v.number, {}),
                                     (facts or {}).get("package_zip") if current is not None
                                     and v.number == current.number else None),
                      "citation": cite(d, v, public_url, api_url)} for v in versions],
        "validation": _validation(current, last_job),
        "preview": (facts or {}).get("preview"),
        "has_map": bool((facts or {}).get("map")), "has_chart": bool((facts or {}).get("chart")),
        "parquet_copy": f"data/{d.name}/v{current.number}.parquet" if current and has_parquet_copy else None,
        "examples": examples(api_url, d.name, current.number, has_geometry) if current else [],
        "citation": cite(d, current, public_url, api_url) if current else None,
        "schema_org": schema_org_dataset(d, current, api_url=api_url, formats=formats, page_url=(
            f"{public_url.rstrip('/')}/{'' if lang == 'de' else 'en/'}datasets/{d.name}.html")),
    })
    return view


def _validation(current: Version | None, job: HarvestJob | None) -> dict[str, Any]:
    """The current version passed validation (nothing invalid is published); the last delivery may not have."""
    last = None
    if job is not None and job.dataset is not None and (current is None or job.version_number != current.number):
        last = {"status": job.status, "at": when(job.finished_at or job.started_at), "message": job.message,
                "report": f"/datasets/{job.dataset.name}/deliveries/{job.id}/report" if job.report_key else None}
    return {"current_valid": current is not None, "last_delivery": last}


def version_view(name: str, v: Version, lang: str, formats: list[str],
                 sizes: dict[str, int], package_zip: int | None = None) -> dict[str, Any]:
    """Template context V for one version (in the versions table and on its own page).

    ``package_zip``: the size of the Data Package zip the build wrote into the site (current version only);
    without it the zip is the API's. Which sizes are shown: see ``catalogue.sitegen.data_files``.
    """
    downloads = []
    for key, text, path in download_options(formats, name, v.number, v.schema):
        size, site, approx = sizes.get(key), False, False
        if size is None and key == "parquet" and len(v.parts) == 1:
            size = int(v.bytes)  # a one-part version's Parquet export is its part
        if key == "zip":
            if package_zip is not None:
                size, site, path = package_zip, True, f"data/{name}/{name}-v{v.number}.zip"
            else:
                size, approx = int(v.bytes), True  # the API zips the stored parts uncompressed, plus the descriptor
        if key == "csv-de":
            text = "CSV (deutsches Format: ; und Dezimalkomma)" if lang == "de" else "CSV (German style: ; and decimal comma)"
        downloads.append({"key": key, "label": text, "path": path, "site": site,
                          "size": None if size is None else ("≈ " if approx else "") + human_bytes(size, lang)})
    changes = None
    if v.number > 1:
        changes = {k: int(v.changes.get(k, 0)) for k in ("added", "removed", "changed")}
        changes["schema_changed"] = bool(v.changes.get("schema_changed"))
    return {
        "number": v.number, "created_at": when(v.created_at), "row_count": v.row_count,
        "bytes_human": human_bytes(v.bytes, lang), "sha256": v.content_hash,
        "changes": changes,
        "diff_path": f"/datasets/{name}/diff?from={v.number - 1}&to={v.number}" if v.number > 1 else None,
        "page": f"datasets/{name}/v{v.number}.html",
        "downloads": downloads,
    }


def cite(d: Dataset, v: Version, public_url: str, api_url: str) -> dict[str, str]:
    """The version's citation as plain text, BibTeX and RIS."""
    base = api_url if api_url.startswith(("http://", "https://")) else public_url.rstrip("/") + api_url
    created = _utc(v.created_at)
    cited = citation.Cited(
        dataset=d.name, title=d.title, publisher=d.publisher.title, year=created.year, version=v.number,
        sha256=v.content_hash, url=f"{base}/datasets/{d.name}/versions/{v.number}",
        licence=license_info(d.license)["short"], date=created.strftime("%Y-%m-%d"))
    return {"plain": citation.plain(cited), "bibtex": citation.bibtex(cited), "ris": citation.ris(cited)}
