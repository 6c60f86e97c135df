"""``urbandata token create|list|revoke``: publishers' API tokens, made on the hub's own machine.

The first token of a publisher (usually one with the ``admin`` scope) is made
here; an admin token then makes more through ``/api/v1/tokens``. A token is
printed once, on stdout alone, so ``TOKEN=$(urbandata token create …)`` keeps it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer
from rich.markup import escape

from catalogue.errors import UrbandataError
from catalogue.hub import Hub
from catalogue.meta.tokens import SCOPES, create_token, list_tokens, revoke_token

token_app = typer.Typer(help="API tokens of publishers: create, list, revoke.", no_args_is_help=True)
DataDir = typer.Option(None, "--data-dir", "-d", help="Data directory (default ./var, or URBANDATA_DATA_DIR).")
T = TypeVar("T")


def _on_catalogue(data_dir: Path | None, work: Callable[[Hub], T]) -> T:
    """``work`` done on the existing catalogue of ``data_dir``, closed after; an UrbandataError ends the command."""
    from api.cli import _fail, _open_existing, _settings

    try:
        hub = _open_existing(_settings(data_dir))
        try:
            return work(hub)
        finally:
            hub.close()
    except UrbandataError as exc:
        _fail(exc)  # prints it and exits 1
        raise


@token_app.command("create")
def create(
    publisher: str = typer.Option(..., "--publisher", "-p", help="The publisher the token speaks for."),
    name: str = typer.Option(..., "--name", "-n", help="What uses the token (e.g. 'parking cron job')."),
    scope: list[str] = typer.Option(..., "--scope", "-s", help=f"A scope ({', '.join(SCOPES)}); repeat for more."),
    expires_in_days: int | None = typer.Option(None, "--expires-in-days", help="Days until it expires (default: never)."),
    data_dir: Path | None = DataDir,
) -> None:
    """Make a token; it is printed once, on stdout, and never stored in clear."""
    from api.cli import err

    plaintext, listing = _on_catalogue(
        data_dir, lambda hub: create_token(hub, publisher, name, scope, expires_in_days=expires_in_days))
    err.print(f"token {listing['id']} for {escape(publisher)} ({', '.join(listing['scopes'])}); "
              "shown once: keep it in a secret store or in URBANDATA_TOKEN")
    typer.echo(plaintext)


@token_app.command("list")
def list_command(
    publisher: str | None = typer.Option(None, "--publisher", "-p", help="Only this publisher's tokens."),
    data_dir: Path | None = DataDir,
) -> None:
    """List tokens (never their secret part)."""
    from api.cli import console

    found = _on_catalogue(data_dir, lambda hub: list_tokens(hub, publisher))
    for t in found:  # one line per token: readable in a narrow terminal and by grep
        expires = (t["expires_at"] or "never")[:16]
        used = (t["last_used_at"] or "never used")[:16]
        console.print(f"{t['id']:>4}  {t['prefix']}…  {t['state']:<7}  {escape(t['publisher'])}  "
                      f"{escape(t['name'])}  [{', '.join(t['scopes'])}]  expires {expires}  last used {used}",
                      soft_wrap=True, highlight=False)
    if not found:
        console.print("no tokens")


@token_app.command("revoke")
def revoke(
    token_id: int = typer.Argument(..., help="The token's id, as listed."),
    data_dir: Path | None = DataDir,
) -> None:
    """Revoke a token: from now on it is refused (401 token-revoked)."""
    from api.cli import console

    listing = _on_catalogue(data_dir, lambda hub: revoke_token(hub, token_id))
    console.print(f"token {listing['id']} ({listing['prefix']}…, {escape(listing['name'])}) revoked")
