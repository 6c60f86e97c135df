"""Storage keys: where each kind of file lies in the store (one place, for the read and the write path)."""

from __future__ import annotations


def part_key(dataset: str, sha256: str) -> str:
    """Storage key of a content-addressed part."""
    return f"datasets/{dataset}/parts/{sha256}.parquet"


def descriptor_key(dataset: str, number: int) -> str:
    """Storage key of a version's Data Package descriptor."""
    return f"datasets/{dataset}/v{number}.datapackage.json"


def latest_key(dataset: str, number: int, content_hash: str) -> str:
    """Storage key of a version's latest row per entity (``catalogue.store.live``)."""
    return f"datasets/{dataset}/live/v{number}-{content_hash[:16]}.latest.parquet"


def delta_key(dataset: str, number: int, content_hash: str) -> str:
    """Storage key of the rows a version added to the one before it, when they are not its own parts."""
    return f"datasets/{dataset}/live/v{number}-{content_hash[:16]}.delta.parquet"
