"""API tokens: stored as a keyed hash, shown once, checked with a reason on every refusal; the admin API and CLI."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from api.cli import app as cli
from catalogue.errors import InvalidParameter, MissingScope, TokenExpired, TokenInvalid, TokenRevoked
from catalogue.hub import Hub
from catalogue.meta.models import ApiToken, utcnow
from catalogue.meta.tokens import PREFIX, create_token, list_tokens, revoke_token, verify_token
from tests.api.push_support import bearer, push_hub, serving_api, token


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with push_hub(tmp_path_factory.mktemp("tokens")) as hub:
        yield hub


@pytest.fixture(scope="module")
def api(hub: Hub) -> Iterator[str]:
    with serving_api(hub) as url:
        yield url


def _expire(hub: Hub, plaintext: str) -> None:
    token_id = verify_token(hub, plaintext).token_id
    with hub.sessions.begin() as session:
        session.execute(update(ApiToken).where(ApiToken.id == token_id).values(expires_at=utcnow() - timedelta(seconds=1)))


def test_a_token_is_stored_only_as_a_keyed_hash_and_speaks_for_its_publisher(hub: Hub) -> None:
    plaintext, listing = create_token(hub, "stadtwerke", "cron", ["push", "read-private"])
    assert plaintext.startswith(PREFIX) and len(plaintext) == 47
    assert listing["prefix"] == plaintext[:8] and "token" not in listing and "token_hash" not in listing
    with hub.sessions() as session:
        stored = session.scalars(select(ApiToken).where(ApiToken.id == listing["id"])).one()
        assert plaintext not in (stored.token_hash, stored.prefix) and len(stored.token_hash) == 64
    if hub.settings.resolved_database_url.startswith("sqlite:///"):  # the whole database file, byte for byte
        database = Path(hub.settings.resolved_database_url.removeprefix("sqlite:///"))
        assert plaintext.encode() not in database.read_bytes()
    else:
        with hub.sessions() as session:  # every text column of every token row
            rows = session.execute(select(ApiToken)).scalars().all()
            assert all(plaintext not in repr(vars(row)) for row in rows)
    assert (hub.settings.data_dir / "token-secret").stat().st_mode & 0o077 == 0  # the key: owner only
    credential = verify_token(hub, plaintext)
    assert (credential.publisher, credential.scopes) == ("stadtwerke", frozenset({"push", "read-private"}))
    credential.require("push")
    with pytest.raises(MissingScope, match="no 'admin' scope"):
        credential.require("admin")


def test_wrong_revoked_and_expired_tokens_are_refused_with_their_reason(hub: Hub) -> None:
    with pytest.raises(TokenInvalid, match="not an urbandata token"):
        verify_token(hub, "ghp_" + "x" * 43)
    with pytest.raises(TokenInvalid, match="unknown here"):
        verify_token(hub, PREFIX + "A" * 43)
    revoked = token(hub, "stadtwerke", "push")
    revoke_token(hub, verify_token(hub, revoked).token_id)
    with pytest.raises(TokenRevoked, match="was revoked at"):
        verify_token(hub, revoked)
    expired = token(hub, "stadtwerke", "push")
    _expire(hub, expired)
    with pytest.raises(TokenExpired, match="expired at"):
        verify_token(hub, expired)
    states = {t["prefix"]: t["state"] for t in list_tokens(hub, "stadtwerke")}
    assert (states[revoked[:8]], states[expired[:8]]) == ("revoked", "expired")


def test_scopes_and_names_are_checked_when_a_token_is_made(hub: Hub) -> None:
    with pytest.raises(InvalidParameter, match="Unknown token scope"):
        create_token(hub, "stadtwerke", "x", ["push", "root"])
    with pytest.raises(InvalidParameter, match="at least one scope"):
        create_token(hub, "stadtwerke", "x", [])
    with pytest.raises(InvalidParameter, match="name"):
        create_token(hub, "stadtwerke", "", ["push"])


def test_every_refusal_over_http_is_a_401_with_its_reason_or_a_403_for_a_missing_scope(hub: Hub, api: str) -> None:
    revoked, expired = token(hub, "stadtwerke", "admin"), token(hub, "stadtwerke", "admin")
    revoke_token(hub, verify_token(hub, revoked).token_id)
    _expire(hub, expired)
    cases = {
        "token-missing": {},
        "token-invalid": bearer(PREFIX + "B" * 43),
        "token-revoked": bearer(revoked),
        "token-expired": bearer(expired),
        "missing-scope": bearer(token(hub, "stadtwerke", "push")),
    }
    for code, headers in cases.items():
        answer = httpx.get(f"{api}/tokens", headers=headers)
        assert answer.json()["error"]["code"] == code, answer.text
        assert answer.status_code == (403 if code == "missing-scope" else 401)
        if answer.status_code == 401:
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    malformed = httpx.get(f"{api}/datasets", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert (malformed.status_code, malformed.json()["error"]["code"]) == (401, "token-invalid")
    assert httpx.get(f"{api}/datasets").status_code == 200  # anonymous reads of public data need no token


def test_an_admin_token_makes_lists_and_revokes_its_publishers_tokens(hub: Hub, api: str) -> None:
    admin = bearer(token(hub, "stadtwerke", "admin"))
    made = httpx.post(f"{api}/tokens", json={"name": "parking cron", "scopes": ["push"], "expires_in_days": 30},
                      headers=admin)
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["token"].startswith(PREFIX) and body["publisher"] == "stadtwerke" and body["expires_at"]
    listed = httpx.get(f"{api}/tokens", headers=admin).json()
    assert {t["publisher"] for t in listed["results"]} == {"stadtwerke"}
    assert body["token"] not in made.text.replace(body["token"], "", 1) and body["token"] not in str(listed)
    assert httpx.get(f"{api}/datasets", headers=bearer(body["token"])).status_code == 200
    other_admin = bearer(token(hub, "testamt", "admin"))
    assert httpx.delete(f"{api}/tokens/{body['id']}", headers=other_admin).status_code == 404  # not theirs
    gone = httpx.delete(f"{api}/tokens/{body['id']}", headers=admin)
    assert (gone.status_code, gone.json()["state"]) == (200, "revoked")
    refused = httpx.get(f"{api}/datasets", headers=bearer(body["token"]))
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "token-revoked")
    bad = httpx.post(f"{api}/tokens", json={"name": "x", "scopes": ["everything"]}, headers=admin)
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid-parameter")


def test_the_cli_makes_a_token_shown_once_lists_and_revokes_it(hub: Hub) -> None:
    data_dir = str(hub.settings.data_dir)
    made = CliRunner().invoke(cli, ["token", "create", "-d", data_dir, "--publisher", "testamt", "--name", "nightly",
                                    "--scope", "push", "--scope", "read-private", "--expires-in-days", "7"])
    assert made.exit_code == 0, made.output
    plaintext = made.stdout.strip().splitlines()[-1]
    assert verify_token(hub, plaintext).publisher == "testamt"
    listed = CliRunner().invoke(cli, ["token", "list", "-d", data_dir, "--publisher", "testamt"])
    assert listed.exit_code == 0 and plaintext[:8] in listed.stdout and plaintext not in listed.stdout
    token_id = verify_token(hub, plaintext).token_id
    revoked = CliRunner().invoke(cli, ["token", "revoke", "-d", data_dir, str(token_id)])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    with pytest.raises(TokenRevoked):
        verify_token(hub, plaintext)
    unknown = CliRunner().invoke(cli, ["token", "create", "-d", data_dir, "--publisher", "nobody", "--name", "x",
                                       "--scope", "push"])
    assert unknown.exit_code == 1 and "publisher-not-found" in unknown.output
