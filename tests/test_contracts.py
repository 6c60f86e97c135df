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


# Where the store's files are is the storage seam's business (catalogue/store/); the setting that names the
# directory is declared in settings.py and read only by the local backend.
STORE_DIR_READERS = {"catalogue/settings.py"}


def _uri_like(node: ast.AST) -> bool:
    """Whether an expression is (or contains) an engine URI: a call of ``engine_uri`` or a name saying uri(s)."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.func.attr == "engine_uri":
            return True
        name = sub.id if isinstance(sub, ast.Name) else sub.attr if isinstance(sub, ast.Attribute) else ""
        if re.search(r"(^|_)uris?$", name):
            return True
    return False


def storage_leaks(path: Path, relative: str) -> list[str]:
    """Where a module outside the storage seam reads the store directory or makes a local path of an engine URI."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if relative not in STORE_DIR_READERS and (
                (isinstance(node, ast.Attribute) and node.attr == "store_dir")
                or (isinstance(node, ast.Name) and node.id == "store_dir")):
            found.append((node.lineno, "reads store_dir"))
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if called in ("Path", "PurePath", "PosixPath") and any(_uri_like(a) for a in node.args):
                found.append((node.lineno, "makes a Path of an engine URI"))
    return [f"{relative}:{line} {what}" for line, what in sorted(found)]


def test_only_the_storage_seam_knows_where_files_are() -> None:
    """No module outside catalogue/store/ reads store_dir or turns an engine URI into a local path.

    An object-store backend would break both: a caller asks the seam (``local_path``, ``open_read``,
    ``engine_root``) instead.
    """
    leaks = []
    for package in ("catalogue", "harvesters", "api"):
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            relative = path.relative_to(PROJECT_ROOT).as_posix()
            if not relative.startswith("catalogue/store/"):
                leaks += storage_leaks(path, relative)
    assert leaks == []


def test_the_storage_leak_scan_sees_both_leaks(tmp_path: Path) -> None:
    module = tmp_path / "leaky.py"
    module.write_text("from pathlib import Path\n"
                      "def f(hub, ref):\n"
                      "    a = hub.settings.store_dir / 'x'\n"
                      "    b = Path(hub.storage.engine_uri('k'))\n"
                      "    return a, b, Path(ref.uris[0]), Path('fine')\n", encoding="utf-8")
    assert storage_leaks(module, "catalogue/query/leaky.py") == [
        "catalogue/query/leaky.py:3 reads store_dir", "catalogue/query/leaky.py:4 makes a Path of an engine URI",
        "catalogue/query/leaky.py:5 makes a Path of an engine URI"]


