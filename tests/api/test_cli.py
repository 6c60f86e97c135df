"""The command line through typer's CliRunner, plus one smoke test of the real demo server in a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path

import httpx
import pytest
import typer
from sqlalchemy import text
from typer.testing import CliRunner, Result

from api.cli import app
from api.feed_server import FeedServer
from tests.conftest import stored
from tests.production_backend import own_backend
from catalogue.meta.db import BASELINE, create_catalogue_engine, head_revision, upgrade_schema
from catalogue.settings import Settings

DATASETS = ["car-parks", "city-districts", "egovernment-services", "groundwater-levels", "parking-occupancy",
            "waste-bin-fill-levels"]


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def test_validate_lists_every_dataset() -> None:
    result = run("validate")
    assert result.exit_code == 0, result.output
    fields = {"car-parks": 8, "city-districts": 5, "egovernment-services": 8, "groundwater-levels": 5,
              "parking-occupancy": 6, "waste-bin-fill-levels": 11}
    assert result.stdout.splitlines() == [f"  ok  {name}  ({count} fields)" for name, count in fields.items()] + [
        "6 dataset definitions and 4 publishers are valid."]


def test_validate_fails_on_a_broken_definitions_directory(tmp_path: Path) -> None:
    (tmp_path / "definitions").mkdir()
    (tmp_path / "publishers.yaml").write_text("publishers: []\n", encoding="utf-8")
    result = run("validate", "--definitions", str(tmp_path))
    assert (result.exit_code, result.stdout) == (1, "")
    assert "publishers.yaml: no publishers; list them under 'publishers:'." in flat(result.stderr)


@pytest.mark.embedded_only("checks the SQLite file in the data directory")
def test_init_creates_the_catalogue(tmp_path: Path) -> None:
    result = run("init", "-d", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert flat(result.stdout) == f"Catalogue in {tmp_path.resolve()}: 4 publishers, 6 datasets."
    assert (tmp_path / "catalogue.sqlite").is_file()
    before = run("versions", "car-parks", "-d", str(tmp_path))
    assert (before.exit_code, before.stdout) == (0, "car-parks: no version published yet.\n")


def test_harvest_all_then_versions_and_build_site(tmp_path: Path, feed_server: FeedServer) -> None:
    assert run("init", "-d", str(tmp_path)).exit_code == 0
    result = run("harvest", "--all", "--feed-base-url", feed_server.url, "-d", str(tmp_path))
    assert result.exit_code == 0, result.output
    rows = {"car-parks": 6, "city-districts": 6, "egovernment-services": 16, "groundwater-levels": 150,
            "parking-occupancy": 576, "waste-bin-fill-levels": 40}
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    summary = lines.index("Harvest summary")
    assert lines[:summary] == [f"published  {n}: published version 1 ({r} rows; +{r} −0 ~0)" for n, r in rows.items()]
    table = [[cell.strip() for cell in line.split("│")[2:7]] for line in lines[summary:] if "│ published │" in line]
    assert table == [["published", "1", str(r), "0", "0"] for r in rows.values()]  # status, version, +, −, ~
    assert flat(result.stdout).endswith(f"6 published Site built in {(tmp_path / 'site').resolve()}")

    again = run("harvest", "car-parks", "--feed-base-url", feed_server.url, "-d", str(tmp_path))
    assert again.exit_code == 0
    # The feed server answers If-Modified-Since: one request, HTTP 304, no version and no site rebuild.
    assert flat(again.stdout).startswith("unchanged car-parks: source unchanged (HTTP 304) Harvest summary")
    assert "Site built" not in again.stdout

    versions = run("versions", "car-parks", "-d", str(tmp_path))
    assert versions.exit_code == 0, versions.output
    table_rows = [line for line in versions.stdout.splitlines() if re.match(r"│ \d", line)]
    assert len(table_rows) == 1
    assert re.fullmatch(r"│ 1 +│ \d{4}-\d\d-\d\d +│ 6 +│ \d+ +│ 6 +│ 0 +│ 0 +│ [0-9a-f]{9}… +│", table_rows[0])

    built = run("build-site", "-d", str(tmp_path))
    assert (built.exit_code, flat(built.stdout)) == (0, f"Site built in {(tmp_path / 'site').resolve()}")
    for page in ("index.html", "en/index.html", "datasets/car-parks.html", "en/publishers/stadtwerke.html"):
        assert (tmp_path / "site" / page).is_file(), page


def test_harvest_exits_1_when_a_source_fails(tmp_path: Path, feed_dir: Path, feed_server: FeedServer) -> None:
    (feed_dir / "feeds" / "car-parks.geojson").unlink()
    assert run("init", "-d", str(tmp_path)).exit_code == 0
    result = run("harvest", "--all", "--feed-base-url", feed_server.url, "-d", str(tmp_path))
    assert result.exit_code == 1
    url = f"{feed_server.url}feeds/car-parks.geojson"
    assert f"failed car-parks: Source 'car-parks' answered HTTP 404 for {url}." in flat(result.stdout)
    assert flat(result.stdout).count("published version 1") == 5


def test_versions_of_an_unknown_dataset(tmp_path: Path) -> None:
    assert run("init", "-d", str(tmp_path)).exit_code == 0
    result = run("versions", "unknown", "-d", str(tmp_path))
    assert (result.exit_code, result.stdout) == (1, "")
    assert "There is no dataset named 'unknown'. The list of datasets is at /api/v1/datasets." in flat(result.stderr)


def test_error_output_keeps_the_error_code(tmp_path: Path) -> None:
    assert run("init", "-d", str(tmp_path)).exit_code == 0
    assert "[dataset-not-found]" in run("versions", "unknown", "-d", str(tmp_path)).stderr


@pytest.mark.parametrize("args", [["harvest"], ["harvest", "car-parks", "--all"]])
def test_harvest_needs_a_name_or_all(tmp_path: Path, args: list[str]) -> None:
    result = run(*args, "-d", str(tmp_path))
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", "Give a source name, --all or --due (one of them).\n")


def test_every_command_has_help() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert {"init", "validate", "harvest", "build-site", "versions", "serve", "demo"} <= set(commands)
    for name, command in commands.items():
        result = run(name, "--help")
        assert result.exit_code == 0, (name, result.output)
        assert flat(result.stdout).startswith(f"Usage: root {name} [OPTIONS]")
        assert flat(command.help.splitlines()[0]) in flat(result.stdout), name
    overview = run("--help")
    assert overview.exit_code == 0 and all(name in overview.stdout for name in commands)


def test_settings_lists_every_environment_variable_in_full() -> None:
    result = run("settings")
    assert result.exit_code == 0
    assert [n for n in Settings.model_fields if f"URBANDATA_{n.upper()}" not in result.stdout] == []


def test_version() -> None:
    result = run("--version")
    assert (result.exit_code, result.stdout) == (0, f"urbandata {package_version('urbandata')}\n")


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("command", ["demo", "serve"])
def test_a_taken_port_fails_first_and_names_the_option(tmp_path: Path, taken_port: int, command: str) -> None:
    if command == "serve":
        assert run("init", "-d", str(tmp_path)).exit_code == 0
    result = run(command, "--port", str(taken_port), "-d", str(tmp_path / "var" if command == "demo" else tmp_path))
    assert (result.exit_code, result.stdout) == (1, "")
    assert flat(result.stderr).startswith(f"error [port-in-use] Port {taken_port} on 127.0.0.1 is not free")
    assert f"Choose another with --port, e.g. --port {taken_port + 1}." in flat(result.stderr)
    assert not (tmp_path / "var").exists()  # nothing harvested, nothing built


@pytest.mark.embedded_only("a mistyped --data-dir has no catalogue only where the catalogue is a file in it (SQLite)")
@pytest.mark.parametrize("args", [["harvest", "--all"], ["versions", "car-parks"], ["build-site"], ["gc"], ["serve"],
                                  ["db", "upgrade"], ["db", "current"]])
def test_commands_that_need_a_catalogue_do_not_make_an_empty_one(tmp_path: Path, args: list[str]) -> None:
    typo = tmp_path / "vra"
    result = run(*args, "-d", str(typo))
    assert (result.exit_code, result.stdout) == (1, "")
    assert flat(result.stderr) == (
        f"error [catalogue-not-found] There is no catalogue in {typo.resolve()}. Create one with `urbandata init` "
        "(or run `urbandata demo` for the demo city), or give the right --data-dir.")
    assert not typo.exists()


def test_validate_names_a_missing_definitions_directory(tmp_path: Path) -> None:
    result = run("validate", "--definitions", str(tmp_path / "no" / "such"))
    assert (result.exit_code, result.stdout) == (1, "")
    assert flat(result.stderr) == (
        f"error [invalid-definition] The definitions directory {tmp_path / 'no' / 'such'} does not exist; "
        "give the folder holding publishers.yaml and definitions/.")


def test_validate_reports_every_problem_at_once(tmp_path: Path) -> None:
    (tmp_path / "definitions").mkdir()
    (tmp_path / "publishers.yaml").write_text("publishers: [{name: amt, title: Amt}]\n", encoding="utf-8")
    (tmp_path / "definitions" / "broken.yaml").write_text("name: [unclosed\n", encoding="utf-8")
    (tmp_path / "definitions" / "lots.yaml").write_text(
        "name: other\ntitle: Lots\ndescription: x\npublisher: nobody\n"
        "license: http://dcat-ap.de/def/licenses/dl-zero-de/2.0\nschema: schemas/missing.json\n", encoding="utf-8")
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "odd.json").write_text(json.dumps({"fields": [
        {"name": "span", "type": "duration"}, {"name": "at", "type": "date", "format": "%Q"},
        {"name": "where", "type": "array"}]}), encoding="utf-8")
    (tmp_path / "schemas" / "frictionless-says.json").write_text(json.dumps({
        "fields": [{"name": "at", "type": "date"}], "primaryKey": ["id"]}), encoding="utf-8")
    (tmp_path / "definitions" / "frictionless-says.yaml").write_text(
        "name: frictionless-says\ntitle: F\ndescription: x\npublisher: amt\n"
        "license: http://dcat-ap.de/def/licenses/dl-zero-de/2.0\nschema: schemas/frictionless-says.json\n",
        encoding="utf-8")
    (tmp_path / "definitions" / "odd.yaml").write_text(
        "name: odd\ntitle: Odd\ndescription: x\npublisher: amt\n"
        "license: http://dcat-ap.de/def/licenses/dl-zero-de/2.0\nschema: schemas/odd.json\n", encoding="utf-8")
    result = run("validate", "--definitions", str(tmp_path))
    assert (result.exit_code, result.stdout) == (1, "")
    problems = flat(result.stderr).split(" - ")
    stored = "Use one of: boolean, date, datetime, geojson, geopoint, integer, number, string, time, year."
    assert problems[0] == "error [invalid-definition] 8 problem(s) in the dataset definitions:"
    assert problems[1].startswith("definitions/broken.yaml is not valid YAML: ")
    assert problems[7].startswith("definitions/odd.yaml: Field 'at' has the format '%Q': ")
    assert problems[2:7] + problems[8:] == [
        "definitions/frictionless-says.yaml: The Table Schema is invalid: Schema is not valid: "
        "primary key \"['id']\" does not match the fields \"['at']\"",
        "definitions/lots.yaml: name 'other' must equal the file name 'lots'.",
        "definitions/lots.yaml: publisher 'nobody' is not in publishers.yaml.",
        "definitions/lots.yaml: schema file 'schemas/missing.json' does not exist inside the definitions directory.",
        f"definitions/odd.yaml: Field 'span' has type 'duration', which the hub cannot store yet. {stored}",
        f"definitions/odd.yaml: Field 'where' has type 'array', which the hub cannot store yet. {stored}",
    ]


def test_feed_base_url_help_says_it_wants_the_server_root() -> None:
    result = run("harvest", "--help")
    assert "Root URL of the feed server that relative source URLs (like feeds/car-parks.geojson) resolve against: " \
           "http://127.0.0.1:8001/, not the feeds/ folder under it." in flat(result.stdout).replace("│ ", "").replace(" │", "")


def test_validate_and_settings_take_data_dir(tmp_path: Path) -> None:
    result = run("validate", "-d", str(tmp_path))
    assert (result.exit_code, result.stdout.splitlines()[-1]) == (0, "6 dataset definitions and 4 publishers are valid.")
    shown = run("settings", "-d", "elsewhere-var")
    assert shown.exit_code == 0
    assert re.search(r"│ URBANDATA_DATA_DIR +│ elsewhere-var +│", shown.stdout), shown.stdout
    assert not Path("elsewhere-var").exists()


def test_the_public_url_follows_the_demo_port_unless_set(tmp_path: Path) -> None:
    result = run("demo", "--no-serve", "--port", "8765", "-d", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    descriptor = json.loads(stored(tmp_path / "a").read_bytes("datasets/car-parks/v1.datapackage.json"))
    assert descriptor["id"].startswith("http://127.0.0.1:8765/api/v1/datasets/car-parks")
    assert "http://127.0.0.1:8765/api/v1/datasets/car-parks/versions/1" in (
        tmp_path / "a" / "site" / "datasets" / "car-parks.html").read_text(encoding="utf-8")

    with own_backend():  # a second catalogue: on the production backends, a schema and prefix of its own
        kept = CliRunner().invoke(app, ["demo", "--no-serve", "--port", "8765", "-d", str(tmp_path / "b")],
                                  env={"URBANDATA_PUBLIC_URL": "https://daten.musterstadt.de"})
        assert kept.exit_code == 0, kept.output
        descriptor = json.loads(stored(tmp_path / "b").read_bytes("datasets/car-parks/v1.datapackage.json"))
    assert descriptor["id"].startswith("https://daten.musterstadt.de/api/v1/datasets/car-parks")


def test_a_quarantined_harvest_prints_its_first_errors_and_where_the_report_is(
    tmp_path: Path, feed_dir: Path, feed_server: FeedServer
) -> None:
    feed = feed_dir / "feeds" / "egovernment-services.csv"
    lines = feed.read_bytes().split(b"\r\n")
    for number in (2, 3):
        cells = lines[number].split(b";")
        cells[4] = b"zwanzig Euro"  # fee_eur is a number
        lines[number] = b";".join(cells)
    feed.write_bytes(b"\r\n".join(lines))
    assert run("init", "-d", str(tmp_path)).exit_code == 0
    result = run("harvest", "egovernment-services", "--feed-base-url", feed_server.url, "-d", str(tmp_path))
    assert result.exit_code == 1
    out = [line.strip() for line in result.stdout.splitlines()]  # error lines are not wrapped (soft_wrap)
    storage = stored(tmp_path)
    report = storage.engine_uri("quarantine/egovernment-services/job-1/report.json")
    assert [line for line in out if line.startswith(("row ", "report:", "served at:", "…"))] == [
        'row 3, field fee_eur: Type error in the cell "zwanzig Euro" in row "3" and field "fee_eur" at position "5": '
        'type is "number/default"',
        'row 4, field fee_eur: Type error in the cell "zwanzig Euro" in row "4" and field "fee_eur" at position "5": '
        'type is "number/default"',
        f"report: {report}",
        "served at: http://127.0.0.1:8000/api/v1/datasets/egovernment-services/deliveries/1/report",
    ]
    assert flat(result.stdout).startswith("quarantined egovernment-services: quarantined, 2 validation errors")
    assert json.loads(storage.read_bytes("quarantine/egovernment-services/job-1/report.json"))["valid"] is False


def _catalogue_before_migrations(data_dir: Path) -> None:
    """A catalogue as releases before migrations left it: the baseline's tables, no alembic_version."""
    settings = Settings(data_dir=data_dir)
    engine = create_catalogue_engine(settings)
    upgrade_schema(engine, BASELINE)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
    engine.dispose()


