"""Read access to the catalogue: publishers, datasets, versions, jobs, as plain dicts."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import Dialect, Engine, and_, bindparam, func, or_, select
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql.elements import ColumnElement

from catalogue.redact import redact_text, redact_url
from catalogue.errors import DatasetNotFound, InvalidParameter, PublisherNotFound, VersionNotFound
from catalogue.meta.licenses import license_info
from catalogue.meta.models import Dataset, HarvestJob, Organization, Version


def get_dataset(session: Session, name: str) -> Dataset:
    """The dataset ``name``; DatasetNotFound if there is none."""
    dataset = session.scalar(
        select(Dataset).where(Dataset.name == name).options(selectinload(Dataset.publisher))
    )
    if dataset is None:
        raise dataset_not_found(name)
    return dataset


def dataset_not_found(name: str) -> DatasetNotFound:
    """The one answer for a dataset that does not exist, or is private and not the reader's (the same words)."""
    return DatasetNotFound(f"There is no dataset named '{name}'. The list of datasets is at /api/v1/datasets.")


def visible(private_of: int | None) -> ColumnElement[bool]:
    """A condition on datasets: public, or private to publisher ``private_of`` (a read-private token's).

    None: public datasets only (an anonymous reader, or a token without read-private).
    """
    if private_of is None:
        return Dataset.private.is_(False)
    return or_(Dataset.private.is_(False), Dataset.publisher_id == private_of)


def get_dataset_access(engine: Engine, name: str) -> tuple[bool, int] | None:
    """(private, publisher id) of dataset ``name``; None if there is none. One indexed query (sent as
    ``get_version_identity`` sends its own: every request to a dataset's path asks it)."""
    row = _first_row(engine, "access", {"name": name})
    return None if row is None else (bool(row[0]), int(row[1]))


INTEGER_MAX = 2**31 - 1  # the catalogue's INTEGER columns (PostgreSQL's int4): version numbers, row ids


def storable(number: int) -> bool:
    """Whether ``number`` fits the catalogue's INTEGER columns: a larger id or version number names no row
    (asking PostgreSQL would fail with "integer out of range" instead of finding nothing, as SQLite does)."""
    return -INTEGER_MAX - 1 <= number <= INTEGER_MAX


def get_version(session: Session, dataset: Dataset, number: int | None = None) -> Version:
    """Version ``number`` of ``dataset`` (default: the current one); VersionNotFound if absent."""
    if number is None:
        if dataset.current_version is None:
            raise VersionNotFound(f"Dataset '{dataset.name}' has no published version yet.")
        return dataset.current_version
    if number < 1:
        raise InvalidParameter(f"Version numbers start at 1; got {number}.")
    version = session.scalar(
        select(Version).where(Version.dataset_id == dataset.id, Version.number == number)
    ) if storable(number) else None
    if version is None:
        latest = dataset.current_version.number if dataset.current_version else 0
        hint = f"Versions 1 to {latest} exist." if latest else "No version is published yet."
        raise VersionNotFound(f"Dataset '{dataset.name}' has no version {number}. {hint}")
    return version


# What a query needs of a version (catalogue.query.engine.VersionRef), read as plain columns: loading the
# Version object cost more than the query (resolving a version: 0.58 ms with it, see find_version).
VERSION_FACTS = (Version.number, Version.parts, Version.table_schema.label("table_schema"), Version.row_count,
                 Version.content_hash)
_CURRENT_FACTS = select(*VERSION_FACTS).join(Dataset, Dataset.current_version_id == Version.id).where(
    Dataset.name == bindparam("name"))
_NUMBERED_FACTS = select(*VERSION_FACTS).join(Dataset, Dataset.id == Version.dataset_id).where(
    Dataset.name == bindparam("name"), Version.number == bindparam("number"))


class VersionFacts(NamedTuple):
    """A version's ``VERSION_FACTS``, decoded (``find_version``)."""

    number: int
    parts: list[dict[str, Any]]
    table_schema: dict[str, Any]
    row_count: int
    content_hash: str


