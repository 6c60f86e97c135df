"""One build of a site directory at a time, across processes and threads.

Two ``harvest --due`` runs, the ``serve`` scheduler and ``build-site`` may each rebuild the site
they published to. A build removes and rewrites a dataset's folders, and decides from the
manifest whether it can be incremental, so two builds at once could remove each other's pages
mid-write or both find no manifest. Each build holds an exclusive ``flock`` on ``.build.lock`` in
the site directory (hidden: never served). The kernel releases it when its process ends however it
ends, so a killed build leaves no stale lock. A queue worker on another host also takes its Redis
lock (``harvesters.queue``).
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from catalogue.errors import SiteBusy

LOCK_FILE = ".build.lock"
WAIT_S = 900.0  # the longest a build waits for another (a full build of thousands of datasets takes minutes)
POLL_S = 0.05


@contextmanager
def site_build_lock(site_dir: Path, wait_s: float = WAIT_S) -> Iterator[None]:
    """Hold ``site_dir``'s build lock until the block ends; SiteBusy after ``wait_s`` seconds of waiting."""
    site_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    with open(site_dir / LOCK_FILE, "a+b") as handle:  # its own open file: threads of one process exclude too
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SiteBusy(
                        f"Another build of the site in {site_dir} has held it for more than {wait_s:.0f} s; "
                        "this build did not start. Run `urbandata build-site` when that one has ended "
                        "(the lock ends with its process).") from None
                time.sleep(POLL_S)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