@pytest.mark.embedded_only("builds a pre-migration catalogue where the run's schema is already migrated; "
                           "tests/catalogue/test_migrations.py upgrades PostgreSQL catalogues")
def test_db_upgrade_and_current_on_a_catalogue_from_before_migrations(tmp_path: Path) -> None:
    _catalogue_before_migrations(tmp_path)
    before = run("db", "current", "-d", str(tmp_path))
    assert (before.exit_code, flat(before.stdout)) == (
        0, f"catalogue schema: {BASELINE}; newest migration: {head_revision()} (run `urbandata db upgrade`)")
    upgraded = run("db", "upgrade", "-d", str(tmp_path))
    assert (upgraded.exit_code, upgraded.stdout) == (0, f"Catalogue schema upgraded from {BASELINE} to {head_revision()}.\n")
    again = run("db", "upgrade", "-d", str(tmp_path))
    assert flat(again.stdout) == f"The catalogue schema is at {head_revision()}, the newest migration: nothing to do."
    after = run("db", "current", "-d", str(tmp_path))
    assert flat(after.stdout) == f"catalogue schema: {head_revision()}; newest migration: {head_revision()} (up to date)"


@pytest.mark.embedded_only("builds a pre-migration catalogue where the run's schema is already migrated; "
                           "tests/catalogue/test_migrations.py upgrades PostgreSQL catalogues")
