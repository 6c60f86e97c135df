"""Licences the hub knows, by their DCAT-AP.de IRI."""

from __future__ import annotations

from catalogue.errors import DefinitionError

LICENSES = {
    "http://dcat-ap.de/def/licenses/dl-by-de/2.0": {
        "short": "dl-de/by-2-0",
        "title": "Datenlizenz Deutschland – Namensnennung – Version 2.0",
        "url": "https://www.govdata.de/dl-de/by-2-0",
    },
    "http://dcat-ap.de/def/licenses/dl-zero-de/2.0": {
        "short": "dl-de/zero-2-0",
        "title": "Datenlizenz Deutschland – Zero – Version 2.0",
        "url": "https://www.govdata.de/dl-de/zero-2-0",
    },
    "http://dcat-ap.de/def/licenses/cc-by/4.0": {
        "short": "CC-BY-4.0",
        "title": "Creative Commons Namensnennung – 4.0 International (CC BY 4.0)",
        "url": "https://creativecommons.org/licenses/by/4.0/",
    },
    "http://dcat-ap.de/def/licenses/cc-zero": {
        "short": "CC0-1.0",
        "title": "Creative Commons CC Zero License (CC0 1.0)",
        "url": "https://creativecommons.org/publicdomain/zero/1.0/",
    },
}


def license_info(iri: str) -> dict[str, str]:
    """Short name, title and human-readable URL of the licence ``iri``."""
    if iri not in LICENSES:
        raise DefinitionError(f"Unknown licence '{iri}'. Known licences: {', '.join(sorted(LICENSES))}.")
    return {"iri": iri, **LICENSES[iri]}
