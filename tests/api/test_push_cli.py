"""`urbandata push` against a real server: token from the environment or a config file, the answer printed,
and a lost answer retried with the same Idempotency-Key without publishing twice."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from api.cli import app as cli
from catalogue.hub import Hub
from tests.api.push_support import push_hub, serving, token


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    with push_hub(tmp_path) as hub:
        yield hub


@pytest.fixture
def base(hub: Hub) -> Iterator[str]:
    with serving(hub) as url:
        yield url


def _push(*args: str, env: dict[str, str]) -> Result:
    return CliRunner().invoke(cli, ["push", *args], env={"URBANDATA_PUSH_CONFIG": "", **env})


def _versions(base: str) -> int:
    return len(httpx.get(f"{base}/api/v1/datasets/meters/versions").json()["results"])


def test_push_publishes_with_the_token_from_the_environment(hub: Hub, base: str, tmp_path: Path) -> None:
    feed = tmp_path / "meters.csv"
    feed.write_text("id,name,value\n1,Nord,11\n2,Mitte,22\n", encoding="utf-8")
    env = {"URBANDATA_TOKEN": token(hub, "stadtwerke", "push"), "URBANDATA_URL": base}
    done = _push(str(feed), "--dataset", "meters", env=env)
    assert done.exit_code == 0, done.output
    assert "published version 2" in done.stdout and "report:" in done.stdout
    same = _push(str(feed), "--dataset", "meters", env=env)
    assert same.exit_code == 0 and "unchanged, version 2 stays current" in same.stdout
    appended = tmp_path / "more.ndjson"
    appended.write_text('{"id": 3, "name": "Sued", "value": 33}\n', encoding="utf-8")
    more = _push(str(appended), "--dataset", "meters", "--mode", "append", "--base-version", "2", env=env)
    assert more.exit_code == 0 and "published version 3" in more.stdout, more.output


def test_push_prints_the_rows_of_an_invalid_delivery_and_exits_1(hub: Hub, base: str, tmp_path: Path) -> None:
    feed = tmp_path / "meters.csv"
    feed.write_text("id,name,value\n1,Nord,elf\n", encoding="utf-8")
    env = {"URBANDATA_TOKEN": token(hub, "stadtwerke", "push"), "URBANDATA_URL": base}
    refused = _push(str(feed), "--dataset", "meters", env=env)
    assert refused.exit_code == 1
    assert "422 delivery-invalid" in refused.stderr and "row 2, field value" in refused.stderr
    assert "/deliveries/1/report" in refused.stderr and _versions(base) == 1


def test_the_token_comes_from_a_private_config_file_never_the_command_line(hub: Hub, base: str, tmp_path: Path) -> None:
    feed = tmp_path / "meters.json"
    feed.write_text('[{"id": 1, "name": "Nord", "value": 5}]', encoding="utf-8")
    config = tmp_path / "push.toml"
    config.write_text(f'url = "{base}"\ntoken = "{token(hub, "stadtwerke", "push")}"\n', encoding="utf-8")
    config.chmod(0o644)
    loose = _push(str(feed), "--dataset", "meters", "--config", str(config), env={})
    assert loose.exit_code == 1 and "chmod 600" in loose.stderr
    config.chmod(0o600)
    done = _push(str(feed), "--dataset", "meters", "--config", str(config), env={})
    assert done.exit_code == 0 and "published version 2" in done.stdout, done.output
    flagged = _push(str(feed), "--dataset", "meters", "--token", "udt_x", env={"URBANDATA_URL": base})
    assert flagged.exit_code == 2 and "--token" in flagged.output  # no such option
    missing = _push(str(feed), "--dataset", "meters", env={"URBANDATA_URL": base, "HOME": str(tmp_path)})
    assert missing.exit_code == 1 and "URBANDATA_TOKEN" in missing.stderr


class LosesFirstAnswer(BaseHTTPRequestHandler):
    """Forwards each POST to the hub; the first answer is lost on the way back (a 502 instead)."""

    upstream = ""
    keys: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).keys.append(self.headers["Idempotency-Key"])
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        answer = httpx.post(self.upstream + self.path, content=body, headers=headers, timeout=60)
        status, content = (502, b"bad gateway") if len(self.keys) == 1 else (answer.status_code, answer.content)
        self.send_response(status)
        self.send_header("Content-Type", answer.headers.get("content-type", "text/plain"))
        self.send_header("Retry-After", "0")
        for name in ("Idempotent-Replayed",):
            if name in answer.headers:
                self.send_header(name, answer.headers[name])
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, *args: object) -> None:
        pass


def test_a_lost_answer_is_retried_with_the_same_key_and_publishes_once(hub: Hub, base: str, tmp_path: Path) -> None:
    LosesFirstAnswer.upstream, LosesFirstAnswer.keys = base, []
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), LosesFirstAnswer)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        feed = tmp_path / "meters.csv"
        feed.write_text("id,name,value\n1,Nord,77\n", encoding="utf-8")
        env = {"URBANDATA_TOKEN": token(hub, "stadtwerke", "push"), "URBANDATA_URL": f"http://127.0.0.1:{proxy.server_port}"}
        done = _push(str(feed), "--dataset", "meters", env=env)
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join()
    assert done.exit_code == 0, done.output
    assert len(LosesFirstAnswer.keys) == 2 and LosesFirstAnswer.keys[0] == LosesFirstAnswer.keys[1]
    assert "attempt 1 failed (HTTP 502)" in done.stderr and "first delivery" in done.stdout
    assert "published version 2" in done.stdout and _versions(base) == 2  # the first attempt's, once
