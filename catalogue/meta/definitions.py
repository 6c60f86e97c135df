"""Declarative dataset and publisher definitions (datasets/), checked and synced."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from sqlalchemy import select

from catalogue.errors import DatasetExists, DefinitionError, SchemaError
from catalogue.hub import Hub
from catalogue.meta.licenses import license_info
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
    for path in sorted((root / "definitions").glob("*.yaml")):
        where = f"definitions/{path.name}"
        before = len(problems)
        doc = _load_yaml(path, where, problems)
        if len(problems) > before:
            continue
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
