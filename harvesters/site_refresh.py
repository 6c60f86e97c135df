"""The static site after harvests: rebuilt incrementally for the datasets a run published."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from catalogue.hub import Hub
from catalogue.sitegen.builder import build_site


def published_datasets(outcomes: Iterable[Any]) -> list[str]:
    """The datasets of the outcomes (runner.HarvestOutcome) that published a version, each once, sorted."""
    return sorted({o.dataset for o in outcomes if o.status == "published"})


def refresh_site(hub: Hub, changed: Iterable[str], progress: Callable[[str], None] | None = None,
                 openapi: dict[str, Any] | None = None) -> Path:
    """Re-render what the ``changed`` datasets touch; the whole site when none was built yet (no manifest:
    the builder decides that under the site's build lock, so of two refreshes at once one builds it whole).

    The incremental build also rewrites the site-wide pages (front page, search index, feeds, sitemap,
    the harvest status page), so they show the new versions too.
    """
    return build_site(hub, progress=progress, changed=sorted(set(changed)), openapi=openapi)
