"""The production layout in deploy/: its commands exist, its settings validate, it holds no credential."""

from __future__ import annotations

import configparser
import re
import shlex
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from api.cli import app
from catalogue.settings import CONFIG_ENV, PROJECT_ROOT, Settings

DEPLOY = PROJECT_ROOT / "deploy"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|_AUTH$|TOKEN", re.IGNORECASE)
# A value that takes its secret from the env file: ${NAME} or ${NAME:?message} (or ${NAME:-...}).
FROM_ENV = re.compile(r"\$\{[A-Z0-9_]+(?::?[?-][^}]*)?\}")


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    return loaded


def _urbandata_commands() -> list[list[str]]:
    """Every urbandata command line of the compose services and the systemd units, as arguments."""
    found = []
    for service in _compose()["services"].values():
        command = service.get("command")
        if isinstance(command, list) and command and command[0] == "urbandata":
            found.append(command[1:])
        elif isinstance(command, list) and "urbandata " in " ".join(command):
            text = " ".join(command)
            found.append(shlex.split(text[text.index("urbandata ") + len("urbandata "):].split(";")[0]))
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.read_string(unit.read_text(encoding="utf-8"))
        exec_start = parser["Service"]["ExecStart"]
        found.append(shlex.split(exec_start)[1:])
    return found


def test_the_compose_file_runs_the_hub_behind_a_proxy() -> None:
    services = _compose()["services"]
    assert services["db"]["image"].startswith("postgis/postgis:")
    assert {"redis", "s3", "api", "worker", "scheduler", "proxy", "migrate"} <= set(services)
    assert "replicas" in services["api"]["deploy"] and "replicas" in services["worker"]["deploy"]
    assert "/ready" in " ".join(services["api"]["healthcheck"]["test"])
    caddy = (DEPLOY / "caddy" / "Caddyfile.compose").read_text(encoding="utf-8")
    assert "name api" in caddy and "respond @internal 404" in caddy  # every replica; /metrics not public


def test_no_credential_is_written_in_the_compose_file() -> None:
    checked = 0
    for name, service in _compose()["services"].items():
        environment = service.get("environment") or {}
        for key, value in environment.items():
            if SECRET_NAME.search(key) or "://" in str(value) and "@" in str(value):
                assert FROM_ENV.search(str(value)), f"{name}: {key} holds a fixed value, not one from the env file"
                checked += 1
    assert checked >= 8  # database, S3 (twice), Redis, cursor and token keys...


def test_the_env_file_example_leaves_every_secret_empty() -> None:
    for line in (DEPLOY / "urbandata.env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            if SECRET_NAME.search(key):
                assert value == "", f"{key} has a value in the example"


def test_the_settings_file_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(DEPLOY / "urbandata.toml"))
    monkeypatch.delenv("URBANDATA_RATE_LIMIT_TRUSTED_PROXIES", raising=False)
    settings = Settings()
    assert settings.log_format == "json" and settings.rate_limit_per_minute == 600


def test_every_command_of_the_layout_exists_with_its_options() -> None:
    commands = _urbandata_commands()
    assert {c[0] for c in commands} >= {"serve", "worker", "harvest", "init"}
    runner = CliRunner()
    for arguments in commands:
        shown = runner.invoke(app, [arguments[0], "--help"], terminal_width=200)
        assert shown.exit_code == 0, (arguments, shown.output)
        for option in (a for a in arguments[1:] if a.startswith("--")):
            assert option in shown.output, f"urbandata {arguments[0]} has no option {option}"


def test_the_systemd_units_name_the_config_file_and_the_env_file() -> None:
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        text = unit.read_text(encoding="utf-8")
        assert f"{CONFIG_ENV}=/etc/urbandata/urbandata.toml" in text, unit.name
        assert "EnvironmentFile=/etc/urbandata/urbandata.env" in text, unit.name
        assert "User=urbandata" in text, unit.name
