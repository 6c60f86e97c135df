"""The ``urbandata`` command line."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable
from datetime import timedelta
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from api.cli_catalogues import harvest_catalogue_command
from api.cli_follow import follow_command
from api.cli_iceberg import iceberg_sync_command
from api.cli_push import push as push_command
from api.cli_token import token_app
from api.cli_worker import worker_command
from api.logs import configure_logging
from api.openapi_doc import openapi_document
from catalogue.meta.definitions import load_definitions, publisher_names, sync_definitions
from catalogue.errors import CatalogueNotFound, PortInUse, UrbandataError
from catalogue.ingest.gc import collect
from catalogue.ingest.jobs import describe
from catalogue.hub import Hub, open_hub
from catalogue.meta.db import (
    catalogue_exists,
    create_catalogue_engine,
    current_revision,
    head_revision,
    known_revisions,
    upgrade_schema,
)
from catalogue.meta.models import HarvestJob
from catalogue.redact import redact_url
from catalogue.meta.metadata import get_dataset, list_versions
from catalogue.settings import CONFIG_ENV, Settings
from catalogue.sitegen.builder import build_site
from harvesters.catalogue_definitions import load_catalogues
from harvesters.runner import HarvestOutcome, harvest_source, list_sources
from harvesters.schedule import HarvestScheduler, check_queue, check_schedules, due_states, harvest_due
from harvesters.site_refresh import published_datasets, refresh_site

app = typer.Typer(
    help="urbandata: an open urban-data hub. Harvest, validate, version, query and publish a city's open data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

db_app = typer.Typer(help="The catalogue database: its schema version and migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")
app.command("push")(push_command)
app.command("harvest-catalogue")(harvest_catalogue_command)
app.command("follow")(follow_command)
app.command("iceberg-sync")(iceberg_sync_command)
app.command("worker")(worker_command)

DataDir = typer.Option(None, "--data-dir", "-d", help="Data directory (default ./var, or URBANDATA_DATA_DIR).")
STYLES = {"queued": "blue", "published": "green", "unchanged": "cyan", "quarantined": "yellow", "failed": "red"}
SHOWN_ERRORS = 5  # validation errors printed for a quarantined delivery; the report holds them all


def _version_text() -> str:
    try:
        return f"urbandata {package_version('urbandata')}"
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "urbandata (not installed)"


def _print_version(value: bool) -> None:
    if value:
        console.print(_version_text())
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
    config: Path | None = typer.Option(
        None, "--config", help=f"TOML file of settings (sets {CONFIG_ENV}); URBANDATA_* variables override it."
    ),
) -> None:
    """urbandata: an open urban-data hub. Harvest, validate, version, query and publish a city's open data."""
    if config is not None:
        os.environ[CONFIG_ENV] = str(config)


def _settings(data_dir: Path | None, **overrides: Any) -> Settings:
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    try:
        settings = Settings(**overrides)
    except UrbandataError as exc:  # the config file is missing or no TOML
        _fail(exc)
        raise
    configure_logging(settings.log_format)
    return settings


def _fail(exc: UrbandataError) -> None:
    err.print(f"[red]error[/red] {escape(f'[{exc.code}] {exc.message}')}")
    raise typer.Exit(1)


def _where(settings: Settings) -> str:
    """The catalogue's place in words, without a database password."""
    if settings.database_url:
        return "the database of URBANDATA_DATABASE_URL"
    return str(settings.data_dir.resolve())


def _require_catalogue(settings: Settings) -> None:
    """Fail unless the settings point at a catalogue; a mistyped --data-dir must not quietly make a new, empty one."""
    if not catalogue_exists(settings):
        raise CatalogueNotFound(
            f"There is no catalogue in {_where(settings)}. Create one with `urbandata init` "
            f"(or run `urbandata demo` for the demo city), or give the right --data-dir."
        )


def _open_existing(settings: Settings) -> Hub:
    """The hub of an existing catalogue (upgraded to this release's schema when needed)."""
    _require_catalogue(settings)
    return open_hub(settings)


