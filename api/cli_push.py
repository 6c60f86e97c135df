"""``urbandata push FILE --dataset NAME``: a subsidiary's cron job delivers a file to the hub over HTTP.

The token comes from the environment (``URBANDATA_TOKEN``) or a config file
(``--config``, ``URBANDATA_PUSH_CONFIG`` or ``~/.config/urbandata/push.toml``:
``url = "https://…"`` and ``token = "udt_…"``), never from the command line,
where other users of the machine could read it. The file is streamed with a
progress bar; a failed attempt (network, 5xx, 429, a delivery still in
progress) is retried with the same Idempotency-Key, so a retry can never
publish twice.
"""

from __future__ import annotations

import os
import stat
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

TOKEN_ENV = "URBANDATA_TOKEN"
URL_ENV = "URBANDATA_URL"
CONFIG_ENV = "URBANDATA_PUSH_CONFIG"
DEFAULT_CONFIG = Path("~/.config/urbandata/push.toml")
DEFAULT_URL = "http://127.0.0.1:8000"
EXTENSIONS = {".csv": "csv", ".json": "json", ".ndjson": "ndjson", ".jsonl": "ndjson", ".geojson": "geojson",
              ".parquet": "parquet"}
MEDIA_TYPES = {"csv": "text/csv", "json": "application/json", "ndjson": "application/x-ndjson",
               "geojson": "application/geo+json", "parquet": "application/vnd.apache.parquet"}
RETRIED_STATUS = {429, 500, 502, 503, 504}
CHUNK = 1 << 20
SHOWN_ERRORS = 20

out = Console()
err = Console(stderr=True)


def _fail(message: str) -> NoReturn:
    err.print(f"[red]error[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(1)


def _config(path: Path | None) -> dict[str, Any]:
    """The push config file's settings ({} when there is none); it must not be readable by others."""
    explicit = path or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    chosen = (explicit or DEFAULT_CONFIG).expanduser()
    if not chosen.is_file():
        if explicit is not None:
            _fail(f"The config file {chosen} does not exist.")
        return {}
    if chosen.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        _fail(f"The config file {chosen} holds a token and is readable by others; run: chmod 600 {chosen}")
    try:
        loaded = tomllib.loads(chosen.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        _fail(f"The config file {chosen} is not valid TOML: {exc}")
    unknown = sorted(set(loaded) - {"url", "token"})
    if unknown:
        _fail(f"The config file {chosen} has unknown keys {unknown}; it holds url and token.")
    return loaded


def push(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="The file to deliver."),
    dataset: str = typer.Option(..., "--dataset", help="The dataset it is for."),
    mode: str = typer.Option("replace", "--mode", help="replace (the whole dataset), append, or upsert."),
    fmt: str | None = typer.Option(None, "--format", help="csv, json, ndjson, geojson or parquet (default: from "
                                   "the file's extension)."),
    url: str | None = typer.Option(None, "--url", help=f"The hub (default: {URL_ENV}, the config file, or {DEFAULT_URL})."),
    base_version: int | None = typer.Option(None, "--base-version", help="Publish only if this version is still "
                                            "current (If-Match; 0: the dataset has none yet)."),
    key: str | None = typer.Option(None, "--idempotency-key", help="Names this delivery (default: a new UUID). "
                                   "Give the same key to re-run a cron job without delivering twice."),
    retries: int = typer.Option(5, "--retries", min=0, max=20, help="Attempts after the first when one fails."),
    config: Path | None = typer.Option(None, "--config", help=f"Config file with url and token (default: "
                                       f"{CONFIG_ENV} or {DEFAULT_CONFIG})."),
) -> None:
    """Deliver FILE to a dataset of your publisher: published, unchanged, or refused with its validation report.

    The token is read from URBANDATA_TOKEN or the config file, never from the command line.
    """
    settings = _config(config)
    token = os.environ.get(TOKEN_ENV) or settings.get("token")
    if not token:
        _fail(f"No API token: set {TOKEN_ENV}, or put token = \"udt_…\" in {config or DEFAULT_CONFIG} (mode 600). "
              "A publisher's administrator makes one with 'urbandata token create'.")
    base = (url or os.environ.get(URL_ENV) or settings.get("url") or DEFAULT_URL).rstrip("/")
    fmt = fmt or EXTENSIONS.get(file.suffix.lower())
    if fmt not in MEDIA_TYPES:
        _fail(f"Cannot tell the format of {file.name}; give --format ({', '.join(MEDIA_TYPES)}).")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": MEDIA_TYPES[fmt],
               "Idempotency-Key": key or str(uuid.uuid4()), "Content-Length": str(file.stat().st_size)}
    if base_version is not None:
        headers["If-Match"] = f'"{base_version}"'
    target = f"{base}/api/v1/datasets/{dataset}/deliveries"
    answer = _send(target, file, headers, {"mode": mode, "format": fmt}, retries)
    _report(answer, dataset)


