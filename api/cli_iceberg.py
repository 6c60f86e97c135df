"""``urbandata iceberg-sync``: register the versions the Iceberg catalog misses (catalogue/store/iceberg.py)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from catalogue.errors import UrbandataError
from catalogue.hub import open_hub
from catalogue.meta.db import catalogue_exists
from catalogue.settings import Settings
from catalogue.store.iceberg import sync_all

console = Console()
err = Console(stderr=True)


def iceberg_sync_command(
    names: list[str] = typer.Argument(None, help="Datasets to register (default: every dataset)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", "-d", help="Data directory (default ./var)."),
) -> None:
    """Register every published version the Iceberg catalog lacks as a snapshot of its dataset's table, in order."""
    try:
        settings = Settings(data_dir=data_dir) if data_dir is not None else Settings()
        if not catalogue_exists(settings):
            err.print(f"[red]error[/red] There is no catalogue in {escape(str(settings.data_dir))}; "
                      "run `urbandata init`.")
            raise typer.Exit(1)
        hub = open_hub(settings)
        try:
            done = sync_all(hub, names or None)
        finally:
            hub.close()
    except UrbandataError as exc:
        err.print(f"[red]error[/red] {escape(f'[{exc.code}] {exc.message}')}")
        raise typer.Exit(1) from None
    for registered in done:
        numbers = ", ".join(str(n) for n in registered.versions)
        what = f"registered version(s) {numbers}" if numbers else "up to date"
        where = f"; metadata {registered.metadata_location}" if registered.metadata_location else "; no version yet"
        console.print(escape(f"{registered.dataset}: {what}{where}"), soft_wrap=True)
