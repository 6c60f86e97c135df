"""``urbandata worker``: Dramatiq worker processes running the harvests queued on the hub's job queue.

The queue is ``queue_url`` (harvesters/queue.py, the [queue] extra). Each worker process reads the hub's
settings from the environment (``--data-dir`` is passed on as URBANDATA_DATA_DIR) and runs one harvest
per thread; when one worker process dies, the others stop too (run it under a supervisor that restarts
it), and the job it held goes back to the queue for another worker.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from catalogue.errors import CatalogueNotFound, QueueUnreachable, UrbandataError
from catalogue.meta.db import catalogue_exists
from catalogue.settings import Settings

err = Console(stderr=True)

# An idle worker process polls the queue at least this often (ms; Dramatiq's default is 1,000): a queued
# harvest starts within a tenth of a second, at ten Redis polls a second per idle process.
POLL_MS = 100


def dramatiq_environment(threads: int) -> None:
    """Dramatiq's settings for harvests, as its documented environment variables (an operator's own win).

    Dramatiq reads them once, when it is imported, so this runs before it is (``api.cli`` never imports it).
    Prefetch = threads: a harvest runs for seconds to minutes, so a process takes no message it cannot start
    at once (Dramatiq's default, twice its threads, let one process keep a second harvest waiting while
    another process idled). Each worker process inherits them.
    """
    os.environ.setdefault("dramatiq_queue_prefetch", str(threads))
    os.environ.setdefault("dramatiq_worker_timeout", str(POLL_MS))


def worker_command(
    processes: int = typer.Option(2, "--processes", "-p", min=1, help="Worker processes to start."),
    threads: int = typer.Option(1, "--threads", "-t", min=1, help="Harvests each process runs at once."),
    data_dir: Path | None = typer.Option(None, "--data-dir", "-d", help="Data directory (default ./var)."),
) -> None:
    """Run harvest workers on the job queue (URBANDATA_QUEUE_URL) until Ctrl-C or SIGTERM."""
    try:
        settings = Settings(data_dir=data_dir) if data_dir is not None else Settings()
        if not settings.queue_url:
            raise QueueUnreachable(
                "No job queue is configured: set URBANDATA_QUEUE_URL (e.g. redis://127.0.0.1:6379/0), the same "
                "for the workers and for the process that schedules harvests (serve, harvest --due).",
                details={"setting": "queue_url"})
        if not catalogue_exists(settings):
            raise CatalogueNotFound(
                f"There is no catalogue in {settings.data_dir}; run `urbandata init` or give the right --data-dir.")
        dramatiq_environment(threads)
        try:
            from dramatiq.cli import main as dramatiq_main
            from dramatiq.cli import make_argument_parser

            from harvesters.queue import check
        except ImportError as exc:
            raise QueueUnreachable(f"The job queue needs the [queue] extra ({exc}): pip install 'urbandata[queue]'.") \
                from None
        check(settings)
    except UrbandataError as exc:
        err.print(f"[red]error[/red] {escape(f'[{exc.code}] {exc.message}')}")
        raise typer.Exit(1) from None
    if data_dir is not None:  # the worker processes build their settings from the environment
        os.environ["URBANDATA_DATA_DIR"] = str(data_dir.resolve())
    args = make_argument_parser().parse_args(
        ["harvesters.queue:setup", "--processes", str(processes), "--threads", str(threads), "--path"])
    raise typer.Exit(dramatiq_main(args) or 0)