def _send(target: str, file: Path, headers: dict[str, str], params: dict[str, str], retries: int) -> httpx.Response:
    """POST the file, retrying failed attempts with the same Idempotency-Key."""
    size = file.stat().st_size
    with httpx.Client(timeout=httpx.Timeout(30.0, read=600.0)) as client:
        for attempt in range(retries + 1):
            with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                          console=err, transient=True) as progress:
                task = progress.add_task(f"pushing {file.name}", total=size)
                try:
                    answer = client.post(target, content=_chunks(file, lambda n: progress.advance(task, n)),
                                         headers=headers, params=params)
                except httpx.TransportError as exc:
                    answer, problem = None, f"{type(exc).__name__}: {exc}"
            if answer is not None:
                in_progress = answer.status_code == 409 and _code(answer) == "delivery-in-progress"
                if answer.status_code not in RETRIED_STATUS and not in_progress:
                    return answer
                problem = f"HTTP {answer.status_code} {_code(answer) or ''}".strip()
            if attempt == retries:
                if answer is not None:
                    return answer
                _fail(f"The hub at {target} did not answer ({problem}); tried {retries + 1} times.")
            wait = _retry_after(answer, attempt)
            err.print(f"attempt {attempt + 1} failed ({escape(problem)}); again in {wait:.0f} s with the same "
                      "Idempotency-Key", soft_wrap=True)
            time.sleep(wait)
    raise AssertionError("unreachable")


def _chunks(file: Path, advance: Any) -> Iterator[bytes]:
    with open(file, "rb") as handle:
        while chunk := handle.read(CHUNK):
            advance(len(chunk))
            yield chunk


def _code(answer: httpx.Response) -> str | None:
    try:
        return str(answer.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


def _retry_after(answer: httpx.Response | None, attempt: int) -> float:
    said = answer.headers.get("Retry-After", "") if answer is not None else ""
    return float(said) if said.isdigit() else float(min(30, 2 ** attempt))


def _report(answer: httpx.Response, dataset: str) -> None:
    """Say what became of the delivery; exit 1 unless it was published or unchanged."""
    try:
        body = answer.json()
    except ValueError:
        _fail(f"The hub answered HTTP {answer.status_code} without JSON: {answer.text[:200]}")
    replayed = " (the answer to this Idempotency-Key's first delivery)" if answer.headers.get("Idempotent-Replayed") else ""
    if answer.status_code in (200, 201):
        out.print(f"{escape(body['message'])}{replayed}", soft_wrap=True)
        if body.get("report_url"):
            out.print(f"report: {escape(body['report_url'])}", soft_wrap=True, highlight=False)
        return
    error = body.get("error", {})
    err.print(f"[red]{answer.status_code} {escape(str(error.get('code')))}[/red] {escape(str(error.get('message')))}"
              f"{replayed}", soft_wrap=True)
    details = error.get("details") or {}
    for problem in details.get("errors", [])[:SHOWN_ERRORS]:
        where = f"row {problem['row']}" if problem.get("row") is not None else "file"
        where += f", field {problem['field']}" if problem.get("field") else ""
        err.print(f"  {escape(where)}: {escape(problem['message'])}", soft_wrap=True, highlight=False)
    if details.get("error_count", 0) > SHOWN_ERRORS:
        err.print(f"  … and {details['error_count'] - SHOWN_ERRORS} more in the report.")
    if details.get("report_url"):
        err.print(f"report: {escape(details['report_url'])}", soft_wrap=True, highlight=False)
    raise typer.Exit(1)
