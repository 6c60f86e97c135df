"""Each dataset as an Apache Iceberg table: one snapshot per hub version, over the version's own Parquet parts.

With ``settings.iceberg_catalog_url`` set, every dataset is a table
``urbandata.<name>`` of a pyiceberg ``SqlCatalog`` in that database (a SQLite
file, or the catalogue's PostgreSQL). Its metadata lives beside the parts, under
``datasets/<name>/iceberg/metadata/``; its data files *are* the parts: nothing
is copied or rewritten, so Spark, Trino, Flink or DuckDB's ``iceberg_scan`` read
any version in place.

Version N becomes one snapshot whose data files are exactly version N's parts:
an append (the parts the previous snapshot lacks) when no part went away,
otherwise an overwrite deleting the parts the version dropped and adding its new
ones. The snapshot's summary carries ``urbandata.version``, ``urbandata.content-hash``
and ``urbandata.published-at``, and a tag ``v<N>`` names it (``VERSION AS OF
'v3'``); the snapshot's own timestamp is when it was registered (Iceberg keeps
snapshot times in commit order), so travel by version, not by time.
A schema with added fields widens the table schema (union by name); the
default name mapping (set by the first registration) maps the parts' columns,
which carry no Iceberg field ids, by name.

Registration runs after the hub's commit and never undoes it: versions are
registered in order, each after the table's newest registered one, so a failed
or skipped registration is repaired by the next one, or by ``sync_all``
(``urbandata iceberg-sync``). Two processes registering at once meet in the
catalog's optimistic commit; the loser reloads the table and finds its work
done. pyiceberg is imported only when the setting is on (the ``[iceberg]``
extra).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, SQLAlchemyError

from catalogue.errors import DatasetNotFound, UrbandataError
from catalogue.hub import Hub
from catalogue.meta.models import Dataset, Version
from catalogue.store.keys import part_key

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.io import FileIO
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.table import Table, Transaction

log = logging.getLogger(__name__)

NAMESPACE = "urbandata"
VERSION_PROPERTY = "urbandata.version"
HASH_PROPERTY = "urbandata.content-hash"
PUBLISHED_PROPERTY = "urbandata.published-at"  # the version's publication (the snapshot's own time is its registration)
ATTEMPTS = 5  # commits lost to another registering process in a row before giving up
# pyiceberg retries a commit that lost a race by replaying its snapshot on the new head: a version's
# snapshot would then hold the winner's files as well (or be registered twice). Off: a lost commit fails,
# and ``sync_dataset`` reloads the table and works out again what is missing.
TABLE_PROPERTIES = {"commit.retry.num-retries": "0"}


@dataclass(frozen=True)
class Registered:
    """What one dataset's registration did: the versions it registered and where the table's metadata now is."""

    dataset: str
    versions: list[int]
    metadata_location: str | None


@dataclass(frozen=True)
class _Published:
    number: int
    content_hash: str
    published_at: str  # ISO 8601, UTC
    paths: tuple[str, ...]  # the version's parts (``file_uri``), in the version's order


def enabled(hub: Hub) -> bool:
    """Whether datasets are registered as Iceberg tables."""
    return bool(hub.settings.iceberg_catalog_url)


def table_identifier(dataset: str) -> str:
    """The Iceberg identifier of a dataset's table."""
    return f"{NAMESPACE}.{dataset}"


@contextmanager
def open_catalog(hub: Hub) -> Iterator[SqlCatalog]:
    """The hub's Iceberg SQL catalog (its database connections closed afterwards)."""
    try:
        from pyiceberg.catalog.sql import SqlCatalog
    except ImportError:
        raise UrbandataError(
            "iceberg_catalog_url is set but pyiceberg is not installed. Install the [iceberg] extra "
            "(pip install 'urbandata[iceberg]'), or set iceberg_catalog_url to '' to turn Iceberg tables off."
        ) from None
    url = hub.settings.iceberg_catalog_url
    for attempt in range(2):  # a process creating the catalog's tables or namespace at the same time wins once
        try:
            catalog = SqlCatalog(NAMESPACE, uri=url, warehouse=file_uri(hub, "datasets"),
                                 **_io_properties(hub))
        except (SQLAlchemyError, ValueError) as exc:  # no such database or driver, a malformed URL
            if attempt == 0 and isinstance(exc, IntegrityError | OperationalError):
                continue
            raise UrbandataError(
                f"The Iceberg catalog's database {_shown(url)} (iceberg_catalog_url) cannot be opened: "
                f"{_first_line(exc)}. Check that the URL names a reachable database and that its driver is "
                "installed."
            ) from exc
        try:
            catalog.create_namespace_if_not_exists(NAMESPACE)
        except IntegrityError:
            catalog.engine.dispose()
            continue
        break
    try:
        yield catalog
    finally:
        catalog.engine.dispose()


