"""The harvester seam: one Protocol every source type implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from catalogue.settings import Settings
from catalogue.ingest.pipeline import Delivery


@dataclass(frozen=True)
class SourceSpec:
    """A harvest source as a harvester sees it."""

    name: str
    dataset: str
    url: str
    format: str
    mode: str = "replace"
    options: dict[str, Any] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None  # the source's Last-Modified at the last accepted delivery (If-Modified-Since)


class Harvester(Protocol):
    """Pulls one delivery from a source; returns None when the source reports no change."""

    def __init__(self, settings: Settings) -> None: ...

    def fetch(self, source: SourceSpec) -> Delivery | None:
        """Download the source's current content (raises SourceUnreachable, FeedTooLarge).

        A delivery's ``provenance`` may carry ``etag`` and ``last_modified``: the runner keeps them for
        the next conditional request once the delivery was accepted.
        """