def test_init_upgrades_an_old_catalogue_and_keeps_it(tmp_path: Path) -> None:
    _catalogue_before_migrations(tmp_path)
    result = run("init", "-d", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"Catalogue schema upgraded from {BASELINE} to {head_revision()}."
    assert run("versions", "car-parks", "-d", str(tmp_path)).stdout == "car-parks: no version published yet.\n"


@dataclass
class DemoRun:
    """What one real ``urbandata demo`` process served and how it ended after Ctrl-C."""

    url: str
    responses: dict[str, httpx.Response]
    returncode: int
    out: str
    err: str


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """Start the demo on a port it binds itself (--port 0), fetch a few pages once it answers, then send SIGINT."""
    tmp = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("URBANDATA_")} | {"PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "demo", "--port", "0", "--data-dir", str(tmp / "var")],
        cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert demo.stdout is not None
        seen: list[str] = []
        for line in demo.stdout:  # ends when the demo exits; the test's timeout guards a hang
            seen.append(line)
            if found := re.search(r"Serving site and API on (http://127\.0\.0\.1:\d+/)", line):
                break
        assert found, "".join(seen)
        with httpx.Client(base_url=found.group(1), timeout=10, trust_env=False) as http:
            deadline = time.monotonic() + 90
            while True:
                assert demo.poll() is None, demo.communicate()
                try:
                    health = http.get("/health")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the demo did not answer /health within 90 s"
                    time.sleep(0.2)
            responses = {"health": health, "home": http.get("/"), "datasets": http.get("/api/v1/datasets"),
                         "records": http.get("/api/v1/datasets/parking-occupancy/records", params={"limit": 5}),
                         "descriptor": http.get("/api/v1/datasets/car-parks/versions/1/datapackage.json")}
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=30)  # raises TimeoutExpired if it does not stop
        return DemoRun(found.group(1), responses, demo.returncode, "".join(seen) + out, err)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()


