"""Site files written whole: a writer fills a file of its own beside the target, then renames it over the target.

The API serves the site while it is rebuilt, so a reader sees a file's old bytes or its new ones, never
half of them. Builds of one site take turns (``build_lock``), but a partial file of its own per writer
keeps a rename safe even beside a writer outside that lock: one writer's rename never takes another's
partial file away.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def partial_path(target: Path) -> Path:
    """A name beside ``target`` that this writer alone uses, to be renamed over it (``os.replace``) when whole."""
    return target.with_name(f"{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")


def write_whole(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` whole: into this writer's own partial file, then renamed over ``target``."""
    partial = partial_path(target)
    partial.write_bytes(data)
    os.replace(partial, target)