def find_version(engine: Engine, name: str, number: int | None = None) -> VersionFacts | None:
    """The facts a query needs (``VERSION_FACTS``) of version ``number`` (default: the current one) of
    dataset ``name``, in one query sent like the version identity (``_first_row``); None if absent.

    For the read path, which needs the version alone: ``get_dataset`` + ``get_version`` load the
    dataset, its publisher and then the version (three queries). On None, those two say what is missing.
    """
    row = _version_row(engine, "facts", name, number)
    if row is None:
        return None
    found, parts, schema, rows, digest = row
    return VersionFacts(int(found), _decoded(parts), _decoded(schema), rows, str(digest))


def _decoded(value: Any) -> Any:
    """A JSON column's value as a DBAPI cursor gives it: text on SQLite, already decoded by psycopg."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value


# One indexed query per records or facets request (the result cache's key), so it is compiled once per
# dialect and sent straight through a pooled DBAPI connection: SQLAlchemy's execution machinery would cost
# several times the query itself.
_CURRENT_IDENTITY = (
    select(Version.number, Version.content_hash)
    .join(Dataset, Dataset.current_version_id == Version.id)
    .where(Dataset.name == bindparam("name"))
)
_NUMBERED_IDENTITY = (
    select(Version.number, Version.content_hash)
    .join(Dataset, and_(Dataset.id == Version.dataset_id, Version.number == bindparam("number")))
    .where(Dataset.name == bindparam("name"))
)


_ACCESS = select(Dataset.private, Dataset.publisher_id).where(Dataset.name == bindparam("name"))
_LOOKUPS = {"current": _CURRENT_IDENTITY, "numbered": _NUMBERED_IDENTITY, "access": _ACCESS,
            "current_facts": _CURRENT_FACTS, "numbered_facts": _NUMBERED_FACTS}


@lru_cache(maxsize=16)
def _compiled(dialect: Dialect, lookup: str) -> SQLCompiler:
    return _LOOKUPS[lookup].compile(dialect=dialect)


def _first_row(engine: Engine, lookup: str, given: dict[str, Any]) -> Any:
    """The first row of one of the ``_LOOKUPS``, sent straight through a pooled DBAPI connection (None: no row)."""
    compiled = _compiled(engine.dialect, lookup)
    values = dict(compiled.construct_params(given) or {})
    args: Any = tuple(values[k] for k in compiled.positiontup or ()) if compiled.positional else values
    con = engine.raw_connection()
    try:
        cur = con.cursor()
        try:
            cur.execute(compiled.string, args)
            return cur.fetchone()
        finally:
            cur.close()
    finally:
        con.close()  # back to the pool, which ends the read transaction: the next lookup sees new versions


def get_version_identity(engine: Engine, name: str, number: int | None = None) -> tuple[int, str] | None:
    """(number, content hash) of version ``number`` of dataset ``name`` (default: the current one), in one query.

    None when there is no such dataset or version; ``get_version`` then says which.
    """
    row = _version_row(engine, "identity", name, number)
    return None if row is None else (int(row[0]), str(row[1]))


def _version_row(engine: Engine, what: str, name: str, number: int | None) -> Any:
    """The row of version ``number`` (default: the current one) of dataset ``name`` from the ``_LOOKUPS`` of
    ``what`` (``identity``: number and hash; ``facts``: ``VERSION_FACTS``); None if there is none."""
    if number is not None and not storable(number):
        return None
    lookup = ("current" if number is None else "numbered") + ("_facts" if what == "facts" else "")
    return _first_row(engine, lookup, {"name": name} if number is None else {"name": name, "number": number})


def get_version_as_of(session: Session, dataset: Dataset, moment: datetime) -> Version:
    """The version that was current at ``moment`` (the newest published at or before it)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    candidates = [v for v in list_versions(session, dataset) if v.created_at <= moment]
    if not candidates:
        raise VersionNotFound(
            f"Dataset '{dataset.name}' had no published version at {moment.isoformat()}; "
            "its versions are listed at /api/v1/datasets/" + dataset.name + "/versions."
        )
    return candidates[0]


def of_publisher(publisher: str) -> ColumnElement[bool]:
    """A condition on datasets: published by the organisation named ``publisher`` (none if there is no such one)."""
    return Dataset.publisher_id.in_(select(Organization.id).where(Organization.name == publisher).scalar_subquery())


