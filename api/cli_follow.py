"""``urbandata follow NAME``: stream an MQTT source into its dataset until stopped (harvesters/mqtt.py)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from catalogue.errors import UrbandataError
from catalogue.hub import open_hub
from catalogue.meta.db import catalogue_exists
from catalogue.settings import Settings
from harvesters.mqtt import FollowStats, follow

console = Console()
err = Console(stderr=True)


def follow_command(
    name: str = typer.Argument(..., help="Harvest source (dataset) name of an mqtt source."),
    seconds: float = typer.Option(0.0, "--for", min=0, help="Stop after this many seconds (0: until Ctrl-C)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", "-d", help="Data directory (default ./var)."),
) -> None:
    """Follow an MQTT source: keep its session open and append a part of readings every flush, until Ctrl-C."""
    settings = Settings(data_dir=data_dir) if data_dir is not None else Settings()
    if not catalogue_exists(settings):
        err.print(f"[red]error[/red] There is no catalogue in {escape(str(settings.data_dir))}; run `urbandata init`.")
        raise typer.Exit(1)
    hub = open_hub(settings)
    stop = threading.Event()
    before = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    timer = threading.Timer(seconds, stop.set) if seconds else None
    if timer is not None:
        timer.start()
    console.print(f"Following {escape(name)} (Ctrl-C stops; the broker keeps unacknowledged readings for the next run).")
    try:
        stats = follow(hub, name, stop, on_part=lambda line, _: console.print(f"  {escape(line)}"))
    except UrbandataError as exc:
        err.print(f"[red]error[/red] {escape(f'[{exc.code}] {exc.message}')}")
        raise typer.Exit(1) from None
    finally:
        hub.close()
        if timer is not None:
            timer.cancel()
        for sig, handler in before.items():
            signal.signal(sig, handler)
    _summary(stats)


def _summary(stats: FollowStats) -> None:
    console.print(f"{stats.parts} parts: {stats.readings} valid readings, {stats.appended} rows appended, "
                  f"{stats.repeats} repeats dropped, {stats.quarantined} bad messages quarantined.")