@pytest.mark.timeout(180)
def test_demo_serves_site_and_api(demo_run: DemoRun) -> None:
    health, home, datasets, records = (demo_run.responses[k] for k in ("health", "home", "datasets", "records"))
    assert (health.status_code, health.json()) == (200, {"status": "ok", "datasets": 6})
    assert (home.status_code, '<html lang="de">' in home.text) == (200, True)
    assert [(d["name"], d["current_version"]) for d in datasets.json()["results"]] == [(n, 1) for n in DATASETS]
    assert (records.status_code, records.headers["x-dataset-version"]) == (200, "1")
    assert [r["lot_id"] for r in records.json()["results"]] == ["P01"] * 5
    assert "6 of 6 sources harvested without problems." in flat(demo_run.out)
    # The public URL followed the port the demo bound: Data Package ids point at this very server.
    descriptor = demo_run.responses["descriptor"]
    assert descriptor.status_code == 200
    assert descriptor.json()["id"].startswith(f"{demo_run.url}api/v1/datasets/car-parks"), descriptor.json()["id"]


@pytest.mark.timeout(180)
def test_demo_stops_cleanly_on_ctrl_c(demo_run: DemoRun) -> None:
    assert (demo_run.returncode, demo_run.out.rstrip().endswith("Stopped.")) == (0, True), demo_run.err


