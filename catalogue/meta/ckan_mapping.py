"""The catalogue as CKAN sees it: datasets as packages, distributions as resources, publishers as
organisations, themes as groups (the dicts of CKAN's Action API, version 3).

Names are the ids: a package's ``id`` is the dataset's name, an organisation's the publisher's, a
group's the lower-case theme code (``tran``), as GovData names them. A version's resources are its
downloads, one per export format; the CSV one is the DataStore table (``datastore_active``), whose
id ``<dataset>@<version>`` is also the table's name in ``datastore_search_sql`` (the SQL endpoint's
view of that version). The other resources are ``<dataset>@<version>.<format>``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from catalogue.errors import NotFound
from catalogue.meta.downloads import serves
from catalogue.meta.licenses import LICENSES, license_info
from catalogue.meta.models import Dataset, Organization, Version
from catalogue.meta.vocabularies import FREQUENCIES, FREQUENCY_IRI, THEME_IRI, THEMES, label

DATASTORE_FORMAT = "csv"
FORMAT_LABELS = {"csv": "CSV", "json": "JSON", "ndjson": "NDJSON", "geojson": "GeoJSON", "parquet": "Parquet",
                 "xlsx": "XLSX"}
RESOURCE_ID = re.compile(r"^(?P<name>[^@]+)@(?P<number>[0-9]{1,18})(?:\.(?P<fmt>[a-z0-9]+))?$")


@dataclass(frozen=True)
class Links:
    """Where the hub serves what a CKAN dict links to."""

    public_url: str  # the hub's root, no trailing slash
    api_prefix: str  # /api/v1
    formats: tuple[tuple[str, str], ...]  # (name, media type) of every export format, in listing order

    def export_url(self, name: str, number: int, fmt: str) -> str:
        return f"{self.public_url}{self.api_prefix}/datasets/{name}/exports/{fmt}?version={number}"


@dataclass(frozen=True)
class ResourceRef:
    """A resource id taken apart: the dataset, the version and the export format."""

    name: str
    number: int
    fmt: str

    @property
    def id(self) -> str:
        return resource_id(self.name, self.number, self.fmt)


def resource_id(name: str, number: int, fmt: str) -> str:
    """The id of version ``number``'s ``fmt`` download of dataset ``name``."""
    return f"{name}@{number}" if fmt == DATASTORE_FORMAT else f"{name}@{number}.{fmt}"


def parse_resource_id(text: str) -> ResourceRef:
    """The parts of a resource id; NotFound when ``text`` has not the shape of one."""
    found = RESOURCE_ID.match(text)
    if found is None:
        raise NotFound(f"Resource not found: '{text}'. Resource ids are <dataset>@<version> (the data table) "
                           "or <dataset>@<version>.<format>; package_show lists them.")
    return ResourceRef(found["name"], int(found["number"]), found["fmt"] or DATASTORE_FORMAT)


def ckan_time(moment: datetime | None) -> str | None:
    """A timestamp as CKAN writes it: UTC, ISO 8601 without an offset."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat()


def group_name(theme: str) -> str:
    """The CKAN group name of a data theme code."""
    return theme.lower()


def theme_of_group(name: str) -> str:
    """The data theme code of a CKAN group name; NotFound for a name that is no theme."""
    code = name.upper()
    if code not in THEMES:
        raise NotFound(f"Group not found: '{name}'. Groups are the EU data themes: "
                           f"{', '.join(sorted(group_name(t) for t in THEMES))}.")
    return code


def group_dict(theme: str, package_count: int | None = None) -> dict[str, Any]:
    """A data theme as a CKAN group."""
    title = label(THEMES, theme, "de")
    found: dict[str, Any] = {
        "id": group_name(theme), "name": group_name(theme), "title": title, "display_name": title,
        "description": label(THEMES, theme, "en"), "image_display_url": "", "image_url": "",
        "is_organization": False, "type": "group", "state": "active", "approval_status": "approved",
        "url": THEME_IRI + theme,
    }
    if package_count is not None:
        found["package_count"] = package_count
    return found


def organization_dict(org: Organization, package_count: int | None = None) -> dict[str, Any]:
    """A publisher as a CKAN organisation."""
    found: dict[str, Any] = {
        "id": org.name, "name": org.name, "title": org.title, "display_name": org.title,
        "description": org.description, "image_url": "", "image_display_url": "", "is_organization": True,
        "type": "organization", "state": "active", "approval_status": "approved",
        "extras": [{"key": "homepage", "value": org.homepage}, {"key": "email", "value": org.email},
                   {"key": "title_en", "value": org.title_en}],
    }
    if package_count is not None:
        found["package_count"] = package_count
    return found


def license_dict(iri: str) -> dict[str, Any]:
    """A licence as CKAN's license_list lists it (the DCAT-AP.de IRI is the id, as on GovData)."""
    info = license_info(iri)
    return {"id": iri, "title": info["title"], "url": info["url"], "short_name": info["short"],
            "status": "active", "maintainer": "", "family": "", "is_generic": False,
            "od_conformance": "approved", "osd_conformance": "not reviewed", "domain_content": True,
            "domain_data": True, "domain_software": False}


