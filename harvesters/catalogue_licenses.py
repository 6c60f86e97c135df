"""The licence of a remote dataset as one of the hub's licence IRIs (catalogue/meta/licenses.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from catalogue.errors import DefinitionError
from catalogue.meta.licenses import LICENSES

if TYPE_CHECKING:
    from harvesters.catalogue_sources import CatalogueSpec

# Our licence vocabulary (catalogue/meta/licenses.py) under the ids CKAN portals and DCAT catalogues use.
LICENSE_ALIASES = {
    "dl-by-de/2.0": "http://dcat-ap.de/def/licenses/dl-by-de/2.0",
    "dl-de-by-2.0": "http://dcat-ap.de/def/licenses/dl-by-de/2.0",
    "dl-de/by-2-0": "http://dcat-ap.de/def/licenses/dl-by-de/2.0",
    "dl-zero-de/2.0": "http://dcat-ap.de/def/licenses/dl-zero-de/2.0",
    "dl-de-zero-2.0": "http://dcat-ap.de/def/licenses/dl-zero-de/2.0",
    "dl-de/zero-2-0": "http://dcat-ap.de/def/licenses/dl-zero-de/2.0",
    "cc-by-4.0": "http://dcat-ap.de/def/licenses/cc-by/4.0",
    "cc-by/4.0": "http://dcat-ap.de/def/licenses/cc-by/4.0",
    "cc-zero": "http://dcat-ap.de/def/licenses/cc-zero",
    "cc0-1.0": "http://dcat-ap.de/def/licenses/cc-zero",
    "cc0": "http://dcat-ap.de/def/licenses/cc-zero",
    "http://creativecommons.org/publicdomain/zero/1.0/": "http://dcat-ap.de/def/licenses/cc-zero",
    "http://creativecommons.org/licenses/by/4.0/": "http://dcat-ap.de/def/licenses/cc-by/4.0",
}


def map_license(remote: str, catalogue: CatalogueSpec, dataset: str) -> str:
    """The licence IRI of ours for the remote id, IRI or URL ``remote``; DefinitionError when there is none."""
    given = {k.lower(): v for k, v in catalogue.options.get("licenses", {}).items()}
    key = remote.strip().lower().replace("https://", "http://")
    for known in (given, {k.lower(): k for k in LICENSES}, LICENSE_ALIASES,
                  {v["url"].lower().replace("https://", "http://"): k for k, v in LICENSES.items()}):
        if key in known and known[key] in LICENSES:
            return str(known[key])
    raise DefinitionError(
        f"Dataset '{dataset}' of catalogue '{catalogue.name}' has the licence '{remote or '(none)'}', which is not "
        f"in the hub's licence vocabulary ({', '.join(sorted(LICENSES))}). Map it in the catalogue's options "
        f"(licenses: {{'{remote or '...'}': <one of these IRIs>}}) if it is one of them; it was not harvested.",
        details={"catalogue": catalogue.name, "dataset": dataset, "license": remote},
    )