def _upgrade(settings: Settings) -> None:
    """Bring the catalogue schema to this release, saying so when it changed anything."""
    engine = create_catalogue_engine(settings)
    try:
        before, after = upgrade_schema(engine)
    finally:
        engine.dispose()
    if before is not None and before != after:
        console.print(f"Catalogue schema upgraded from {before} to {after}.")


def _public_url(settings: Settings, host: str, port: int) -> Settings:
    """Settings whose public URL follows the server's port, unless one was configured."""
    if "public_url" in settings.model_fields_set:
        return settings
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return settings.model_copy(update={"public_url": f"http://{shown}:{port}"})


def _bind(host: str, port: int) -> socket.socket:
    """The server's socket, bound before any work: a taken port fails first, naming the option that changes it.

    The bound socket is handed to the server, so no other program can take the port in between;
    port 0 binds any free port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, as uvicorn's own binding does: asyncio sets TCP_NODELAY only on connections of a
    # socket that says so, and without it a response's body waited for the client's delayed ACK of its
    # headers, 40 ms on every request but a connection's first (/health: 47 ms a request, 8 keep-alive
    # connections served 174 requests a second).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closing socket is no obstacle
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUse(
            f"Port {port} on {host} is not free ({exc.strerror}); another program listens there. "
            f"Choose another with --port, e.g. --port {port + 1}."
        ) from exc
    return sock


def _init(settings: Settings) -> Hub:
    _upgrade(settings)
    hub = open_hub(settings)
    definitions = load_definitions(settings.definitions_dir)
    sync_definitions(hub, definitions)
    console.print(
        f"Catalogue in [bold]{settings.data_dir.resolve()}[/bold]: "
        f"{len(definitions.publishers)} publishers, {len(definitions.datasets)} datasets."
    )
    return hub


def _harvest(hub: Hub, names: list[str],
             run: Callable[[str], HarvestOutcome | None] | None = None) -> list[HarvestOutcome]:
    """Harvest ``names`` with progress and a summary; ``run`` (default: harvest_source) returns None for a
    run another process claimed, which is said and left out."""
    outcomes = []
    with Progress(
        SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
        MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True,
    ) as progress:
        task = progress.add_task("Harvesting", total=len(names))
        for name in names:
            progress.update(task, description=f"Harvesting {name}")
            outcome = harvest_source(hub, name) if run is None else run(name)
            if outcome is None:
                progress.console.print(f"  [dim]{'skipped':>11}[/dim]  {escape(name)}: another process harvests it")
                progress.advance(task)
                continue
            outcomes.append(outcome)
            style = STYLES.get(outcome.status, "white")
            progress.console.print(f"  [{style}]{outcome.status:>11}[/{style}]  {outcome.message}")
            if outcome.status == "quarantined" and outcome.job_id is not None:
                _print_quarantine(hub, outcome, progress.console)
            progress.advance(task)
    if outcomes:
        console.print(_summary(outcomes))
    return outcomes


def _summary(outcomes: list[HarvestOutcome]) -> Table:
    """One row per harvest run: status, version, rows added/removed/changed, time, and why when it failed."""
    table = Table("source", "status", "version", "+rows", "−rows", "~rows", "seconds", "note", title="Harvest summary")
    for o in outcomes:
        style = STYLES.get(o.status, "white")
        c = o.changes or {}
        note = f"[{o.error_code}]" if o.error_code else ""
        table.add_row(escape(o.source), f"[{style}]{o.status}[/{style}]", str(o.version or "—"),
                      str(c.get("added", "")), str(c.get("removed", "")), str(c.get("changed", "")),
                      f"{o.seconds:.1f}" if o.seconds is not None else "", escape(note))
    counts = {status: sum(o.status == status for o in outcomes) for status in STYLES}
    table.caption = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    return table


def _report_errors(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every error of a Frictionless report: the report's own, then each task's."""
    found = list(report.get("errors", []))
    for task in report.get("tasks", []):
        found += task.get("errors", [])
    return found


