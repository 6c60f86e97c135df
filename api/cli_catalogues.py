"""``urbandata harvest-catalogue [NAME...] [--due]``: harvest CKAN portals and DCAT catalogues (catalogues/*.yaml).

Each run is one job (``GET /api/v1/harvest/jobs?catalogue=NAME``); its line here ends with the job's id and
counts. ``--due`` runs only the catalogues whose ``schedule`` says a run is due (for cron or a timer).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from catalogue.errors import DefinitionError, UrbandataError
from harvesters.catalogue_definitions import load_catalogues
from harvesters.catalogue_sources import catalogue_due, harvest_catalogue

STYLES = {"published": "green", "unchanged": "cyan", "skipped": "cyan", "quarantined": "yellow", "failed": "red",
          "withdrawn": "magenta"}


def harvest_catalogue_command(
    names: list[str] = typer.Argument(None, help="Catalogue source names (default: every one defined)."),
    definitions_dir: Path | None = typer.Option(None, "--definitions-dir",
                                                help="Folder holding catalogues/*.yaml (default: the hub's)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", "-d",
                                         help="Data directory (default ./var, or URBANDATA_DATA_DIR)."),
    due: bool = typer.Option(False, "--due", help="Only the catalogues whose schedule says a run is due."),
) -> None:
    """Harvest catalogue sources: new and changed datasets fetched, vanished ones withdrawn; exits 1 if a listing or
    a dataset failed or was quarantined (as `harvest` does).

    Each run is one job, listed by GET /api/v1/harvest/jobs?catalogue=NAME with its datasets' jobs (?parent=ID).
    """
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
            chosen = [c for c in catalogues if not names or c.name in names]
            if due:
                chosen = [c for c in chosen if catalogue_due(hub, c)]
                if not chosen:
                    console.print("No catalogue source is due.")
            for catalogue in chosen:
                outcome = harvest_catalogue(hub, catalogue)
                for entry in outcome.datasets:
                    style = STYLES.get(entry.status, "white")
                    console.print(f"  [{style}]{entry.status:>11}[/{style}]  {escape(entry.message)}")
                style = "red" if outcome.status == "failed" else "bold"
                counted = ", ".join(f"{n} {what}" for what, n in outcome.counts().items() if n)
                job = f" (job {outcome.job_id}{': ' + counted if counted else ''})" if outcome.job_id else ""
                console.print(f"[{style}]{escape(outcome.message + job)}[/{style}]")
                failed = failed or outcome.status == "failed" or outcome.counts()["failed"] > 0  # quarantined too
        finally:
            hub.close()
    except UrbandataError as exc:
        _fail(exc)
    if failed:
        raise typer.Exit(1)
