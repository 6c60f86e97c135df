"""Declarative dataset and publisher definitions (datasets/), checked and synced; catalogue source definitions checked.

A catalogue source (``catalogues/<name>.yaml``: a CKAN portal or a DCAT catalogue, harvested into many
datasets by ``harvesters.catalogue_sources``) is checked here as far as the kernel can: its keys, its
URLs, its options, its publisher and licences (``check_catalogue_definitions``). Its schedule is
parsed by ``harvesters.catalogue_definitions``, which makes the sources of it.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import yaml
from sqlalchemy import select

from catalogue.errors import DatasetExists, DefinitionError, SchemaError
from catalogue.hub import Hub
from catalogue.meta.licenses import LICENSES, license_info
from catalogue.meta.models import Dataset, HarvestSource, Organization
from catalogue.schema.model import TableSchema

PUBLISHER_KEYS = {"name", "title", "title_en", "description", "description_en", "homepage", "email"}
ENV_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")


@dataclass
class Definitions:
    """Every publisher and dataset definition found in a definitions directory."""

    publishers: list[dict[str, Any]]
    datasets: list[dict[str, Any]]


@cache
def definition_json_schema() -> dict[str, Any]:
    """The JSON Schema every dataset definition must satisfy."""
    schema: dict[str, Any] = json.loads((Path(__file__).parent / "definition.schema.json").read_text())
    return schema


def _yaml_files(root: Path, folder: str, problems: list[str]) -> Iterator[tuple[Path, str, Any]]:
    """Each ``folder/*.yaml`` under ``root`` that reads as YAML: (path, where, document), by name; a file that
    does not read adds its problem to ``problems`` and is left out."""
    for path in sorted((root / folder).glob("*.yaml")):
        where = f"{folder}/{path.name}"
        before = len(problems)
        doc = _load_yaml(path, where, problems)
        if len(problems) == before:
            yield path, where, doc


def _load_yaml(path: Path, where: str, problems: list[str]) -> Any:
    """The YAML document at ``path``, or None with the problem noted (so every file is still checked)."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        problems.append(f"{where} is not valid YAML: {exc}")
        return None


def load_definitions(root: Path) -> Definitions:
    """Read and check publishers.yaml, definitions/*.yaml and their Table Schemas.

    Collects every problem and raises one DefinitionError listing them all.
    """
    if not root.is_dir():
        raise DefinitionError(
            f"The definitions directory {root} does not exist; give the folder holding publishers.yaml and definitions/."
        )
    problems: list[str] = []
    publishers_doc = None
    if not (root / "publishers.yaml").is_file():
        problems.append(f"publishers.yaml is missing in {root}; list the publishers there under 'publishers:'.")
    else:
        publishers_doc = _load_yaml(root / "publishers.yaml", "publishers.yaml", problems)
        if not problems and not (isinstance(publishers_doc, dict) and publishers_doc.get("publishers")):
            problems.append("publishers.yaml: no publishers; list them under 'publishers:'.")
    publishers = publishers_doc.get("publishers", []) if isinstance(publishers_doc, dict) else []
    if not (root / "definitions").is_dir():
        problems.append(f"the folder definitions/ is missing in {root}; put one <name>.yaml per dataset there.")
    for number, pub in enumerate(publishers, start=1):
        missing = {"name", "title"} - set(pub)
        unknown = set(pub) - PUBLISHER_KEYS
        if missing or unknown:
            problems.append(f"publishers.yaml, publisher {number}: missing {sorted(missing)}, unknown {sorted(unknown)}.")
    publisher_names = {p.get("name") for p in publishers}
    validator = jsonschema.Draft202012Validator(definition_json_schema(), format_checker=jsonschema.FormatChecker())
    datasets = []
    for path, where, doc in _yaml_files(root, "definitions", problems):
        found = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        for error in found:
            at = "/".join(str(p) for p in error.path) or "(top level)"
            problems.append(f"{where}, at {at}: {error.message}")
        if not isinstance(doc, dict):
            continue
        # Every check that can run on what is there runs now, so one round of fixes is enough.
        if isinstance(doc.get("name"), str) and doc["name"] != path.stem:
            problems.append(f"{where}: name '{doc['name']}' must equal the file name '{path.stem}'.")
        if isinstance(doc.get("publisher"), str) and doc["publisher"] not in publisher_names:
            problems.append(f"{where}: publisher '{doc['publisher']}' is not in publishers.yaml.")
        if isinstance(doc.get("license"), str):
            try:
                license_info(doc["license"])
            except DefinitionError as exc:
                problems.append(f"{where}: {exc.message}")
        if isinstance(doc.get("schema"), (str, dict)):
            try:
                doc["schema"] = _load_schema(root, doc["schema"])
            except (DefinitionError, SchemaError) as exc:
                problems += [f"{where}: {message}" for message in exc.details.get("problems", [exc.message])]
        if not found:
            datasets.append(doc)
    if problems:
        raise DefinitionError(
            f"{len(problems)} problem(s) in the dataset definitions:\n- " + "\n- ".join(problems),
            details={"problems": problems},
        )
    return Definitions(publishers=publishers, datasets=datasets)


def _load_schema(root: Path, schema: str | dict[str, Any]) -> TableSchema:
    """The definition's Table Schema (inline or a file beside it), checked and parsed once."""
    if isinstance(schema, str):
        path = (root / schema).resolve()
        if root.resolve() not in path.parents or not path.is_file():
            raise DefinitionError(f"schema file '{schema}' does not exist inside the definitions directory.")
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DefinitionError(f"schema file '{path.name}' is not valid JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise DefinitionError(f"schema file '{path.name}' must hold a JSON object (a Table Schema).")
        return TableSchema.parse(loaded)
    return TableSchema.parse(schema)


def expand_env(value: str) -> str:
    """Replace ``${VAR}`` with the environment variable's value (credentials stay out of files)."""
    def _sub(match: re.Match[str]) -> str:
        if match.group(1) not in os.environ:
            raise DefinitionError(f"Environment variable {match.group(1)} is referenced but not set.")
        return os.environ[match.group(1)]

    return ENV_VAR.sub(_sub, value)


def _as_date(value: str | date | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)


def sync_definitions(hub: Hub, definitions: Definitions) -> None:
    """Create or update publishers, datasets and harvest sources from ``definitions``.

    Published versions are never touched: a changed schema applies to the next delivery.
    """
    with hub.sessions.begin() as session:
        orgs = {o.name: o for o in session.scalars(select(Organization))}
        for pub in definitions.publishers:
            org = orgs.get(pub["name"]) or Organization(name=pub["name"])
            for key in PUBLISHER_KEYS - {"name"}:
                setattr(org, key, pub.get(key) or "")
            session.add(org)
            orgs[org.name] = org
        session.flush()
        existing = {d.name: d for d in session.scalars(select(Dataset))}
        sources = {s.name: s for s in session.scalars(select(HarvestSource))}
        for doc in definitions.datasets:
            dataset = existing.get(doc["name"]) or Dataset(name=doc["name"])
            _apply(dataset, doc, orgs[doc["publisher"]])
            session.add(dataset)
            session.flush()
            if "source" in doc:
                src = doc["source"]
                source = sources.get(doc["name"]) or HarvestSource(name=doc["name"])
                source.dataset_id = dataset.id
                source.type = src["type"]
                source.url = src["url"]
                source.format = src["format"]
                source.mode = src.get("mode", "replace")
                source.options = src.get("options", {})
                source.schedule = src.get("schedule")
                session.add(source)


def _apply(dataset: Dataset, doc: dict[str, Any], publisher: Organization) -> None:
    """Set ``dataset``'s metadata from a checked definition (its ``schema`` parsed)."""
    dataset.title = doc["title"]
    dataset.title_en = doc.get("title_en", "")
    dataset.description = doc["description"].strip()
    dataset.description_en = doc.get("description_en", "").strip()
    dataset.keywords = doc.get("keywords", [])
    dataset.themes = doc.get("themes", [])
    dataset.license = doc["license"]
    dataset.publisher = publisher
    dataset.contact = doc.get("contact", {})
    dataset.update_frequency = doc.get("update_frequency", "UNKNOWN")
    dataset.spatial = doc.get("spatial", {})
    dataset.temporal_start = _as_date(doc.get("temporal", {}).get("start"))
    dataset.temporal_end = _as_date(doc.get("temporal", {}).get("end"))
    dataset.table_schema = doc["schema"].descriptor  # the database keeps the JSON as written
    if "private" in doc:  # a definition that says nothing leaves the flag as it is
        dataset.private = doc["private"]


def check_definition(doc: Any) -> dict[str, Any]:
    """One dataset definition sent as JSON (the API's), checked like a file in definitions/: its schema parsed.

    The schema must be inline; a source cannot be set this way. Raises one DefinitionError listing every problem.
    """
    validator = jsonschema.Draft202012Validator(definition_json_schema(), format_checker=jsonschema.FormatChecker())
    problems = [f"at {'/'.join(str(p) for p in e.path) or '(top level)'}: {e.message}"
                for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.path))]
    if isinstance(doc, dict):
        if "source" in doc:
            problems.append("'source' cannot be set through the API: a pushed dataset's deliveries come by push.")
        if isinstance(doc.get("schema"), str):
            problems.append("'schema' must be the Table Schema itself (a JSON object), not a file name.")
        if isinstance(doc.get("license"), str):
            try:
                license_info(doc["license"])
            except DefinitionError as exc:
                problems.append(exc.message)
        if isinstance(doc.get("schema"), dict):
            try:
                doc = {**doc, "schema": TableSchema.parse(doc["schema"])}
            except (DefinitionError, SchemaError) as exc:
                problems += exc.details.get("problems", [exc.message])
    if problems:
        raise DefinitionError(f"{len(problems)} problem(s) in the dataset definition:\n- " + "\n- ".join(problems),
                              details={"problems": problems})
    return dict(doc)


def create_dataset(hub: Hub, doc: dict[str, Any]) -> str:
    """Create the dataset of a checked definition (``check_definition``); DatasetExists if the name is taken."""
    with hub.sessions.begin() as session:
        if session.scalar(select(Dataset.id).where(Dataset.name == doc["name"])) is not None:
            raise DatasetExists(f"A dataset named '{doc['name']}' exists already; choose another name "
                                "(its metadata changes through its definition).", details={"name": doc["name"]})
        publisher = session.scalar(select(Organization).where(Organization.name == doc["publisher"]))
        if publisher is None:
            raise DefinitionError(f"There is no publisher named '{doc['publisher']}'.")
        dataset = Dataset(name=doc["name"])
        _apply(dataset, doc, publisher)
        session.add(dataset)
    return str(doc["name"])


# What each key of a catalogue source definition holds: the hint an error about it gives.
CATALOGUE_KEYS = {
    "name": "the catalogue source's name: lowercase letters, digits and '-', 2 to 100 characters, equal to the "
            "file name without .yaml",
    "type": "the kind of catalogue: ckan (a CKAN portal) or dcat (a DCAT-AP catalogue)",
    "url": "where the catalogue is, an http(s) URL: a CKAN portal's base URL (without /api/3), or a DCAT "
           "catalogue's first page",
    "schedule": "when `urbandata harvest-catalogue --due` harvests it: an interval (15m, 6h, 1d) or a cron "
                "expression of five fields (0 3 * * *); without one, only on request",
    "options": "how its datasets become ours (prefix, publisher, licenses, formats, csv, and the type's own)",
}
CATALOGUE_OPTIONS = {
    "prefix": "put before every dataset name: lowercase letters, digits and '-' (gd-)",
    "publisher": "a publisher from publishers.yaml for every dataset",
    "licenses": "remote licence id or IRI → one of the hub's licence IRIs",
    "formats": "the resource formats to ingest, in order of preference: csv, geojson, json",
    "csv": "reader options for CSV resources: delimiter, encoding, quote_char, newlines_in_values",
    "organization": "(ckan) one organisation name, or a list",
    "tags": "(ckan) one tag, or a list",
    "rows": "(ckan) packages per page, 1 to 1000",
    "rdf_format": "(dcat) turtle, xml or json-ld",
    "max_pages": "(dcat) the most pages to follow, 1 or more",
}
CSV_OPTIONS = {"delimiter": "one character", "encoding": "a text encoding (utf-8, cp1252)",
               "quote_char": "one character", "newlines_in_values": "true or false"}
CATALOGUE_TYPES = {"ckan": {"organization", "tags", "rows"}, "dcat": {"rdf_format", "max_pages"}}
_TEXTS = {"oneOf": [{"type": "string", "minLength": 1},
                    {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}]}
CATALOGUE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "type", "url"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{1,99}$"},
        "type": {"enum": sorted(CATALOGUE_TYPES)},
        "url": {"type": "string"},  # checked by _url_problem, which says more than a pattern could
        "schedule": {"type": "string", "minLength": 1},
        "options": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "prefix": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
                "publisher": {"type": "string", "minLength": 1},
                "licenses": {"type": "object", "additionalProperties": {"type": "string"}},
                "formats": {"type": "array", "items": {"enum": ["csv", "geojson", "json"]}, "minItems": 1,
                            "uniqueItems": True},
                "csv": {"type": "object", "additionalProperties": False, "properties": {
                    "delimiter": {"type": "string", "minLength": 1, "maxLength": 1},
                    "encoding": {"type": "string", "minLength": 1},
                    "quote_char": {"type": "string", "minLength": 1, "maxLength": 1},
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


def check_catalogue_definitions(root: Path, publishers: Collection[str] | None = None,
                                schedule_problem: Callable[[str], str | None] | None = None,
                                ) -> tuple[list[dict[str, Any]], list[str]]:
    """Every catalogue source definition in ``root/catalogues/*.yaml`` that passed, and every problem found.

    Each problem names the file and the key, says what is wrong and how to fix it. ``publishers``: the
    names in publishers.yaml, which a ``publisher`` option must be one of (None: not checked here).
    ``schedule_problem``: why a schedule does not parse, or None (the harvesters' parser; None: not checked
    here). A missing ``catalogues/`` folder holds no definitions.
    """
    validator = jsonschema.Draft202012Validator(CATALOGUE_SCHEMA)
    problems: list[str] = []
    found = []
    for path, where, doc in _yaml_files(root, "catalogues", problems):
        before = len(problems)
        if not isinstance(doc, dict):
            problems.append(f"{where}: it must be a mapping of keys ({', '.join(CATALOGUE_KEYS)}), not "
                            f"{_kind(doc)}; see datasets/README.md, 'Catalogue sources'.")
            continue
        problems += [f"{where}, {_catalogue_error(error)}"
                     for error in sorted(validator.iter_errors(doc), key=lambda e: (list(map(str, e.path)), e.message))]
        problems += [f"{where}, {problem}" for problem in _catalogue_values(doc, path.stem, publishers)]
        wrong = schedule_problem(doc["schedule"]) if schedule_problem and isinstance(doc.get("schedule"), str) else None
        if wrong:
            problems.append(f"{where}, at schedule: {wrong}")
        if len(problems) == before:
            found.append(doc)
    return found, problems


def _catalogue_error(error: jsonschema.ValidationError) -> str:
    """A schema error as 'at <key>: what is wrong; how to fix it'."""
    path = [str(p) for p in error.path]
    at = "at " + ("/".join(path) or "(top level)")
    inside = path[-1] if path else ""
    known = CSV_OPTIONS if path == ["options", "csv"] else CATALOGUE_OPTIONS if path == ["options"] else (
        CATALOGUE_KEYS if not path else {})
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        unknown = sorted(k for k in error.instance if str(k) not in known)
        said = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            said.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        return (f"{at}: unknown key {', '.join(said)}; remove it or use one of the keys allowed here: "
                f"{', '.join(known)}.")
    if error.validator == "required":
        missing = str(error.message).split("'")[1]
        return f"{at}: the key '{missing}' is missing; add it: {CATALOGUE_KEYS.get(missing, missing)}."
    hint = CATALOGUE_KEYS.get(inside) if len(path) == 1 else (
        CATALOGUE_OPTIONS.get(path[1]) if len(path) >= 2 and path[0] == "options" else None)
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value) if isinstance(error.validator_value, list) else ""
        return f"{at}: {error.instance!r} is not one of {allowed}; use one of these."
    if error.validator == "pattern":
        return f"{at}: {error.instance!r} is not allowed; it must be {hint or error.validator_value}."
    return f"{at}: {error.message}; it must be {hint}." if hint else f"{at}: {error.message}."


def _catalogue_values(doc: dict[str, Any], stem: str, publishers: Collection[str] | None) -> list[str]:
    """What the schema cannot say: the name against the file, the URL, the options of the wrong type, the
    publisher and the licences."""
    problems = []
    if isinstance(doc.get("name"), str) and doc["name"] != stem:
        problems.append(f"at name: '{doc['name']}' must equal the file name '{stem}'; rename the file or the "
                        "catalogue source.")
    if isinstance(doc.get("url"), str):
        wrong = _url_problem(doc["url"])
        if wrong:
            problems.append(f"at url: {doc['url']!r} {wrong}; give {CATALOGUE_KEYS['url'].split(', ', 1)[1]}.")
    options = doc.get("options")
    if not isinstance(options, dict):
        return problems
    if doc.get("type") in CATALOGUE_TYPES:
        for key in sorted(options.keys() & set().union(*CATALOGUE_TYPES.values()) - CATALOGUE_TYPES[doc["type"]]):
            problems.append(f"at options/{key}: the option does not apply to a {doc['type']} source; remove it "
                            f"(it is an option of {next(t for t, o in CATALOGUE_TYPES.items() if key in o)} sources).")
    if publishers is not None and isinstance(options.get("publisher"), str) and options["publisher"] not in publishers:
        problems.append(f"at options/publisher: '{options['publisher']}' is not in publishers.yaml; add it there "
                        f"or name one of: {', '.join(sorted(publishers)) or 'none'}.")
    if isinstance(options.get("licenses"), dict):
        for remote, ours in options["licenses"].items():
            if isinstance(ours, str) and ours not in LICENSES:
                problems.append(f"at options/licenses/{remote}: '{ours}' is not one of the hub's licences; map it "
                                f"to one of: {', '.join(sorted(LICENSES))}.")
    return problems


def _url_problem(url: str) -> str | None:
    """Why ``url`` is no usable http(s) URL, or None."""
    if url != url.strip() or any(c.isspace() for c in url):
        return "holds spaces"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number or out of range
    except ValueError as exc:
        return f"is no URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"is no http(s) URL (its scheme is '{parts.scheme or 'missing'}')"
    if not parts.hostname:
        return "names no host"
    return None


def _kind(doc: Any) -> str:
    return "an empty file" if doc is None else f"a {type(doc).__name__}"


def publisher_names(root: Path) -> set[str] | None:
    """The publishers named in ``root/publishers.yaml``; None when it cannot be read (``load_definitions`` says why)."""
    try:
        doc = yaml.safe_load((root / "publishers.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    listed = doc.get("publishers") if isinstance(doc, dict) else None
    if not isinstance(listed, list):
        return None
    return {str(p["name"]) for p in listed if isinstance(p, dict) and "name" in p}