def _print_quarantine(hub: Hub, outcome: HarvestOutcome, out: Console) -> None:
    """The first few errors of a quarantined delivery, and where its full report is."""
    with hub.sessions() as session:
        job = session.get(HarvestJob, outcome.job_id)
        report_key = job.report_key if job else None
    if report_key is None:
        return
    errors = _report_errors(json.loads(hub.storage.read_bytes(report_key)))
    for error in errors[:SHOWN_ERRORS]:
        row = f"row {error['rowNumber']}" if "rowNumber" in error else "file"
        field = f", field {error['fieldName']}" if error.get("fieldName") else ""
        out.print(f"               {escape(row + field)}: {escape(str(error.get('message') or error.get('note', '')))}", soft_wrap=True)
    if len(errors) > SHOWN_ERRORS:
        out.print(f"               … and {len(errors) - SHOWN_ERRORS} more in the report.", soft_wrap=True)
    settings = hub.settings
    url = (f"{settings.public_url.rstrip('/')}{settings.api_prefix}/datasets/{outcome.dataset}"
           f"/deliveries/{outcome.job_id}/report")
    out.print(f"               report: {escape(hub.storage.engine_uri(report_key))}", soft_wrap=True)
    out.print(f"               served at: {escape(url)}", soft_wrap=True)


