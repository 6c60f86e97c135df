"""The plugin registry: the hub's seams, found through entry points.

Built-ins register through the same entry points (see pyproject.toml) a
third-party package would use; the registry is built once at start-up and
passed down. An unknown name raises an error that lists the known ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from catalogue.errors import UnknownPlugin

SEAMS = {
    "harvesters": "urbandata.harvesters",
    "storage": "urbandata.storage",
    "metadata_exporters": "urbandata.metadata_exporters",  # documents about a version (Data Package, DCAT)
    "export_formats": "urbandata.export_formats",  # a version's rows as a download (csv, parquet, ...)
}


@dataclass
class Registry:
    """Plugin classes by seam and name."""

    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)

    def get(self, seam: str, name: str) -> Any:
        """The plugin registered under ``name`` for ``seam``."""
        known = self.plugins.get(seam, {})
        if name not in known:
            names = ", ".join(sorted(known)) or "none"
            raise UnknownPlugin(f"No {seam} plugin named '{name}'. Known {seam} plugins: {names}.")
        return known[name]

    def names(self, seam: str) -> list[str]:
        """Registered plugin names of one seam, sorted."""
        return sorted(self.plugins.get(seam, {}))

    def register(self, seam: str, name: str, plugin: Any) -> None:
        """Add a plugin by hand (tests, embedding applications)."""
        self.plugins.setdefault(seam, {})[name] = plugin


def load_registry() -> Registry:
    """Build the registry from the installed entry points."""
    registry = Registry()
    for seam, group in SEAMS.items():
        for ep in entry_points(group=group):
            registry.register(seam, ep.name, ep.load())
    return registry
