"""Catalogue metadata as SQLAlchemy 2 models, portable across SQLite and PostgreSQL.

Lists and nested metadata are JSON columns; the spatial extent is a GeoJSON
geometry in JSON, so the embedded SQLite default needs no SpatiaLite.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON, BigInteger, Boolean, Date, DateTime, Float, ForeignKey, Integer, String, Text, TypeDecorator, UniqueConstraint, false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from catalogue.meta.extent import extent_bbox
from catalogue.schema.model import TableSchema


def utcnow() -> datetime:
    """Timezone-aware now, in UTC."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime()}


class Described:
    """Columns every published thing has: a unique name and German/English title and description."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    title_en: Mapped[str] = mapped_column(String(300), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    description_en: Mapped[str] = mapped_column(Text, default="")


class Organization(Described, Base):
    """A publisher: the city hall or one of its companies."""

    __tablename__ = "organizations"

    homepage: Mapped[str] = mapped_column(String(500), default="")
    email: Mapped[str] = mapped_column(String(300), default="")

    datasets: Mapped[list[Dataset]] = relationship(back_populates="publisher")


class Dataset(Described, Base):
    """A dataset: metadata, its Table Schema and a pointer to its current version."""

    __tablename__ = "datasets"

    keywords: Mapped[list[Any]] = mapped_column(default=list)
    themes: Mapped[list[Any]] = mapped_column(default=list)
    license: Mapped[str] = mapped_column(String(500))
    publisher_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    contact: Mapped[dict[str, Any]] = mapped_column(default=dict)
    update_frequency: Mapped[str] = mapped_column(String(20), default="IRREG")
    spatial: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The extent's bounding box in degrees (WGS 84), kept in step with ``spatial`` (see ``_spatial_bbox``) for
    # area search in SQL; on PostGIS, migration 0005 adds a generated geometry ``extent`` over them (GiST-indexed).
    bbox_west: Mapped[float | None] = mapped_column(Float, nullable=True)
    bbox_south: Mapped[float | None] = mapped_column(Float, nullable=True)
    bbox_east: Mapped[float | None] = mapped_column(Float, nullable=True)
    bbox_north: Mapped[float | None] = mapped_column(Float, nullable=True)
    temporal_start: Mapped[date | None] = mapped_column(Date, nullable=True)
    temporal_end: Mapped[date | None] = mapped_column(Date, nullable=True)
    table_schema: Mapped[dict[str, Any]] = mapped_column("schema", JSON)  # the descriptor as written; see ``schema``
    current_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("versions.id", use_alter=True, name="fk_dataset_current_version"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Private: visible only to tokens of its publisher with the read-private scope (a 404 to anyone else).
    private: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    publisher: Mapped[Organization] = relationship(back_populates="datasets")
    versions: Mapped[list[Version]] = relationship(
        back_populates="dataset", foreign_keys="Version.dataset_id", order_by="Version.number"
    )
    current_version: Mapped[Version | None] = relationship(foreign_keys=[current_version_id], post_update=True)

    @validates("spatial")
    def _spatial_bbox(self, _key: str, spatial: dict[str, Any] | None) -> dict[str, Any] | None:
        self.bbox_west, self.bbox_south, self.bbox_east, self.bbox_north = extent_bbox(spatial) or (None,) * 4
        return spatial

    @property
    def schema(self) -> TableSchema:
        """The dataset's Table Schema, typed (the column holds the JSON, checked when it was loaded)."""
        return TableSchema.from_stored(self.table_schema)


class Version(Base):
    """One immutable published version of a dataset."""

    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("dataset_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    number: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    row_count: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str] = mapped_column(String(64))
    # The Table Schema this version was validated against (the dataset's may move on).
    table_schema: Mapped[dict[str, Any]] = mapped_column("schema", JSON, default=dict)
    descriptor_key: Mapped[str] = mapped_column(String(500))
    parts: Mapped[list[Any]] = mapped_column(default=list)
    changes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    provenance: Mapped[dict[str, Any]] = mapped_column(default=dict)
    harvest_job_id: Mapped[int | None] = mapped_column(ForeignKey("harvest_jobs.id"), nullable=True)

    dataset: Mapped[Dataset] = relationship(back_populates="versions", foreign_keys=[dataset_id])

    @property
    def schema(self) -> TableSchema:
        """The Table Schema this version was validated against, typed."""
        return TableSchema.from_stored(self.table_schema)


class HarvestSource(Base):
    """Where and how a dataset's deliveries are pulled from."""

    __tablename__ = "harvest_sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    type: Mapped[str] = mapped_column(String(50))
    url: Mapped[str] = mapped_column(String(2000))
    format: Mapped[str] = mapped_column(String(20))
    mode: Mapped[str] = mapped_column(String(10), default="replace")
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    etag: Mapped[str | None] = mapped_column(String(300), nullable=True)
    # The Last-Modified of the last accepted delivery, sent back as If-Modified-Since (migration 0004).
    last_modified: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # When it is harvested on its own: a cron expression or an interval ("15m", "1h", "1d"); None: from
    # the dataset's update frequency (harvesters.schedule).
    schedule: Mapped[str | None] = mapped_column(String(100), nullable=True)

    dataset: Mapped[Dataset] = relationship()


class HarvestJob(Base):
    """One run of a harvest source, with its outcome and validation report; or one run of a catalogue source.

    A catalogue run (``catalogue`` set, no dataset) counts what became of the catalogue's datasets; each
    dataset's own job names it as ``parent_id`` (migration 0006).
    """

    __tablename__ = "harvest_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("harvest_sources.id"), nullable=True)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"), nullable=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # running | published | unchanged | quarantined | failed
    status: Mapped[str] = mapped_column(String(20), default="running")
    error_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    report_key: Mapped[str | None] = mapped_column(String(500), nullable=True)
    version_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rows: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    bytes_received: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Rows the published version added, changed and removed against the one before (migration 0004).
    rows_added: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    rows_changed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    rows_removed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Each error with the record or line it came from: [{"message", "row"|"line"|"record", "field"}].
    errors: Mapped[list[Any] | None] = mapped_column(nullable=True)
    # The process running the job: the collector ends a job left running by a process that is gone.
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # A catalogue run: the catalogue source's name, and datasets created/updated/unchanged/withdrawn/failed.
    catalogue: Mapped[str | None] = mapped_column(String(100), nullable=True)
    counts: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    # A dataset's job inside a catalogue run: that run's job.
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("harvest_jobs.id"), nullable=True, index=True)

    dataset: Mapped[Dataset | None] = relationship()


class ApiToken(Base):
    """A publisher's API token: only its keyed hash is kept (catalogue/meta/tokens.py)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    publisher_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(100))
    # The token's first characters ("udt_ab12"), to tell tokens apart in lists; never enough to use one.
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)

    publisher: Mapped[Organization] = relationship()


class DeliveryKey(Base):
    """A pushed delivery's Idempotency-Key: the body it came with and the answer it got."""

    __tablename__ = "delivery_keys"
    __table_args__ = (UniqueConstraint("dataset_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    key: Mapped[str] = mapped_column(String(200))
    body_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
