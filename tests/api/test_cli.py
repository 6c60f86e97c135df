"""The command line through typer's CliRunner, plus one smoke test of the real demo server in a subprocess."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner, Result

from api.cli import app
from api.feed_server import FeedServer
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
    assert [line.strip() for line in result.stdout.splitlines() if line.strip()] == [
        f"published  {n}: published version 1 ({r} rows; +{r} −0 ~0)" for n, r in rows.items()]

    again = run("harvest", "car-parks", "--feed-base-url", feed_server.url, "-d", str(tmp_path))
    assert (again.exit_code, flat(again.stdout)) == (0, "unchanged car-parks: unchanged, version 1 stays current")

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
    result = run("versions", "unknown", "-d", str(tmp_path))
    assert (result.exit_code, result.stdout) == (1, "")
    assert "There is no dataset named 'unknown'. The list of datasets is at /api/v1/datasets." in flat(result.stderr)


def test_error_output_keeps_the_error_code(tmp_path: Path) -> None:
    assert "[dataset-not-found]" in run("versions", "unknown", "-d", str(tmp_path)).stderr


@pytest.mark.parametrize("args", [["harvest"], ["harvest", "car-parks", "--all"]])
def test_harvest_needs_a_name_or_all(tmp_path: Path, args: list[str]) -> None:
    result = run(*args, "-d", str(tmp_path))
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", "Give a source name or --all (not both).\n")


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DemoRun:
    """What one real ``urbandata demo`` process served and how it ended after Ctrl-C."""

    responses: dict[str, httpx.Response]
    returncode: int
    out: str
    err: str


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """Start the demo on a free port, fetch a few pages once it answers, then send SIGINT."""
    tmp, port = tmp_path_factory.mktemp("demo"), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("URBANDATA_")} | {"PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "demo", "--port", str(port), "--data-dir", str(tmp / "var")],
        cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False) as http:
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
                         "records": http.get("/api/v1/datasets/parking-occupancy/records", params={"limit": 5})}
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=30)  # raises TimeoutExpired if it does not stop
        return DemoRun(responses, demo.returncode, out, err)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()


@pytest.mark.timeout(180)
def test_demo_serves_site_and_api(demo_run: DemoRun) -> None:
    health, home, datasets, records = demo_run.responses.values()
    assert (health.status_code, health.json()) == (200, {"status": "ok", "datasets": 6})
    assert (home.status_code, '<html lang="de">' in home.text) == (200, True)
    assert [(d["name"], d["current_version"]) for d in datasets.json()["results"]] == [(n, 1) for n in DATASETS]
    assert (records.status_code, records.headers["x-dataset-version"]) == (200, "1")
    assert [r["lot_id"] for r in records.json()["results"]] == ["P01"] * 5
    assert "6 of 6 sources harvested without problems." in flat(demo_run.out)


@pytest.mark.timeout(180)
def test_demo_stops_cleanly_on_ctrl_c(demo_run: DemoRun) -> None:
    assert (demo_run.returncode, demo_run.out.rstrip().endswith("Stopped.")) == (0, True), demo_run.err
