"""Servers as subprocesses on free loopback ports: our API (uvicorn) and Datasette. Always stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

HOST = "127.0.0.1"


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


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
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)


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