def file_uri(hub: Hub, key: str) -> str:
    """How the table names the store's file ``key``: its engine URI, a local path as a file: URI.

    With a scheme, engines on other machines (Spark, Trino) do not take the path for one on their
    default file system; DuckDB and pyiceberg read either.
    """
    uri = hub.storage.engine_uri(key)
    return uri if "://" in uri else f"file://{uri}"


def _first_line(exc: Exception) -> str:
    """What the driver said, in one line (its own error, not SQLAlchemy's wrapping with the statement)."""
    said = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {said[0][:200]}" if said else type(exc).__name__


def _shown(url: str) -> str:
    """``url`` without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a database URL)"


def _io_properties(hub: Hub) -> dict[str, str]:
    """pyiceberg FileIO properties reaching the store (credentials only from the AWS environment variables)."""
    settings = hub.settings
    if settings.storage != "s3":
        return {}
    properties = {"s3.region": settings.s3_region}
    if settings.s3_endpoint_url:
        properties["s3.endpoint"] = settings.s3_endpoint_url
    return properties


def register_after_commit(hub: Hub, dataset: str, number: int) -> None:
    """Register ``dataset`` up to version ``number`` when Iceberg tables are on; a failure is logged, never raised.

    The version is committed already: a table left behind is caught up by the next
    registration or by ``urbandata iceberg-sync``.
    """
    if not enabled(hub):
        return
    try:
        with open_catalog(hub) as catalog:
            sync_dataset(hub, catalog, dataset)
    except Exception:  # noqa: BLE001 - the hub's version stands; iceberg-sync repairs the table
        log.warning("iceberg: version %d of %s is published but not registered in the Iceberg catalog; "
                    "`urbandata iceberg-sync` registers it", number, dataset, exc_info=True)


def sync_all(hub: Hub, only: list[str] | None = None) -> list[Registered]:
    """Register the versions the Iceberg catalog does not hold yet of every dataset (or of those named in ``only``)."""
    if not enabled(hub):
        raise UrbandataError("Iceberg tables are off: iceberg_catalog_url is empty. Set URBANDATA_ICEBERG_CATALOG_URL "
                             "to the SQLAlchemy URL of the Iceberg catalog's database (a sqlite:/// file or PostgreSQL).")
    with hub.sessions() as session:
        names = list(session.scalars(select(Dataset.name).order_by(Dataset.name)))
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise DatasetNotFound(f"The catalogue has no dataset named {', '.join(repr(n) for n in unknown)}. Name one "
                              "of its datasets, or none to register every dataset.")
    names = [n for n in names if only is None or n in only]
    with open_catalog(hub) as catalog:
        return [sync_dataset(hub, catalog, name) for name in names]


def sync_dataset(hub: Hub, catalog: SqlCatalog, dataset: str) -> Registered:
    """Register the dataset's versions after the newest one its table holds, in order."""
    from pyiceberg.exceptions import CommitFailedException

    done: list[int] = []
    table: Table | None = None
    for _ in range(ATTEMPTS):
        table = _load(catalog, dataset)
        missing = _versions(hub, dataset, after=max(snapshot_ids(table), default=0) if table is not None else 0)
        if table is None and missing:
            table = _create(hub, catalog, dataset, missing[0])  # or the table another process has just made
            missing = [v for v in missing if v.number > max(snapshot_ids(table), default=0)]
        if not missing:
            break
        assert table is not None
        try:
            for version in missing:
                table = _register(table, version)
                done.append(version.number)
        except CommitFailedException:  # another process registered meanwhile: reload and look again
            continue
        break
    else:
        raise UrbandataError(f"The Iceberg table of '{dataset}' kept changing under {ATTEMPTS} registrations; "
                             "run `urbandata iceberg-sync` again once other registrations are done.")
    return Registered(dataset, done, table.metadata_location if table is not None else None)


def snapshot_ids(table: Table) -> dict[int, int]:
    """Hub version number → snapshot id, for every registered version."""
    found = {}
    for snapshot in table.snapshots():
        number = snapshot.summary.get(VERSION_PROPERTY) if snapshot.summary is not None else None
        if number:
            found[int(number)] = snapshot.snapshot_id
    return found


