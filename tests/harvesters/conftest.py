"""Fixtures of the harvest tests: real HTTP servers on free loopback ports, catalogues of one harvested dataset."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml

from catalogue.hub import Hub, open_hub
from catalogue.meta.definitions import load_definitions, sync_definitions
from catalogue.settings import Settings
from tests.harvesters.answering_server import AnsweringServer

PUBLISHERS = {"publishers": [{"name": "testamt", "title": "Testamt"}]}


@pytest.fixture
def answering() -> Iterator[Callable[..., AnsweringServer]]:
    """Start servers with ``answering(answer)``; all are stopped after the test."""
    started: list[AnsweringServer] = []

    def start(answer: Callable[[BaseHTTPRequestHandler, AnsweringServer], None]) -> AnsweringServer:
        started.append(AnsweringServer(answer))
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.fixture
def file_server(answering: Callable[..., AnsweringServer]) -> tuple[AnsweringServer, dict[str, bytes]]:
    """A server answering GET /<name> with ``files[name]`` (404 for others); fill the dict in the test."""
    files: dict[str, bytes] = {}

    def answer(handler: BaseHTTPRequestHandler, server: AnsweringServer) -> None:
        body = files.get(handler.path.split("?")[0].lstrip("/"))
        handler.send_response(200 if body is not None else 404)
        handler.send_header("Content-Length", str(len(body or b"")))
        handler.end_headers()
        handler.wfile.write(body or b"")

    return answering(answer), files


@pytest.fixture
def source_catalogue(tmp_path: Path) -> Iterator[Callable[..., Hub]]:
    """``make(name, schema, source, **settings)``: a catalogue whose one dataset is harvested from ``source``."""
    hubs: list[Hub] = []

    def make(name: str, schema: dict[str, Any], source: dict[str, Any], **settings: Any) -> Hub:
        root = tmp_path / "defs"
        (root / "definitions").mkdir(parents=True, exist_ok=True)
        (root / "schemas").mkdir(exist_ok=True)
        (root / "publishers.yaml").write_text(yaml.safe_dump(PUBLISHERS), encoding="utf-8")
        (root / "schemas" / f"{name}.json").write_text(json.dumps(schema), encoding="utf-8")
        definition = {
            "name": name, "title": f"Test {name}", "description": "Testdaten.", "publisher": "testamt",
            "license": "http://dcat-ap.de/def/licenses/dl-zero-de/2.0", "schema": f"schemas/{name}.json",
            "update_frequency": settings.pop("update_frequency", "DAILY"), "source": source,
        }
        (root / "definitions" / f"{name}.yaml").write_text(yaml.safe_dump(definition), encoding="utf-8")
        settings.setdefault("harvest_allowed_hosts", ["127.0.0.1"])
        hub = open_hub(Settings(data_dir=tmp_path / "var", definitions_dir=root, **settings))
        sync_definitions(hub, load_definitions(root))
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.close()
