"""Support for the search tests: a migrated, empty catalogue database on SQLite or PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine

from catalogue.meta.db import upgrade_schema
from tests.conftest import pg_schema


@contextmanager
def migrated_engine(kind: str, tmp_path: Path, prefix: str) -> Iterator[Engine]:
    """``kind`` "sqlite": a file in ``tmp_path``; "postgresql": a throwaway schema named from ``prefix`` (skips
    when the server cannot be reached). Upgraded to the newest migration; disposed after."""
    with ExitStack() as stack:
        if kind == "sqlite":
            url = f"sqlite:///{tmp_path / 'catalogue.sqlite'}"
        else:
            url = stack.enter_context(pg_schema(prefix))["database_url"]
        engine = create_engine(url)
        stack.callback(engine.dispose)
        upgrade_schema(engine)
        yield engine