def _load(catalog: SqlCatalog, dataset: str) -> Table | None:
    from pyiceberg.exceptions import NoSuchTableError

    try:
        return catalog.load_table(table_identifier(dataset))
    except NoSuchTableError:
        return None


def _create(hub: Hub, catalog: SqlCatalog, dataset: str, first: _Published) -> Table:
    """The dataset's table with the schema of its first version's parts (or the one another process made)."""
    from pyiceberg.exceptions import TableAlreadyExistsError
    from pyiceberg.io import load_file_io

    schema = _arrow_schema(load_file_io(catalog.properties, first.paths[0]), first.paths[0])
    try:
        return catalog.create_table(table_identifier(dataset), schema=schema, properties=dict(TABLE_PROPERTIES),
                                    location=file_uri(hub, f"datasets/{dataset}/iceberg"))
    except TableAlreadyExistsError:
        return catalog.load_table(table_identifier(dataset))


def _arrow_schema(io: FileIO, path: str) -> pa.Schema:
    """The Arrow schema of the part at ``path`` (read through the catalog's FileIO, which reaches the store)."""
    import pyarrow.parquet as pq

    with io.new_input(path).open() as stream:
        return pq.read_schema(stream).remove_metadata()


def _register(table: Table, version: _Published) -> Table:
    """Commit one snapshot whose data files are exactly ``version``'s parts; the table as committed."""
    from pyiceberg.io.pyarrow import parquet_file_to_data_file
    from pyiceberg.table import TableProperties
    from pyiceberg.table.update.snapshot import ManageSnapshots

    if any(table.properties.get(k) != v for k, v in TABLE_PROPERTIES.items()):  # a table made elsewhere
        table = table.transaction().set_properties(TABLE_PROPERTIES).commit_transaction()
    current = _data_files(table)
    wanted = set(version.paths)
    removed = [f for path, f in current.items() if path not in wanted]
    added = [p for p in dict.fromkeys(version.paths) if p not in current]
    properties = {VERSION_PROPERTY: str(version.number), HASH_PROPERTY: version.content_hash,
                  PUBLISHED_PROPERTY: version.published_at}
    # (``tx.table_metadata`` is a deep copy of the whole metadata, every snapshot and tag: read it seldom.)
    tx: Transaction = table.transaction()
    if table.metadata.name_mapping() is None:
        tx.set_properties({TableProperties.DEFAULT_NAME_MAPPING: table.schema().name_mapping.model_dump_json()})
    if added:
        schema = _arrow_schema(table.io, added[0])
        known = set(table.schema().column_names)
        if any(name not in known for name in schema.names):
            with tx.update_schema() as update:  # fields added (the hub refuses removed or retyped ones)
                update.union_by_name(schema)
    metadata = tx.table_metadata  # with the widened schema
    producer = tx.update_snapshot(snapshot_properties=properties)
    with (producer.overwrite() if removed or not added else producer.merge_append()) as snapshot:
        for data_file in removed:
            snapshot.delete_data_file(data_file)
        for path in added:
            snapshot.append_data_file(parquet_file_to_data_file(table.io, metadata, path))
    head = tx.table_metadata.current_snapshot()
    assert head is not None
    with ManageSnapshots(tx) as refs:
        refs.create_tag(head.snapshot_id, f"v{version.number}")
    return tx.commit_transaction()


def _data_files(table: Table) -> dict[str, Any]:
    """The current snapshot's data files by path."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return {}
    return {entry.data_file.file_path: entry.data_file
            for manifest in snapshot.manifests(table.io)
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True)}


def _versions(hub: Hub, dataset: str, after: int) -> list[_Published]:
    """The dataset's versions numbered above ``after``, oldest first."""
    with hub.sessions() as session:
        rows = session.execute(
            select(Version.number, Version.content_hash, Version.created_at, Version.parts)
            .join(Dataset, Dataset.id == Version.dataset_id)
            .where(Dataset.name == dataset, Version.number > after)
            .order_by(Version.number)
        ).all()
    return [_Published(number, content_hash, _utc(created_at),
                       tuple(file_uri(hub, part_key(dataset, p["sha256"])) for p in parts))
            for number, content_hash, created_at, parts in rows]


def _utc(moment: datetime) -> str:
    """``moment`` in ISO 8601, UTC (a naive time from the catalogue database is UTC)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
