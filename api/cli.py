"""The ``urbandata`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from catalogue.meta.definitions import load_definitions, sync_definitions
from catalogue.errors import UrbandataError
from catalogue.hub import Hub, open_hub
from catalogue.meta.metadata import get_dataset, list_versions
from catalogue.settings import Settings
from catalogue.sitegen.builder import build_site
from harvesters.runner import HarvestOutcome, harvest_source, list_sources

app = typer.Typer(
    help="urbandata: an open urban-data hub. Harvest, validate, version, query and publish a city's open data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

DataDir = typer.Option(None, "--data-dir", "-d", help="Data directory (default ./var, or URBANDATA_DATA_DIR).")
STYLES = {"published": "green", "unchanged": "cyan", "quarantined": "yellow", "failed": "red"}


def _settings(data_dir: Path | None, **overrides: Any) -> Settings:
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    return Settings(**overrides)


def _fail(exc: UrbandataError) -> None:
    err.print(f"[red]error[/red] {escape(f'[{exc.code}] {exc.message}')}")
    raise typer.Exit(1)


def _init(settings: Settings) -> Hub:
    hub = open_hub(settings)
    definitions = load_definitions(settings.definitions_dir)
    sync_definitions(hub, definitions)
    console.print(
        f"Catalogue in [bold]{settings.data_dir.resolve()}[/bold]: "
        f"{len(definitions.publishers)} publishers, {len(definitions.datasets)} datasets."
    )
    return hub


def _harvest(hub: Hub, names: list[str]) -> list[HarvestOutcome]:
    outcomes = []
    with Progress(
        SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
        MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True,
    ) as progress:
        task = progress.add_task("Harvesting", total=len(names))
        for name in names:
            progress.update(task, description=f"Harvesting {name}")
            outcome = harvest_source(hub, name)
            outcomes.append(outcome)
            style = STYLES.get(outcome.status, "white")
            progress.console.print(f"  [{style}]{outcome.status:>11}[/{style}]  {outcome.message}")
            progress.advance(task)
    return outcomes


def _build_site(hub: Hub) -> Path:
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True) as progress:
        task = progress.add_task("Building site")
        out = build_site(hub, progress=lambda name: progress.update(task, description=f"Building site: {name}"))
    console.print(f"Site built in [bold]{out.resolve()}[/bold]")
    return out


@app.command()
def init(data_dir: Path | None = DataDir) -> None:
    """Create the catalogue and load publishers and datasets from datasets/."""
    try:
        _init(_settings(data_dir)).close()
    except UrbandataError as exc:
        _fail(exc)


@app.command()
def validate(
    definitions: Path | None = typer.Option(None, help="Definitions directory (default: the bundled datasets/)."),
) -> None:
    """Check every dataset definition, publisher and Table Schema in datasets/."""
    root = definitions or Settings().definitions_dir
    try:
        found = load_definitions(root)
    except UrbandataError as exc:
        _fail(exc)
        return
    for doc in found.datasets:
        console.print(f"  [green]ok[/green]  {doc['name']}  ({len(doc['schema']['fields'])} fields)")
    console.print(f"{len(found.datasets)} dataset definitions and {len(found.publishers)} publishers are valid.")


@app.command()
def harvest(
    name: str | None = typer.Argument(None, help="Harvest source (dataset) name."),
    all_sources: bool = typer.Option(False, "--all", help="Harvest every source."),
    feed_base_url: str | None = typer.Option(None, help="Base URL for relative source URLs."),
    data_dir: Path | None = DataDir,
) -> None:
    """Harvest one source, or all with --all; exits 1 if any delivery failed or was quarantined."""
    if bool(name) == all_sources:
        err.print("Give a source name or --all (not both).")
        raise typer.Exit(2)
    overrides = {"feed_base_url": feed_base_url} if feed_base_url else {}
    try:
        hub = open_hub(_settings(data_dir, **overrides))
        outcomes = _harvest(hub, list_sources(hub) if all_sources else [name])  # type: ignore[list-item]
    except UrbandataError as exc:
        _fail(exc)
        return
    hub.close()
    if any(o.status in ("failed", "quarantined") for o in outcomes):
        raise typer.Exit(1)


@app.command("build-site")
def build_site_command(data_dir: Path | None = DataDir) -> None:
    """Build the static catalogue site into the data directory."""
    hub = open_hub(_settings(data_dir))
    _build_site(hub)
    hub.close()


@app.command()
def versions(name: str, data_dir: Path | None = DataDir) -> None:
    """List the published versions of a dataset."""
    hub = open_hub(_settings(data_dir))
    try:
        with hub.sessions() as session:
            found = list_versions(session, get_dataset(session, name))
    except UrbandataError as exc:
        _fail(exc)
        return
    table = Table("version", "published (UTC)", "rows", "bytes", "added", "removed", "changed", "sha256")
    for v in found:
        c = v.changes
        table.add_row(str(v.number), v.created_at.strftime("%Y-%m-%d %H:%M:%S"), str(v.row_count), str(v.bytes),
                      str(c.get("added", "")), str(c.get("removed", "")), str(c.get("changed", "")), v.content_hash[:12])
    console.print(table if found else f"{name}: no version published yet.")


@app.command("settings")
def settings_command() -> None:
    """List every setting: environment variable, default and meaning (generated from the code)."""
    longest = max(len(f"URBANDATA_{n}") for n in Settings.model_fields)
    table = Table("default", "meaning")
    table.columns.insert(0, Column("environment variable", no_wrap=True, min_width=longest))
    for name, field in Settings.model_fields.items():
        table.add_row(f"URBANDATA_{name.upper()}", str(field.default), field.description or "")
    console.print(table)


def _serve(settings: Settings, hub: Hub, host: str, port: int) -> None:
    import uvicorn

    from api.app import create_app

    config = uvicorn.Config(create_app(settings, hub), host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    console.print(
        f"Serving site and API on [bold]http://{host}:{port}/[/bold]  (API: /api/v1/datasets, "
        f"OpenAPI: /openapi.json). Stop with Ctrl-C."
    )
    try:
        server.run()
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it already handled by shutting down cleanly
    console.print("Stopped.")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    data_dir: Path | None = DataDir,
) -> None:
    """Serve the site and the API."""
    settings = _settings(data_dir)
    _serve(settings, open_hub(settings), host, port)


@app.command()
def demo(
    port: int = typer.Option(8000, help="Port for the site and API."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    data_dir: Path | None = DataDir,
    serve_after: bool = typer.Option(True, "--serve/--no-serve", help="Serve site and API after harvesting."),
) -> None:
    """Run the demo city: create the catalogue, harvest every feed over HTTP, build the site, serve it."""
    from api.feed_server import FeedServer

    base = _settings(data_dir)
    feeds = base.definitions_dir
    try:
        with FeedServer(feeds) as server:
            console.print(f"Demo feeds served from {server.url}feeds/")
            settings = _settings(data_dir, feed_base_url=server.url)
            hub = _init(settings)
            outcomes = _harvest(hub, list_sources(hub))
            _build_site(hub)
            bad = [o for o in outcomes if o.status in ("failed", "quarantined")]
            console.print(
                f"{len(outcomes) - len(bad)} of {len(outcomes)} sources harvested without problems. "
                f"Try: urbandata versions parking-occupancy"
            )
            if serve_after:
                _serve(settings, hub, host, port)
            hub.close()
    except UrbandataError as exc:
        _fail(exc)
    if not serve_after and bad:
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover - console entry point
    """Entry point for ``python -m api.cli``."""
    app(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    main()
