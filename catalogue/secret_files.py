"""Per-installation secrets kept in the data directory: made once (32 random bytes, hex, mode 0600), then read.

Both the token key (catalogue/meta/tokens.py) and the cursor secret
(catalogue/query/cursors.py) live in such a file, so every process serving one
data directory shares them, across restarts too.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def load_or_create_secret(path: Path, *, if_unusable: str) -> bytes:
    """The secret in ``path``, made there first if missing; ValueError naming the file and ``if_unusable`` if short.

    The file is written under a draft name and linked into place, which is
    atomic and never replaces a secret another process made first.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(descriptor, secrets.token_hex(32).encode())
        finally:
            os.close(descriptor)
        try:
            os.link(draft, path)  # atomic, and never replaces a secret another process made first
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    secret = bytes.fromhex(path.read_text(encoding="ascii").strip())
    if len(secret) < 16:
        raise ValueError(f"{path.name} in the data directory {if_unusable}")
    return secret
