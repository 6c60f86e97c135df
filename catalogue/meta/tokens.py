"""Publishers' API tokens: made, checked, listed and revoked; only a keyed hash of each is kept.

A token is ``udt_`` and 43 random base64url characters (256 bits): the prefix
lets secret scanners recognise a leaked one. The catalogue keeps its
HMAC-SHA256 under a key of this installation (the ``token_secret`` setting,
else 32 random bytes made once in ``<data_dir>/token-secret``, mode 0600), so
a copy of the database alone gives no usable token, and a token is found by
its hash in one indexed lookup (random tokens need no slow hash: there is no
dictionary to try).

A token belongs to one publisher and carries scopes: ``push`` (deliver to the
publisher's datasets), ``admin`` (manage the publisher's datasets and
tokens), ``read-private`` (read the publisher's private datasets). The
plaintext is shown once, when it is made.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import selectinload

from catalogue.errors import (
    InvalidParameter, MissingScope, TokenExpired, TokenInvalid, TokenNotFound, TokenRevoked,
)
from catalogue.hub import Hub
from catalogue.meta.metadata import get_publisher
from catalogue.meta.models import ApiToken, utcnow
from catalogue.secret_files import load_or_create_secret
from catalogue.settings import Settings

PREFIX = "udt_"
SCOPES = ("push", "admin", "read-private")
SECRET_FILE = "token-secret"
TOKEN_CHARS = len(PREFIX) + 43
SHOWN_CHARS = 8  # "udt_" and four more: tells tokens apart in lists, useless to an attacker
LAST_USED_EVERY = timedelta(minutes=5)  # last_used_at is written at most this often per token

log = logging.getLogger(__name__)
_keys: dict[Path, bytes] = {}
_keys_lock = threading.Lock()


@dataclass(frozen=True)
class Credential:
    """Who a valid token speaks for: its id, publisher and scopes."""

    token_id: int
    publisher_id: int
    publisher: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        """MissingScope (403) unless the token has ``scope``."""
        if scope not in self.scopes:
            raise MissingScope(
                f"This token has no '{scope}' scope (it has: {', '.join(sorted(self.scopes)) or 'none'}). "
                f"Make a token with --scope {scope} (urbandata token create).",
                details={"required_scope": scope, "token_scopes": sorted(self.scopes)},
            )


def token_key(settings: Settings) -> bytes:
    """The key tokens are hashed under: the ``token_secret`` setting, else the data directory's own."""
    if settings.token_secret is not None:
        return settings.token_secret.get_secret_value().encode()
    path = (settings.data_dir / SECRET_FILE).resolve()
    with _keys_lock:
        known = _keys.get(path)
        if known is None:
            known = _keys[path] = load_or_create_secret(
                path, if_unusable="holds no usable key; tokens made under it are lost.")
    return known


def hash_token(settings: Settings, token: str) -> str:
    """The keyed hash stored for ``token`` (hex)."""
    return hmac.new(token_key(settings), token.encode(), hashlib.sha256).hexdigest()


