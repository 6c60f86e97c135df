"""The composition of one running hub: settings, database, storage, plugins."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from catalogue.meta.db import create_catalogue_engine, init_schema, session_factory
from catalogue.registry import Registry, load_registry
from catalogue.settings import Settings
from catalogue.store.storage import Storage


@dataclass
class Hub:
    """Everything a command or request needs, built once at an entry point."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    storage: Storage
    registry: Registry

    def close(self) -> None:
        """Release database connections."""
        self.engine.dispose()


def open_hub(settings: Settings, registry: Registry | None = None) -> Hub:
    """Open (and create if needed) the catalogue described by ``settings``."""
    registry = registry or load_registry()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_catalogue_engine(settings)
    init_schema(engine)
    storage = registry.get("storage", settings.storage)(settings)
    return Hub(settings=settings, engine=engine, sessions=session_factory(engine), storage=storage, registry=registry)
