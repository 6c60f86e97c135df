"""Catalogue source definitions: ``catalogues/<name>.yaml`` in the definitions directory, checked.

A catalogue source is not a dataset (it yields many), so it has a file format of its own beside
``definitions/``; each file becomes one ``CatalogueSpec``. The kernel checks keys, URLs, options,
publisher and licences (``catalogue.meta.definitions.check_catalogue_definitions``); the schedule is
parsed here, as the harvester's schedules are. Every problem in every file is collected into one
DefinitionError, as ``urbandata validate`` does for dataset definitions.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from catalogue.errors import DefinitionError
from catalogue.meta.definitions import check_catalogue_definitions
from harvesters.catalogue_sources import CatalogueSpec
from harvesters.schedule import parse_schedule


def load_catalogues(root: Path, publishers: Collection[str] | None = None) -> list[CatalogueSpec]:
    """Every catalogue source defined in ``root/catalogues/*.yaml`` (none when the folder is missing).

    ``publishers``: the publishers a ``publisher`` option may name (None: not checked).
    """
    docs, problems = check_catalogue_definitions(root, publishers, _schedule_problem)
    found = [CatalogueSpec(name=doc["name"], type=doc["type"], url=doc["url"], options=doc.get("options", {}),
                           schedule=doc.get("schedule")) for doc in docs]
    if problems:
        raise DefinitionError(f"{len(problems)} problem(s) in the catalogue definitions:\n- " + "\n- ".join(problems),
                              details={"problems": problems})
    return found


def _schedule_problem(text: str) -> str | None:
    """Why ``text`` is no schedule (harvesters.schedule's forms: an interval or a cron expression), or None."""
    try:
        parse_schedule(text)
    except DefinitionError as exc:
        return exc.message
    return None