@pytest.mark.timeout(120)
@pytest.mark.embedded_only("builds a pre-migration catalogue where the run's schema is already migrated; "
                           "tests/catalogue/test_migrations.py upgrades PostgreSQL catalogues")
def test_serve_upgrades_an_old_catalogue_and_serves_on_the_port_it_bound(tmp_path: Path) -> None:
    _catalogue_before_migrations(tmp_path / "var")
    env = {k: v for k, v in os.environ.items() if not k.startswith("URBANDATA_")} | {"PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", "0", "-d", str(tmp_path / "var")],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        upgraded = server.stdout.readline()
        serving = re.search(r"Serving site and API on (http://127\.0\.0\.1:(\d+)/)", server.stdout.readline())
        assert upgraded == f"Catalogue schema upgraded from {BASELINE} to {head_revision()}.\n"
        assert serving and int(serving.group(2)) > 0
        with httpx.Client(base_url=serving.group(1), timeout=10, trust_env=False) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    health = http.get("/health")
                    break
                except httpx.TransportError:
                    assert server.poll() is None and time.monotonic() < deadline, server.stderr
                    time.sleep(0.1)
        assert (health.status_code, health.json()) == (200, {"status": "ok", "datasets": 0})
        server.send_signal(signal.SIGINT)
        out, _ = server.communicate(timeout=30)
        assert (server.returncode, out.strip()) == (0, "Stopped.")
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    current = run("db", "current", "-d", str(tmp_path / "var"))
    assert flat(current.stdout).endswith("(up to date)")