def _build_site(hub: Hub, changed: list[str] | None = None) -> Path:
    """The whole site, or with ``changed`` (datasets just published) only what they touch."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True) as progress:
        task = progress.add_task("Building site")
        show = lambda name: progress.update(task, description=f"Building site: {name}")  # noqa: E731
        out = (build_site(hub, progress=show, openapi=openapi_document(hub)) if changed is None
               else refresh_site(hub, changed, progress=show, openapi=openapi_document(hub)))
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
    definitions: Path | None = typer.Option(
        None, help="Definitions directory (default: URBANDATA_DEFINITIONS_DIR, or the bundled datasets/)."
    ),
    data_dir: Path | None = DataDir,
) -> None:
    """Check every dataset definition, publisher, Table Schema and catalogue source (catalogues/*.yaml) in
    datasets/, reporting every problem at once."""
    root = definitions or _settings(data_dir).definitions_dir
    errors: list[UrbandataError] = []
    try:
        found = load_definitions(root)
        check_schedules(found.datasets)
    except UrbandataError as exc:
        errors.append(exc)
    try:
        catalogues = load_catalogues(root, publisher_names(root))
    except UrbandataError as exc:
        errors.append(exc)
    if errors:
        for error in errors[:-1]:
            err.print(f"[red]error[/red] {escape(f'[{error.code}] {error.message}')}")
        _fail(errors[-1])
        return
    for doc in found.datasets:
        console.print(f"  [green]ok[/green]  {doc['name']}  ({len(doc['schema'].fields)} fields)")
    for spec in catalogues:
        console.print(f"  [green]ok[/green]  catalogue {spec.name}  ({spec.type}, {escape(redact_url(spec.url))})")
    console.print(f"{len(found.datasets)} dataset definitions and {len(found.publishers)} publishers are valid.")
    if catalogues:
        console.print(f"{len(catalogues)} catalogue source definitions are valid.")


@app.command()
def harvest(
    name: str | None = typer.Argument(None, help="Harvest source (dataset) name."),
    all_sources: bool = typer.Option(False, "--all", help="Harvest every source."),
    due: bool = typer.Option(False, "--due", help="Harvest the sources whose schedule is due, once each."),
    feed_base_url: str | None = typer.Option(
        None,
        help="Root URL of the feed server that relative source URLs (like feeds/car-parks.geojson) resolve against: "
        "http://127.0.0.1:8001/, not the feeds/ folder under it.",
    ),
    data_dir: Path | None = DataDir,
) -> None:
    """Harvest one source, all with --all, or the due ones with --due; rebuilds the site after a publication.

    Exits 1 if any delivery failed or was quarantined.
    """
    if [bool(name), all_sources, due].count(True) != 1:
        err.print("Give a source name, --all or --due (one of them).")
        raise typer.Exit(2)
    overrides = {"feed_base_url": feed_base_url} if feed_base_url else {}
    try:
        hub = _open_existing(_settings(data_dir, **overrides))
        if due:
            check_queue(hub)  # with a job queue, due runs are sent there: it must answer
        states = {s.source: s for s in due_states(hub)} if due else {}
        names = list_sources(hub) if all_sources else list(states) if due else [name]
        if due and not names:
            console.print("No source is due.")
        claimed = (lambda source: harvest_due(hub, states[source])) if due else None  # one process runs each
        outcomes = _harvest(hub, names, claimed) if names else []  # type: ignore[arg-type]
        if published_datasets(outcomes):
            _build_site(hub, changed=published_datasets(outcomes))
    except UrbandataError as exc:
        _fail(exc)
        return
    except Exception as exc:  # noqa: BLE001 - e.g. the catalogue cannot be opened (disk full): a message, no traceback
        _fail(describe(exc))
        return
    hub.close()
    if any(o.status in ("failed", "quarantined") for o in outcomes):
        raise typer.Exit(1)


@app.command("build-site")
def build_site_command(data_dir: Path | None = DataDir) -> None:
    """Build the static catalogue site into the data directory."""
    try:
        hub = _open_existing(_settings(data_dir))
    except UrbandataError as exc:
        _fail(exc)
        return
    _build_site(hub)
    hub.close()


@app.command()
def versions(name: str, data_dir: Path | None = DataDir) -> None:
    """List the published versions of a dataset."""
    try:
        hub = _open_existing(_settings(data_dir))
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
    hub.close()


@app.command("gc")
def gc_command(
    grace_hours: float = typer.Option(6.0, min=0, help="Keep anything written within this many hours."),
    data_dir: Path | None = DataDir,
) -> None:
    """Remove leftovers (downloads, scratch and export files, unreferenced parts) and end jobs whose process is gone."""
    try:
        hub = _open_existing(_settings(data_dir))
    except UrbandataError as exc:
        _fail(exc)
        return
    done = collect(hub, grace=timedelta(hours=grace_hours))
    hub.close()
    for name, size in done.files:
        console.print(f"  removed  {escape(name)}  ({size:,} bytes)")
    for job in done.jobs:
        console.print(f"  job {job.job_id}  {job.status}: {escape(job.message)}")
    console.print(done.summary())


@app.command("settings")
def settings_command(data_dir: Path | None = DataDir) -> None:
    """List every setting: environment variable, value in effect and meaning (generated from the code)."""
    current = _settings(data_dir)
    longest = max(len(f"URBANDATA_{n}") for n in Settings.model_fields)
    table = Table("value", "meaning")
    table.columns.insert(0, Column("environment variable", no_wrap=True, min_width=longest))
    for name, field in Settings.model_fields.items():
        table.add_row(f"URBANDATA_{name.upper()}", str(getattr(current, name)), field.description or "")
    console.print(table)


def _serve(settings: Settings, hub: Hub, sock: socket.socket) -> None:
    from api.app import create_app
    from api.server import make_server, run_server

    host, port = sock.getsockname()[:2]
    server = make_server(create_app(settings, hub), host, port)
    shown = f"[{host}]" if ":" in host else host
    console.print(
        f"Serving site and API on [bold]http://{shown}:{port}/[/bold]  (API: /api/v1/datasets, "
        f"OpenAPI: /openapi.json). Stop with Ctrl-C.",
        soft_wrap=True,  # the URL stays on one line, for a terminal click or a script reading it
    )
    run_server(server, sock)
    console.print("Stopped.")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port to listen on (0: any free port)."),
    data_dir: Path | None = DataDir,
    harvest_due: bool = typer.Option(True, "--harvest-due/--no-harvest-due",
                                     help="Harvest due sources in the background (one at a time), rebuilding the "
                                     "site after each round that publishes."),
) -> None:
    """Serve the site and the API (upgrading the catalogue schema first when this release needs it)."""
    try:
        sock = _bind(host, port)
    except UrbandataError as exc:
        _fail(exc)
        return
    try:
        settings = _public_url(_settings(data_dir), host, sock.getsockname()[1])
        _require_catalogue(settings)
        _upgrade(settings)
        hub = open_hub(settings)
    except UrbandataError as exc:
        sock.close()
        _fail(exc)
        return
    scheduler = HarvestScheduler(hub, after_publish=lambda names: refresh_site(hub, names)).start() if harvest_due else None
    try:
        _serve(settings, hub, sock)
    finally:
        if scheduler is not None:
            scheduler.stop()


@app.command()
def demo(
    port: int = typer.Option(8000, help="Port for the site and API (0: any free port)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    data_dir: Path | None = DataDir,
    serve_after: bool = typer.Option(True, "--serve/--no-serve", help="Serve site and API after harvesting."),
) -> None:
    """Run the demo city: create the catalogue, harvest every feed over HTTP, build the site, serve it."""
    from api.feed_server import FeedServer
    from api.demo_live import feeding
    from api.demo_sources import start_demo_sources

    base = _settings(data_dir)
    feeds = base.definitions_dir
    sock: socket.socket | None = None
    try:
        sock = _bind(host, port) if serve_after else None
        if sock is not None:
            port = sock.getsockname()[1]
        with FeedServer(feeds) as server:
            console.print(f"Demo feeds served from {server.url}feeds/ (feed base URL {server.url})")
            # The demo's feeds are on loopback, which harvests may only reach when allow-listed.
            allowed = [*base.harvest_allowed_hosts, "127.0.0.1"]
            settings = _public_url(_settings(data_dir, feed_base_url=server.url, harvest_allowed_hosts=allowed), host, port)
            hub = _init(settings)
            start_demo_sources(hub, console, live=sock is not None)  # pygeoapi and MQTT, when installed and reachable
            outcomes = _harvest(hub, list_sources(hub))
            _build_site(hub)
            bad = [o for o in outcomes if o.status in ("failed", "quarantined")]
            console.print(
                f"{len(outcomes) - len(bad)} of {len(outcomes)} sources harvested without problems. "
                f"Try: urbandata versions parking-occupancy"
            )
            if sock is not None:
                with feeding(hub, host, port):  # Stadtwerke push parking readings meanwhile
                    _serve(settings, hub, sock)
            hub.close()
    except UrbandataError as exc:
        if sock is not None:
            sock.close()
        _fail(exc)
    if not serve_after and bad:
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(data_dir: Path | None = DataDir) -> None:
    """Upgrade the catalogue schema to this release's newest migration (init, demo and serve do it when needed)."""
    settings = _settings(data_dir)
    try:
        _require_catalogue(settings)
        engine = create_catalogue_engine(settings)
        try:
            before, after = upgrade_schema(engine)
        finally:
            engine.dispose()
    except UrbandataError as exc:
        _fail(exc)
        return
    if before == after:
        console.print(f"The catalogue schema is at {after}, the newest migration: nothing to do.")
    else:
        console.print(f"Catalogue schema upgraded from {before} to {after}.")


@db_app.command("current")
def db_current(data_dir: Path | None = DataDir) -> None:
    """Show the catalogue schema's migration and this release's newest."""
    settings = _settings(data_dir)
    try:
        _require_catalogue(settings)
    except UrbandataError as exc:
        _fail(exc)
        return
    engine = create_catalogue_engine(settings)
    try:
        found, head = current_revision(engine), head_revision()
    finally:
        engine.dispose()
    if found == head:
        state = "up to date"
    elif found in known_revisions():
        state = "run `urbandata db upgrade`"
    else:
        state = "made by a newer release of urbandata"
    console.print(f"catalogue schema: {found}; newest migration: {head} ({state})")


def main() -> None:  # pragma: no cover - console entry point
    """Entry point for ``python -m api.cli``."""
    app(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    main()
