"""Copy the site's static files (CSS, its own JS and the vendored libraries) into a built site.

The vendored libraries weigh ~38 MB (DuckDB-WASM's module alone 34 MB), so every file is
hard-linked where source and site share a file system and copied where they do not
(another device, or a file system without links). A file already there with the same size
and modification time is left alone, so a rebuild touches nothing that did not change.
Hard links are safe here: neither the builder nor a static server writes into these files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def _link_or_copy(source: str, target: str) -> str:
    src, dst = os.stat(source), None
    try:
        dst = os.stat(target)
    except FileNotFoundError:
        pass
    if dst is not None:
        if dst.st_ino == src.st_ino or (dst.st_size == src.st_size and dst.st_mtime_ns == src.st_mtime_ns):
            return target
        os.unlink(target)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
    return target


def copy_static(source: Path, target: Path) -> None:
    """Mirror the folder ``source`` into ``target`` (hard links where possible)."""
    shutil.copytree(source, target, dirs_exist_ok=True, copy_function=_link_or_copy,
                    ignore=shutil.ignore_patterns(".*"))
