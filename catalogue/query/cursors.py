"""Keyset cursors: signed, opaque tokens for the position after the last row served.

A token is ``<payload>.<tag>``: the payload (base64url of ``{"v": version, "k":
position}``) and an HMAC-SHA256 over it and the cursor's scope (the version's
parts and the request's filters), under a secret of this installation. Only
a token we issued, for this version and these filters, passes: its tag is
checked before anything in it is read, and its fields are then checked for
type and range as well (a forged ``{"k": 1e400}``, a negative or far-off
position, JSON nested 20,000 deep never reach the engine).

The secret is the ``cursor_secret`` setting, or else made once per
installation (32 random bytes in ``<data_dir>/cursor-secret``, mode 0600), so
every process serving one data directory accepts the others' cursors, across
restarts too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import threading
from pathlib import Path

from catalogue.errors import InvalidParameter
from catalogue.secret_files import load_or_create_secret
from catalogue.settings import Settings

PART_STRIDE = 1 << 40  # position key = part index * stride + row number in the part
TOKEN_MAX_CHARS = 200  # ours are about 60; anything longer is refused unread
TAG_BYTES = 16
SECRET_FILE = "cursor-secret"
INVALID = "The cursor is not valid; start again without 'cursor' and follow links.next."
# For callers that pass no installation secret (benchmarks, scripts): cursors valid in this process only.
PROCESS_SECRET = secrets.token_bytes(32)

log = logging.getLogger("urbandata.cursors")
_secrets: dict[Path, bytes] = {}
_secrets_lock = threading.Lock()


def settings_secret(settings: Settings) -> bytes:
    """The key that signs cursors: the ``cursor_secret`` setting, else the data directory's own."""
    if settings.cursor_secret is not None:
        return settings.cursor_secret.get_secret_value().encode()
    return installation_secret(settings.data_dir)


def installation_secret(data_dir: Path) -> bytes:
    """The cursor secret of the installation at ``data_dir``, made (0600) on first use."""
    if data_dir.is_absolute():  # as given: resolving the path on every request cost a stat per folder
        with _secrets_lock:
            known = _secrets.get(data_dir)
        if known is not None:
            return known
    path = (data_dir / SECRET_FILE).resolve()
    with _secrets_lock:
        known = _secrets.get(path)
        if known is None:
            try:
                known = load_or_create_secret(
                    path, if_unusable="holds no usable secret; remove it to make a new one.")
            except OSError as exc:  # a read-only data directory: cursors still work, in this process
                log.warning("cannot make the cursor secret %s (%s); cursors hold only in this process until "
                            "URBANDATA_CURSOR_SECRET is set", path, exc.strerror or exc)
                known = PROCESS_SECRET
            _secrets[path] = known
        if data_dir.is_absolute():
            _secrets[data_dir] = known
    return known


def cursor_scope(uris: list[str], where: str | None, refine: list[str], exclude: list[str],
                 bbox: tuple[str, float, float, float, float] | None = None) -> bytes:
    """What a cursor is bound to: the version's parts (in order) and the filters that chose its rows."""
    return json.dumps([uris, where, sorted(refine), sorted(exclude)] + ([list(bbox)] if bbox is not None else []),
                      ensure_ascii=False).encode()


def encode_cursor(version: int, key: int, *, scope: bytes, secret: bytes) -> str:
    """The token for the position after ``key`` in ``version``."""
    payload = _b64(json.dumps({"v": version, "k": key}, separators=(",", ":")).encode())
    return f"{payload}.{_b64(_tag(payload, scope, secret))}"


def decode_cursor(token: str, *, version: int, parts: int, scope: bytes, secret: bytes) -> int:
    """The position key in ``token``; InvalidParameter unless we issued it for this version and scope."""
    payload, dot, tag = token.partition(".")
    if not dot or len(token) > TOKEN_MAX_CHARS or not token.isascii():
        raise _invalid()
    # The tag's text, not its decoded bytes: base64 decoding skips stray characters, and a token
    # that is not exactly the one we issued is refused.
    if not hmac.compare_digest(tag, _b64(_tag(payload, scope, secret))):
        raise _invalid()
    try:  # our own bytes from here on; checked all the same
        data = json.loads(base64.urlsafe_b64decode(_padded(payload)))
    except (ValueError, binascii.Error, RecursionError):
        raise _invalid() from None
    if not (isinstance(data, dict) and set(data) == {"v", "k"}
            and all(type(data[k]) is int for k in ("v", "k"))):  # not bool, float or string
        raise _invalid()
    key: int = data["k"]
    if data["v"] != version or not 0 <= key < parts * PART_STRIDE:
        raise _invalid()
    return key


def _tag(payload: str, scope: bytes, secret: bytes) -> bytes:
    message = b"urbandata-cursor-1\0" + hashlib.sha256(scope).digest() + payload.encode("ascii")
    return hmac.new(secret, message, hashlib.sha256).digest()[:TAG_BYTES]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _padded(text: str) -> str:
    return text + "=" * (-len(text) % 4)


def _invalid() -> InvalidParameter:
    return InvalidParameter(INVALID, details={"parameter": "cursor"})
