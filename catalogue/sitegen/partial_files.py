"""Site files written whole: a writer fills a file of its own beside the target, then renames it over the target.

Two processes may build the same site at once (two ``harvest --due`` runs, each rebuilding what it
published): each needs a partial file no other writer uses, or one's rename takes the other's file away
and the second rename fails. The last rename wins; both wrote the same content.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def partial_path(target: Path) -> Path:
    """A name beside ``target`` that this writer alone uses, to be renamed over it (``os.replace``) when whole."""
    return target.with_name(f"{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