def test_shared_scratch_tables_are_named_in_one_place() -> None:
    """The DuckDB tables ingest modules share are spelled only in catalogue/ingest/tables.py."""
    from catalogue.ingest import tables

    shared = {tables.TYPED, tables.ERRRAW, tables.NEW}
    spelled = []
    for path in sorted((PROJECT_ROOT / "catalogue").rglob("*.py")):
        if path == Path(tables.__file__):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                words = set(re.findall(r"__[a-z]+", node.value))
                spelled += [f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {w}" for w in sorted(words & shared)]
    assert spelled == []


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
    assert all(d["publisher"] in publishers and d["schema"].fields for d in found.datasets)


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
    seams = ("harvesters", "storage", "metadata_exporters", "export_formats")
    assert {seam: registry.names(seam) for seam in seams} == {
        "harvesters": ["ckan", "database", "dcat", "http-file", "mqtt", "ogc-features"], "storage": ["local", "s3"], "metadata_exporters": ["datapackage"],
        "export_formats": ["csv", "geojson", "json", "ndjson", "parquet", "xlsx"]}
    from catalogue.query.formats.files import ParquetFormat, XlsxFormat
    from catalogue.query.formats.text import CsvFormat, GeojsonFormat, JsonFormat, NdjsonFormat
    from catalogue.query.metadata_exporters import DataPackageExporter
    from catalogue.store.storage import LocalStorage
    from harvesters.ckan import CkanHarvester
    from harvesters.dcat import DcatHarvester
    from harvesters.http_file import HttpFileHarvester

    assert (registry.get("harvesters", "ckan"), registry.get("harvesters", "dcat")) == (CkanHarvester, DcatHarvester)
    assert (registry.get("harvesters", "http-file"), registry.get("storage", "local"),
            registry.get("metadata_exporters", "datapackage")) == (HttpFileHarvester, LocalStorage, DataPackageExporter)
    formats = [registry.get("export_formats", name) for name in ("csv", "json", "ndjson", "geojson", "parquet", "xlsx")]
    assert formats == [CsvFormat, JsonFormat, NdjsonFormat, GeojsonFormat, ParquetFormat, XlsxFormat]
    assert [(f.name, f.extension, f.media_type) for f in formats] == [
        ("csv", "csv", "text/csv; charset=utf-8"), ("json", "json", "application/json"),
        ("ndjson", "ndjson", "application/x-ndjson"), ("geojson", "geojson", "application/geo+json"),
        ("parquet", "parquet", "application/vnd.apache.parquet"),
        ("xlsx", "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")]
    with pytest.raises(UnknownPlugin) as caught:
        registry.get("storage", "gcs")
    assert (caught.value.code, caught.value.message) == (
        "unknown-plugin", "No storage plugin named 'gcs'. Known storage plugins: local, s3.")
    with pytest.raises(UnknownPlugin, match=r"Known harvesters plugins: ckan, database, dcat, http-file, mqtt, ogc-features\.$"):
        registry.get("harvesters", "ftp")


def test_an_export_format_registered_by_hand_is_served_and_listed(tmp_path: Path) -> None:
    """A third-party format needs no edit of the kernel: registered, it is exported and named on a miss."""
    from catalogue.hub import open_hub
    from catalogue.query.engine import QueryEngine, VersionRef
    from catalogue.schema.model import TableSchema
    from catalogue.query.exports import export_version
    from catalogue.query.formats.base import ExportRows, RowFormat
    from catalogue.query.records import RecordsRequest

    class TsvFormat(RowFormat):
        name, media_type, extension, order = "tsv", "text/tab-separated-values", "tsv", 70

        def write(self, rows: ExportRows) -> list[bytes]:  # type: ignore[override]
            names = b"\t".join(n.encode() for n, _ in rows.columns)
            lines = [row.values() for batch in rows.batches(rows.reader("*")) for row in batch.to_pylist()]
            return [names + b"\n"] + [b"\t".join(str(v).encode() for v in line) + b"\n" for line in lines]

    registry = load_registry()
    registry.register("export_formats", "tsv", TsvFormat)
    hub = open_hub(Settings(data_dir=tmp_path), registry)
    part = "datasets/t/parts/a.parquet"
    scratch = hub.storage.new_scratch_file(".parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": [1, 2], "label": ["a", "b"]}), scratch)
    hub.storage.publish_file(part, scratch)
    schema = {"fields": [{"name": "id", "type": "integer"}, {"name": "label", "type": "string"}]}
    ref = VersionRef("t", 1, (hub.storage.engine_uri(part),), TableSchema.from_stored(schema), 2, "h", (part,))
    engine = QueryEngine(hub)
    try:
        assert b"".join(export_version(hub, engine, ref, "tsv", RecordsRequest())) == b"id\tlabel\n1\ta\n2\tb\n"
        with pytest.raises(UrbandataError) as caught:
            export_version(hub, engine, ref, "xml", RecordsRequest())
        assert caught.value.message == ("Unknown export format 'xml'. "
                                        "Use one of: csv, json, ndjson, geojson, parquet, xlsx, tsv.")
    finally:
        engine.close()


def test_ui_translations_have_the_same_keys() -> None:
    i18n = PROJECT_ROOT / "site" / "i18n"
    de, en = (json.loads((i18n / f"{lang}.json").read_text(encoding="utf-8")) for lang in ("de", "en"))
    assert sorted(set(de) ^ set(en)) == []
    assert [k for k in de if not de[k].strip() or not en[k].strip()] == []


def test_test_modules_have_unique_basenames() -> None:
    """tests/ holds no packages: pytest imports each test module by its basename, so two folders with a
    test_x.py each make the second one fail to collect."""
    names: dict[str, list[str]] = {}
    for path in sorted((PROJECT_ROOT / "tests").rglob("test_*.py")):
        names.setdefault(path.name, []).append(str(path.relative_to(PROJECT_ROOT)))
    assert {name: paths for name, paths in names.items() if len(paths) > 1} == {}
