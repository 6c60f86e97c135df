"""``urbandata harvest-catalogue [NAME...]``: harvest CKAN portals and DCAT catalogues (catalogues/*.yaml)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from catalogue.errors import DefinitionError, UrbandataError
from harvesters.catalogue_definitions import load_catalogues
from harvesters.catalogue_sources import harvest_catalogue

STYLES = {"published": "green", "unchanged": "cyan", "skipped": "cyan", "quarantined": "yellow", "failed": "red",
          "withdrawn": "magenta"}


def harvest_catalogue_command(
    names: list[str] = typer.Argument(None, help="Catalogue source names (default: every one defined)."),
    definitions_dir: Path | None = typer.Option(None, "--definitions-dir",
                                                help="Folder holding catalogues/*.yaml (default: the hub's)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", "-d",
                                         help="Data directory (default ./var, or URBANDATA_DATA_DIR)."),
) -> None:
    """Harvest catalogue sources: new and changed datasets fetched, vanished ones withdrawn; exits 1 on a failure."""
    from api.cli import _fail, _open_existing, _settings, console

    failed = False
    try:
        settings = _settings(data_dir)
        catalogues = load_catalogues(definitions_dir or settings.definitions_dir)
        unknown = sorted(set(names or []) - {c.name for c in catalogues})
        if unknown:
            known = ", ".join(c.name for c in catalogues) or "none"
            raise DefinitionError(f"No catalogue source named {', '.join(unknown)}. Defined: {known}.")
        hub = _open_existing(settings)
        try:
            for catalogue in catalogues:
                if names and catalogue.name not in names:
                    continue
                outcome = harvest_catalogue(hub, catalogue)
                for entry in outcome.datasets:
                    style = STYLES.get(entry.status, "white")
                    console.print(f"  [{style}]{entry.status:>11}[/{style}]  {escape(entry.message)}")
                style = "red" if outcome.status == "failed" else "bold"
                console.print(f"[{style}]{escape(outcome.message)}[/{style}]")
                failed = failed or outcome.status == "failed" or outcome.count("failed") > 0
        finally:
            hub.close()
    except UrbandataError as exc:
        _fail(exc)
    if failed:
        raise typer.Exit(1)
