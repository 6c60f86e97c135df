"""Catalogue source definitions: ``catalogues/<name>.yaml`` in the definitions directory, checked.

A catalogue source is not a dataset (it yields many), so it has a file format of its own beside
``definitions/``; each file becomes one ``CatalogueSpec``. Every problem in every file is
collected into one DefinitionError, as ``urbandata validate`` does for dataset definitions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

from catalogue.errors import DefinitionError
from harvesters.catalogue_sources import CatalogueSpec

_TEXTS = {"oneOf": [{"type": "string", "minLength": 1},
                    {"type": "array", "items": {"type": "string", "minLength": 1}}]}
CATALOGUE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "type", "url"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{1,99}$"},
        "type": {"enum": ["ckan", "dcat"]},
        "url": {"type": "string", "pattern": "^https?://"},
        "options": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "prefix": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
                "publisher": {"type": "string"},
                "licenses": {"type": "object", "additionalProperties": {"type": "string", "pattern": "^https?://"}},
                "formats": {"type": "array", "items": {"enum": ["csv", "geojson", "json"]}, "minItems": 1},
                "csv": {"type": "object", "additionalProperties": False, "properties": {
                    "delimiter": {"type": "string", "minLength": 1, "maxLength": 1},
                    "encoding": {"type": "string"}, "quote_char": {"type": "string", "minLength": 1, "maxLength": 1},
                    "newlines_in_values": {"type": "boolean"}}},
                "organization": _TEXTS,
                "tags": _TEXTS,
                "rows": {"type": "integer", "minimum": 1, "maximum": 1000},
                "rdf_format": {"enum": ["turtle", "xml", "json-ld"]},
                "max_pages": {"type": "integer", "minimum": 1},
            },
        },
    },
}
CKAN_ONLY, DCAT_ONLY = {"organization", "tags", "rows"}, {"rdf_format", "max_pages"}


def load_catalogues(root: Path) -> list[CatalogueSpec]:
    """Every catalogue source defined in ``root/catalogues/*.yaml`` (none when the folder is missing)."""
    validator = jsonschema.Draft202012Validator(CATALOGUE_SCHEMA)
    problems: list[str] = []
    found = []
    for path in sorted((root / "catalogues").glob("*.yaml")):
        where = f"catalogues/{path.name}"
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            problems.append(f"{where} is not valid YAML: {exc}")
            continue
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        problems += [f"{where}, at {'/'.join(map(str, e.path)) or '(top level)'}: {e.message}" for e in errors]
        if errors or not isinstance(doc, dict):
            continue
        if doc["name"] != path.stem:
            problems.append(f"{where}: name '{doc['name']}' must equal the file name '{path.stem}'.")
            continue
        options = doc.get("options", {})
        wrong = sorted(options.keys() & (DCAT_ONLY if doc["type"] == "ckan" else CKAN_ONLY))
        if wrong:
            problems.append(f"{where}: option(s) {', '.join(wrong)} do not apply to a {doc['type']} source.")
            continue
        found.append(CatalogueSpec(name=doc["name"], type=doc["type"], url=doc["url"], options=options))
    if problems:
        raise DefinitionError(f"{len(problems)} problem(s) in the catalogue definitions:\n- " + "\n- ".join(problems),
                              details={"problems": problems})
    return found
