"""Convention guards: import direction, documented settings, error codes, definitions, plugin registry."""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from catalogue.meta.definitions import load_definitions
from catalogue.errors import DefinitionError, UnknownPlugin, UrbandataError
from catalogue.registry import load_registry
from catalogue.settings import PROJECT_ROOT, Settings

FORBIDDEN = {
    "catalogue": {"fastapi", "starlette", "httpx", "uvicorn", "typer", "api", "harvesters"},
    "harvesters": {"fastapi", "starlette", "uvicorn", "typer", "api"},
    "api": set(),
}
KEBAB = re.compile(r"^[a-z]+(-[a-z]+)*$")


def imported_roots(path: Path) -> set[str]:
    """Top-level package names a module imports (absolute imports; relative ones stay inside the package)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_imports_point_inwards() -> None:
    wrong = []
    for package, forbidden in FORBIDDEN.items():
        files = sorted((PROJECT_ROOT / package).rglob("*.py"))
        assert files, package
        for path in files:
            bad = imported_roots(path) & forbidden
            wrong += [f"{path.relative_to(PROJECT_ROOT)} imports {name}" for name in sorted(bad)]
    assert wrong == []


# Rooms of the kernel that may not import others (ARCHITECTURE.md): reading never writes,
# metadata knows neither the read nor the write path.
ROOM_RULES = {
    "query": {"catalogue.ingest", "catalogue.sitegen"},
    "sql": {"catalogue.ingest", "catalogue.sitegen"},
    "meta": {"catalogue.ingest", "catalogue.query", "catalogue.sql", "catalogue.sitegen"},
    "schema": {"catalogue.ingest", "catalogue.query", "catalogue.sql", "catalogue.sitegen", "catalogue.meta"},
    "store": {"catalogue.ingest", "catalogue.query", "catalogue.sql", "catalogue.sitegen"},
}


def imported_modules(path: Path) -> set[str]:
    """Dotted names of every absolute import in a module (``from a.b import c`` gives ``a.b`` and ``a.b.c``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_kernel_rooms_import_only_downwards() -> None:
    wrong = []
    for room, forbidden in ROOM_RULES.items():
        files = sorted((PROJECT_ROOT / "catalogue" / room).rglob("*.py"))
        assert files, room
        for path in files:
            for name in sorted(imported_modules(path)):
                if any(name == f or name.startswith(f + ".") for f in forbidden):
                    wrong.append(f"{path.relative_to(PROJECT_ROOT)} imports {name}")
    assert wrong == []


def test_the_read_path_loads_no_write_path_module() -> None:
    code = ("import sys, catalogue.query.engine, catalogue.query.records, catalogue.query.exports, "
            "catalogue.sql.runner; print(sorted(m for m in sys.modules if m.startswith('catalogue.ingest') "
            "or m.split('.')[0] == 'frictionless'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PROJECT_ROOT)
    assert out.stdout.strip() == "[]"


def test_the_import_walk_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os.path\nfrom . import x\n\ndef f():\n    from fastapi import FastAPI\n"
                      "    import httpx as h\n")
    assert imported_roots(module) == {"os", "fastapi", "httpx"}


def test_every_setting_is_documented() -> None:
    undocumented = [name for name, field in Settings.model_fields.items() if not (field.description or "").strip()]
    assert undocumented == []
    assert Settings.model_config["env_prefix"] == "URBANDATA_"


def error_classes() -> list[type[UrbandataError]]:
    """Every UrbandataError subclass our packages define (all their modules imported)."""
    for package in FORBIDDEN:
        for info in pkgutil.walk_packages([str(PROJECT_ROOT / package)], prefix=f"{package}."):
            importlib.import_module(info.name)
    found, todo = [], [UrbandataError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return [c for c in found if c.__module__.split(".")[0] in FORBIDDEN]


def test_every_error_has_a_unique_kebab_case_code_and_an_int_status() -> None:
    classes = error_classes()
    assert len(classes) >= 10
    problems = [c.__name__ for c in classes if not KEBAB.fullmatch(c.code) or type(c.status) is not int
                or not 400 <= c.status < 600 or "code" not in vars(c)]
    assert problems == []
    codes = [c.code for c in classes]
    assert sorted(codes) == sorted(set(codes))


def test_errors_are_declared_in_one_hierarchy() -> None:
    assert [f"{c.__module__}.{c.__name__}" for c in error_classes() if c.__module__ != "catalogue.errors"] == []


def test_bundled_definitions_load() -> None:
    found = load_definitions(PROJECT_ROOT / "datasets")
    assert len(found.publishers) >= 4 and len(found.datasets) >= 6
    publishers = {p["name"] for p in found.publishers}
    assert all(d["publisher"] in publishers and d["schema"]["fields"] for d in found.datasets)


def _definition(**changes: object) -> dict[str, object]:
    doc = yaml.safe_load((PROJECT_ROOT / "datasets" / "definitions" / "car-parks.yaml").read_text(encoding="utf-8"))
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def test_every_problem_in_broken_definitions_is_reported_at_once(tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    shutil.copytree(PROJECT_ROOT / "datasets" / "schemas", root / "schemas")
    shutil.copy(PROJECT_ROOT / "datasets" / "publishers.yaml", root / "publishers.yaml")
    unsupported = {"fields": [{"name": "id", "type": "string"}, {"name": "span", "type": "duration"}]}
    broken = {
        "unknown-key": _definition(name="unknown-key", colour="red"),
        "no-title": _definition(name="no-title", title=None),
        "bad-licence": _definition(name="bad-licence", license="https://licences.example/mine"),
        "bad-type": _definition(name="bad-type", schema=unsupported),
        "no-publisher": _definition(name="no-publisher", publisher="nobody"),
    }
    (root / "definitions").mkdir()
    for name, doc in {**broken, "car-parks": _definition()}.items():  # one good definition among the broken ones
        (root / "definitions" / f"{name}.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")

    with pytest.raises(DefinitionError) as caught:
        load_definitions(root)

    licences = ", ".join(f"http://dcat-ap.de/def/licenses/{n}" for n in ("cc-by/4.0", "cc-zero", "dl-by-de/2.0",
                                                                          "dl-zero-de/2.0"))
    problems = [
        f"definitions/bad-licence.yaml: Unknown licence 'https://licences.example/mine'. Known licences: {licences}.",
        "definitions/bad-type.yaml: Field 'span' has type 'duration', which the hub cannot store yet. Use one of: "
        "boolean, date, datetime, geojson, geopoint, integer, number, string, time, year.",
        "definitions/no-publisher.yaml: publisher 'nobody' is not in publishers.yaml.",
        "definitions/no-title.yaml, at (top level): 'title' is a required property",
        "definitions/unknown-key.yaml, at (top level): Additional properties are not allowed ('colour' was unexpected)",
    ]
    error = caught.value
    assert (error.code, error.status, error.details) == ("invalid-definition", 422, {"problems": problems})
    assert error.message == "5 problem(s) in the dataset definitions:\n- " + "\n- ".join(problems)
    assert str(tmp_path) not in error.message  # messages never carry file-system paths


def test_the_registry_knows_the_built_ins_and_lists_them_on_a_miss() -> None:
    registry = load_registry()
    assert {seam: registry.names(seam) for seam in ("harvesters", "storage", "exporters")} == {
        "harvesters": ["http-file"], "storage": ["local"], "exporters": ["datapackage"]}
    from catalogue.query.exporters import DataPackageExporter
    from catalogue.store.storage import LocalStorage
    from harvesters.http_file import HttpFileHarvester

    assert (registry.get("harvesters", "http-file"), registry.get("storage", "local"),
            registry.get("exporters", "datapackage")) == (HttpFileHarvester, LocalStorage, DataPackageExporter)
    with pytest.raises(UnknownPlugin) as caught:
        registry.get("storage", "s3")
    assert (caught.value.code, caught.value.message) == (
        "unknown-plugin", "No storage plugin named 's3'. Known storage plugins: local.")
    with pytest.raises(UnknownPlugin, match=r"Known harvesters plugins: http-file\.$"):
        registry.get("harvesters", "ftp")


def test_ui_translations_have_the_same_keys() -> None:
    i18n = PROJECT_ROOT / "site" / "i18n"
    de, en = (json.loads((i18n / f"{lang}.json").read_text(encoding="utf-8")) for lang in ("de", "en"))
    assert sorted(set(de) ^ set(en)) == []
    assert [k for k in de if not de[k].strip() or not en[k].strip()] == []