def check_scopes(scopes: list[str]) -> list[str]:
    """``scopes`` without repeats, in the order of SCOPES; InvalidParameter for an unknown or empty list."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise InvalidParameter(
            f"Unknown token scope(s) {unknown}; choose from {', '.join(SCOPES)}." if unknown
            else f"A token needs at least one scope: {', '.join(SCOPES)}.",
            details={"parameter": "scopes", "allowed": list(SCOPES)},
        )
    return [s for s in SCOPES if s in scopes]


def create_token(hub: Hub, publisher: str, name: str, scopes: list[str], *,
                 expires_in_days: int | None = None) -> tuple[str, dict[str, Any]]:
    """A new token for ``publisher``: its plaintext (shown once, never stored) and its listing."""
    chosen = check_scopes(scopes)
    if not name or len(name) > 100:
        raise InvalidParameter("A token's name must have 1 to 100 characters (say what uses it).",
                               details={"parameter": "name"})
    if expires_in_days is not None and not 0 < expires_in_days <= 3650:
        raise InvalidParameter(f"expires_in_days must be between 1 and 3650; got {expires_in_days}.",
                               details={"parameter": "expires_in_days"})
    plaintext = PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    with hub.sessions.begin() as session:
        org = get_publisher(session, publisher)
        token = ApiToken(publisher_id=org.id, name=name, prefix=plaintext[:SHOWN_CHARS],
                         token_hash=hash_token(hub.settings, plaintext), scopes=chosen, created_at=now,
                         expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None)
        session.add(token)
        session.flush()
        token.publisher = org
        return plaintext, token_dict(token)


def verify_token(hub: Hub, plaintext: str) -> Credential:
    """Who ``plaintext`` speaks for; TokenInvalid, TokenRevoked or TokenExpired (401) saying which."""
    if not plaintext.startswith(PREFIX) or len(plaintext) != TOKEN_CHARS or not plaintext.isascii():
        raise TokenInvalid(f"The bearer token is not an urbandata token (they start with '{PREFIX}' and have "
                           f"{TOKEN_CHARS} characters). Send 'Authorization: Bearer {PREFIX}…'.")
    digest = hash_token(hub.settings, plaintext)
    now = utcnow()
    with hub.sessions() as session:
        token = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest)
                               .options(selectinload(ApiToken.publisher)))
        if token is None:
            raise TokenInvalid("The bearer token is unknown here (mistyped, or made for another hub). "
                               "Ask the hub's administrator for a token.")
        if token.revoked_at is not None:
            raise TokenRevoked(f"Token {token.prefix}… ('{token.name}') was revoked at "
                               f"{token.revoked_at.isoformat()}; ask for a new one.")
        if token.expires_at is not None and token.expires_at <= now:
            raise TokenExpired(f"Token {token.prefix}… ('{token.name}') expired at "
                               f"{token.expires_at.isoformat()}; ask for a new one.")
        credential = Credential(token.id, token.publisher_id, token.publisher.name, frozenset(token.scopes))
        stale = token.last_used_at is None or now - token.last_used_at >= LAST_USED_EVERY
    if stale:
        try:
            with hub.sessions.begin() as session:
                found = session.get(ApiToken, credential.token_id)
                if found is not None:
                    found.last_used_at = now
        except SQLAlchemyError as exc:  # bookkeeping only: a busy database must not refuse a valid token
            log.warning("last use of token %s not recorded: %s", credential.token_id, type(exc).__name__)
    return credential


def list_tokens(hub: Hub, publisher: str | None = None) -> list[dict[str, Any]]:
    """Every token (of ``publisher``), newest first, without anything that could be used as one."""
    with hub.sessions() as session:
        query = select(ApiToken).options(selectinload(ApiToken.publisher)).order_by(ApiToken.id.desc())
        if publisher is not None:
            query = query.where(ApiToken.publisher_id == get_publisher(session, publisher).id)
        return [token_dict(t) for t in session.scalars(query)]


def revoke_token(hub: Hub, token_id: int, publisher: str | None = None) -> dict[str, Any]:
    """Revoke token ``token_id`` (of ``publisher``, when given) from now on; its listing. Idempotent."""
    with hub.sessions.begin() as session:
        token = session.scalar(select(ApiToken).where(ApiToken.id == token_id)
                               .options(selectinload(ApiToken.publisher)))
        if token is None or (publisher is not None and token.publisher.name != publisher):
            owner = f" of publisher '{publisher}'" if publisher else ""
            raise TokenNotFound(f"There is no token {token_id}{owner}; list them with 'urbandata token list'.")
        if token.revoked_at is None:
            token.revoked_at = utcnow()
        return token_dict(token)


def token_dict(token: ApiToken) -> dict[str, Any]:
    """A token as JSON-ready listing: never its hash or plaintext."""
    def when(moment: datetime | None) -> str | None:
        return moment.astimezone(timezone.utc).isoformat() if moment is not None else None

    now = utcnow()
    state = ("revoked" if token.revoked_at is not None
             else "expired" if token.expires_at is not None and token.expires_at <= now else "active")
    return {"id": token.id, "name": token.name, "prefix": token.prefix, "publisher": token.publisher.name,
            "scopes": list(token.scopes), "state": state, "created_at": when(token.created_at),
            "expires_at": when(token.expires_at), "revoked_at": when(token.revoked_at),
            "last_used_at": when(token.last_used_at)}