def page_datasets(session: Session, limit: int, offset: int, publisher: str | None = None, *,
                  private_of: int | None = None) -> tuple[int, list[Dataset]]:
    """How many datasets there are (of ``publisher``), and one page of them by name.

    Only datasets ``visible(private_of)`` are counted and listed. The page comes
    with its publishers and current versions loaded (two more queries for the
    whole page, not two per dataset).
    """
    query = select(Dataset).where(visible(private_of))
    if publisher is not None:
        query = query.where(of_publisher(publisher))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Dataset.name).limit(limit).offset(offset)
                           .options(selectinload(Dataset.publisher), selectinload(Dataset.current_version)))
    return total, list(rows)


def list_versions(session: Session, dataset: Dataset) -> list[Version]:
    """Versions of ``dataset``, newest first."""
    return list(
        session.scalars(select(Version).where(Version.dataset_id == dataset.id).order_by(Version.number.desc()))
    )


def list_publishers(session: Session) -> list[Organization]:
    """Every publisher, by name."""
    return list(session.scalars(select(Organization).order_by(Organization.name)))


def get_publisher(session: Session, name: str) -> Organization:
    """The publisher ``name``; PublisherNotFound if there is none."""
    org = session.scalar(select(Organization).where(Organization.name == name))
    if org is None:
        raise PublisherNotFound(f"There is no publisher named '{name}'.")
    return org


def list_jobs(session: Session, dataset: Dataset, limit: int = 50) -> list[HarvestJob]:
    """The latest deliveries of ``dataset``, newest first."""
    return list(
        session.scalars(
            select(HarvestJob).where(HarvestJob.dataset_id == dataset.id).order_by(HarvestJob.id.desc()).limit(limit)
        )
    )


def publisher_dict(org: Organization) -> dict[str, Any]:
    """A publisher as JSON-ready metadata."""
    return {
        "name": org.name, "title": org.title, "title_en": org.title_en, "description": org.description,
        "description_en": org.description_en, "homepage": org.homepage, "email": org.email,
    }


def version_dict(version: Version) -> dict[str, Any]:
    """A version as JSON-ready metadata."""
    return {
        "number": version.number,
        "created_at": version.created_at.isoformat(),
        "row_count": version.row_count,
        "bytes": version.bytes,
        "sha256": version.content_hash,
        "parts": list(version.parts),
        "changes": dict(version.changes),
        # A source URL is shown without its user info and secret query values (catalogue.redact).
        "provenance": {k: redact_url(v) if k == "source_url" and isinstance(v, str) else v
                       for k, v in version.provenance.items() if k != "schema_hash"},
    }


def dataset_dict(dataset: Dataset) -> dict[str, Any]:
    """A dataset as JSON-ready metadata (without its version list)."""
    current = dataset.current_version
    return {
        "name": dataset.name,
        "title": dataset.title,
        "title_en": dataset.title_en,
        "description": dataset.description,
        "description_en": dataset.description_en,
        "keywords": list(dataset.keywords),
        "themes": list(dataset.themes),
        "license": license_info(dataset.license),
        "publisher": {"name": dataset.publisher.name, "title": dataset.publisher.title},
        "contact": dict(dataset.contact),
        "update_frequency": dataset.update_frequency,
        "spatial": dict(dataset.spatial),
        "temporal": {
            "start": dataset.temporal_start.isoformat() if dataset.temporal_start else None,
            "end": dataset.temporal_end.isoformat() if dataset.temporal_end else None,
        },
        "schema": dataset.table_schema,
        "primary_key": list(dataset.schema.primary_key),
        "geometry_fields": list(dataset.schema.geometry_fields),
        "current_version": current.number if current else None,
        "row_count": current.row_count if current else None,
        "modified_at": dataset.modified_at.isoformat() if current else None,
    }


def job_dict(job: HarvestJob) -> dict[str, Any]:
    """A delivery (harvest job) as JSON-ready metadata."""
    return {
        "id": job.id, "status": job.status, "message": redact_text(job.message or ""), "error_code": job.error_code,
        "started_at": job.started_at.isoformat(), "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "version": job.version_number, "rows": job.rows, "bytes_received": job.bytes_received,
        "has_report": job.report_key is not None,
    }