def test_an_unreachable_database_is_named_not_a_traceback(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    with socket.socket() as refusing:  # bound, not listening: connections are refused
        refusing.bind(("127.0.0.1", 0))
        url = f"postgresql+psycopg://postgres@127.0.0.1:{refusing.getsockname()[1]}/test"
        result = CliRunner().invoke(app, ["versions", "car-parks", "-d", str(tmp_path)],
                                    env={"URBANDATA_DATABASE_URL": url})
    assert (result.exit_code, result.stdout) == (1, "")
    message = flat(result.stderr)
    assert message.startswith("error [database-unreachable] The catalogue database cannot be reached (")
    assert message.endswith("Check that its server runs and that URBANDATA_DATABASE_URL names the right host, port "
                            "and database.")


def test_a_catalogue_from_a_newer_release_is_named_and_left_alone(tmp_path: Path) -> None:
    assert run("init", "-d", str(tmp_path)).exit_code == 0
    engine = create_catalogue_engine(Settings(data_dir=tmp_path))
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    current = run("db", "current", "-d", str(tmp_path))
    assert flat(current.stdout) == (
        f"catalogue schema: 9999; newest migration: {head_revision()} (made by a newer release of urbandata)")
    for args in (["db", "upgrade"], ["init"], ["versions", "car-parks"]):
        result = run(*args, "-d", str(tmp_path))
        assert (result.exit_code, result.stdout) == (1, ""), args
        assert flat(result.stderr).startswith("error [catalogue-too-new] The catalogue's schema is at migration 9999"), args


def test_the_served_socket_sends_small_answers_at_once() -> None:
    """Connections accepted on ``serve``'s socket have TCP_NODELAY, as on a socket uvicorn binds itself.

    asyncio sets it only on connections of a socket that names IPPROTO_TCP; without it, a response's body
    waited for the client's delayed ACK of its headers (40 ms on each keep-alive request but the first).
    """
    from api.cli import _bind

    async def accepted_nodelay() -> int:
        sock = _bind("127.0.0.1", 0)
        found: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def connected(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            found.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(connected, sock=sock)
        try:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            value = await asyncio.wait_for(found, 10)
            writer.close()
            return value
        finally:
            server.close()
            await server.wait_closed()

    with _bind("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP
    assert asyncio.run(accepted_nodelay()) != 0