def license_list() -> list[dict[str, Any]]:
    """Every licence the hub knows."""
    return [license_dict(iri) for iri in LICENSES]


def formats_of(version: Version, links: Links) -> list[tuple[str, str]]:
    """The export formats (name, media type) ``version`` is downloadable in (catalogue.meta.downloads' rule)."""
    schema = version.schema
    return [(f, m) for f, m in links.formats if serves(f, schema)]


def resource_dicts(dataset: Dataset, version: Version, links: Links) -> list[dict[str, Any]]:
    """One version's downloads as CKAN resources."""
    out = []
    for position, (fmt, media_type) in enumerate(formats_of(version, links)):
        shown = FORMAT_LABELS.get(fmt, fmt.upper())
        out.append({
            "id": resource_id(dataset.name, version.number, fmt), "package_id": dataset.name,
            "name": f"{dataset.title} ({shown}, Version {version.number})",
            "description": f"Version {version.number} als {shown}: {version.row_count} Zeilen.",
            "format": shown, "mimetype": media_type, "url": links.export_url(dataset.name, version.number, fmt),
            "size": None, "hash": "",  # the download is written on request: no file hash to give beforehand
            "created": ckan_time(version.created_at), "last_modified": ckan_time(version.created_at),
            "metadata_modified": ckan_time(version.created_at),
            "datastore_active": fmt == DATASTORE_FORMAT, "position": position, "state": "active",
            "url_type": None, "resource_type": None, "cache_url": None, "mimetype_inner": None,
            "version": version.number, "row_count": version.row_count, "license": dataset.license,
        })
    return out


def _bbox_geometry(spatial: dict[str, Any]) -> dict[str, Any] | None:
    """The dataset's spatial extent as a GeoJSON geometry (ckanext-spatial's ``spatial`` extra)."""
    if "bbox" in spatial:
        west, south, east, north = spatial["bbox"]
        return {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north], [west, north],
                                                     [west, south]]]}
    if "type" in spatial and "coordinates" in spatial:
        return spatial
    return None


def _extras(dataset: Dataset) -> list[dict[str, str]]:
    extras = {
        "title_en": dataset.title_en, "notes_en": dataset.description_en,
        "frequency": FREQUENCY_IRI + dataset.update_frequency if dataset.update_frequency in FREQUENCIES else "",
        "temporal_start": dataset.temporal_start.isoformat() if dataset.temporal_start else "",
        "temporal_end": dataset.temporal_end.isoformat() if dataset.temporal_end else "",
        "theme": json.dumps([THEME_IRI + t for t in dataset.themes]),
        "contact_name": str(dataset.contact.get("name", "")),
    }
    geometry = _bbox_geometry(dict(dataset.spatial))
    if geometry is not None:
        extras["spatial"] = json.dumps(geometry)
    return [{"key": k, "value": v} for k, v in extras.items() if v]


def package_dict(dataset: Dataset, links: Links) -> dict[str, Any]:
    """A dataset as a CKAN package, with its current version's resources."""
    current = dataset.current_version
    license = license_info(dataset.license)
    resources = resource_dicts(dataset, current, links) if current is not None else []
    tags = [{"name": k, "display_name": k, "id": k, "state": "active", "vocabulary_id": None}
            for k in dataset.keywords]
    return {
        "id": dataset.name, "name": dataset.name, "title": dataset.title, "notes": dataset.description,
        "type": "dataset", "state": "active", "private": bool(dataset.private), "isopen": True,
        "license_id": dataset.license, "license_title": license["title"], "license_url": license["url"],
        "author": dataset.publisher.title, "author_email": dataset.publisher.email or None,
        "maintainer": dataset.contact.get("name") or None, "maintainer_email": dataset.contact.get("email") or None,
        "url": f"{links.public_url}/datasets/{dataset.name}.html",
        "version": str(current.number) if current is not None else None,
        "metadata_created": ckan_time(dataset.created_at), "metadata_modified": ckan_time(dataset.modified_at),
        "owner_org": dataset.publisher.name, "organization": organization_dict(dataset.publisher),
        "tags": tags, "num_tags": len(tags),
        "groups": [group_dict(t) for t in dataset.themes],
        "resources": resources, "num_resources": len(resources),
        "extras": _extras(dataset),
        "relationships_as_object": [], "relationships_as_subject": [],
    }
