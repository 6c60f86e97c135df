"""Catalogue sources: a remote catalogue (CKAN portal, DCAT catalogue) that yields MANY datasets.

The ``Harvester`` Protocol pulls one delivery for one dataset. A catalogue source first
*discovers* its datasets (remote metadata → ``RemoteDataset``), then each one becomes a dataset
here with a harvest source of the catalogue's type whose URL is the chosen resource
(distribution); its data is fetched and ingested by the ordinary runner
(``harvesters.runner.harvest_source``: one job per dataset, the guarded client, the pipeline).
The run itself is a job too (``jobs.start_catalogue``): it counts the datasets created, updated,
unchanged, withdrawn and failed, keeps each failure with the source record's id, and every
dataset job of the run names it as its parent.

Bookkeeping lives in the per-dataset source's ``options`` (a JSON column):
``catalogue`` (the catalogue source's name), ``remote_id``, ``marker`` (what says the remote
metadata changed: CKAN's ``metadata_modified``, a DCAT dataset's fingerprint), and, once the
dataset disappeared at the source, ``withdrawn_at``. A withdrawn dataset is made private
(hidden from the public catalogue, its versions kept) and a job with status ``withdrawn`` says
so; it becomes public again when it reappears at the source.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from catalogue.errors import DefinitionError, MalformedFeed, SourceUnreachable
from catalogue.hub import Hub
from catalogue.ingest import jobs
from catalogue.meta.models import Dataset, HarvestJob, HarvestSource, Organization, utcnow
from catalogue.redact import redact_text
from catalogue.settings import Settings
from harvesters.base import SourceSpec
from harvesters.catalogue_licenses import map_license
from harvesters.catalogue_schema import infer_schema, sniff_csv_options
from harvesters.runner import harvest_source
from harvesters.schedule import parse_schedule

log = logging.getLogger(__name__)

DATA_FORMATS = ("csv", "json", "geojson")
EU_THEMES = {"AGRI", "ECON", "EDUC", "ENER", "ENVI", "GOVE", "HEAL", "INTR", "JUST", "OP_DATPRO", "REGI", "SOCI",
             "TECH", "TRAN"}  # as definition.schema.json lists them
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,99}$")


@dataclass(frozen=True)
class RemoteResource:
    """One downloadable file of a remote dataset (a CKAN resource, a DCAT distribution)."""

    url: str
    format: str  # csv | json | geojson, or what the source said when it is none of these
    license: str = ""


@dataclass(frozen=True)
class RemoteDataset:
    """A dataset as a remote catalogue describes it."""

    remote_id: str
    name: str  # a slug from the source (CKAN name, DCAT identifier)
    title: str
    description: str = ""
    keywords: tuple[str, ...] = ()
    themes: tuple[str, ...] = ()  # EU data themes (ENVI, TRAN...), from any IRI or id ending in one
    contact_name: str = ""
    contact_email: str = ""
    license: str = ""  # the source's licence id, IRI or URL; mapped by ``map_license``
    publisher_name: str = ""
    publisher_title: str = ""
    modified: str = ""  # the source's own change marker (CKAN metadata_modified); empty: a fingerprint is used
    revision: str = ""  # a modification date that is only part of the fingerprint (DCAT dct:modified)
    resources: tuple[RemoteResource, ...] = ()
    problem: str = ""  # why this record cannot be harvested (no id...): reported, the others go on

    @property
    def marker(self) -> str:
        """What changes when the remote metadata changes: its modification time, else a fingerprint."""
        text = json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)
        return self.modified or "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class CatalogueSpec:
    """A catalogue source: where it is and how its datasets become ours.

    options: ``prefix`` (put before every dataset name), ``publisher`` (a local publisher for all
    datasets; default: the remote organisation, created here if new), ``licenses`` (remote id → one of
    our licence IRIs), ``formats`` (preferred resource formats in order), ``csv`` (reader options for
    CSV resources; default: sniffed), and the type's own (CKAN: ``organization``, ``tags``, ``rows``;
    DCAT: ``rdf_format``, ``max_pages``).
    """

    name: str
    type: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)
    schedule: str | None = None  # when `harvest-catalogue --due` runs it (harvesters.schedule's forms); None: on request


class CatalogueHarvester(Protocol):
    """A source of many datasets: lists them, and fetches one dataset's resource like any harvester."""

    def __init__(self, settings: Settings) -> None: ...

    def discover(self, catalogue: CatalogueSpec) -> Iterator[RemoteDataset]:
        """Every dataset the catalogue lists now (raises SourceUnreachable, MalformedFeed: nothing changes then)."""

    def fetch(self, source: SourceSpec) -> Any:
        """One dataset's resource as a Delivery (the ``Harvester`` Protocol), None when unchanged."""


@dataclass
class DatasetOutcome:
    """What became of one remote dataset in a catalogue run."""

    remote_id: str
    dataset: str
    status: str  # published | unchanged | skipped (metadata unchanged) | quarantined | failed | withdrawn
    message: str
    error_code: str | None = None
    job_id: int | None = None  # the dataset's job in this run (none when it failed before one started)
    known: bool = True  # the dataset existed here before this run (False: this run made it)

    @property
    def counted_as(self) -> str:
        """Which of the run's counts (``jobs.CATALOGUE_COUNTS``) this outcome adds to."""
        if self.status in ("failed", "quarantined", "withdrawn"):
            return "withdrawn" if self.status == "withdrawn" else "failed"
        if self.status == "skipped":
            return "unchanged"
        return "updated" if self.known else "created"  # remote metadata changed (or new): synced and harvested


@dataclass
class CatalogueOutcome:
    """What one catalogue run did: per dataset, and in total."""

    catalogue: str
    status: str  # finished | failed (the listing itself failed: nothing changed)
    message: str = ""
    datasets: list[DatasetOutcome] = field(default_factory=list)
    error_code: str | None = None
    job_id: int | None = None  # the run's own job

    def count(self, status: str) -> int:
        """How many datasets ended with ``status``."""
        return sum(1 for d in self.datasets if d.status == status)

    def counts(self) -> dict[str, int]:
        """Datasets created, updated, unchanged, withdrawn and failed (``jobs.CATALOGUE_COUNTS``)."""
        found = dict.fromkeys(jobs.CATALOGUE_COUNTS, 0)
        for entry in self.datasets:
            found[entry.counted_as] += 1
        return found

    def failures(self) -> list[dict[str, Any]]:
        """Each failed (or quarantined) dataset as a job error: the source record's id, the dataset, why, its job."""
        return [{"type": d.error_code or d.status, "record": d.remote_id, "dataset": d.dataset, "message": d.message,
                 **({"job": d.job_id} if d.job_id is not None else {})}
                for d in self.datasets if d.counted_as == "failed"]


def data_format(declared: str, url: str) -> str:
    """csv, json or geojson from a declared format (CKAN format, DCAT media type or file-type IRI) or the URL."""
    text = declared.strip().lower().rsplit("/", 1)[-1]
    for fmt, words in (("geojson", ("geojson", "geo+json", "vnd.geo+json")), ("csv", ("csv",)), ("json", ("json",))):
        if text in words:
            return fmt
    path = urlsplit(url).path.lower()
    for fmt in DATA_FORMATS:
        if path.endswith("." + fmt):
            return fmt
    return text or "unknown"


def local_name(catalogue: CatalogueSpec, remote: RemoteDataset) -> str:
    """The dataset's name here: the prefix and the remote slug, cut to 100 characters with a hash if longer."""
    slug = re.sub(r"[^a-z0-9-]+", "-", remote.name.lower()).strip("-") or "dataset"
    name = str(catalogue.options.get("prefix", "")) + slug
    if len(name) > 100:
        name = name[:91].rstrip("-") + "-" + hashlib.sha256(remote.remote_id.encode()).hexdigest()[:8]
    return name


def harvest_catalogue(hub: Hub, catalogue: CatalogueSpec) -> CatalogueOutcome:
    """Harvest a catalogue: new and changed datasets fetched, unchanged ones skipped, vanished ones withdrawn.

    A failed listing changes nothing. One dataset's failure (a broken resource, an unknown licence)
    is recorded in the outcome (and its job, if the dataset exists) and the others go on. The run is
    a job of its own (``outcome.job_id``): ``finished`` with its counts and failures, or ``failed``
    when the listing (or the run itself) failed.
    """
    try:
        job_id = jobs.start_catalogue(hub, catalogue.name)
    except Exception as exc:  # noqa: BLE001 - the database cannot take the job (full, gone): said, nothing done
        error = jobs.describe(exc, hub)
        return CatalogueOutcome(catalogue.name, "failed", redact_text(f"{catalogue.name}: {error.message}"),
                                error_code=error.code)
    try:
        outcome = _run(hub, catalogue, job_id)
    except Exception as exc:  # noqa: BLE001 - every failure ends the run's job; jobs.fail describes it
        error = jobs.fail(hub, job_id, exc)
        return CatalogueOutcome(catalogue.name, "failed", redact_text(f"{catalogue.name}: {error.message}"),
                                error_code=error.code, job_id=job_id)
    jobs.finish_catalogue(hub, job_id, outcome.message, outcome.counts(), outcome.failures())
    return outcome


def _run(hub: Hub, catalogue: CatalogueSpec, job_id: int) -> CatalogueOutcome:
    """One catalogue run under its job ``job_id``; raises only when the listing (or the database) fails."""
    harvester: CatalogueHarvester = hub.registry.get("harvesters", catalogue.type)(hub.settings)
    remote = list(harvester.discover(catalogue))
    owned = _owned_sources(hub, catalogue)
    outcome = CatalogueOutcome(catalogue.name, "finished", job_id=job_id)
    seen: set[str] = set()
    unidentified = False
    for entry in remote:
        if entry.problem:
            unidentified = unidentified or not entry.remote_id
            outcome.datasets.append(DatasetOutcome(entry.remote_id or entry.name, entry.name, "failed", entry.problem,
                                                   MalformedFeed.code, known=False))
            continue
        if entry.remote_id in seen:
            continue
        seen.add(entry.remote_id)
        name = local_name(catalogue, entry)
        try:
            outcome.datasets.append(_sync_dataset(hub, harvester, catalogue, entry, name, owned.get(entry.remote_id),
                                                  job_id))
        except Exception as exc:  # noqa: BLE001 - one bad record never aborts the others
            error = jobs.describe(exc, hub)
            log.warning("catalogue %s, dataset %s: %s", catalogue.name, name, error.message)
            outcome.datasets.append(DatasetOutcome(entry.remote_id, name, "failed", error.message, error.code,
                                                   known=entry.remote_id in owned))
    # A record without an id might be one of ours: nothing is withdrawn until the listing is whole again.
    for remote_id, (source_id, name) in owned.items():
        if remote_id not in seen and not unidentified:
            outcome.datasets.append(_withdraw(hub, catalogue, source_id, remote_id, name, job_id))
    for entry_outcome in outcome.datasets:  # shown to people: a source URL never shows its credentials
        entry_outcome.message = redact_text(entry_outcome.message)
    counts = {s: outcome.count(s) for s in ("published", "unchanged", "skipped", "quarantined", "failed", "withdrawn")}
    outcome.message = f"{catalogue.name}: {len(remote)} datasets listed; " + ", ".join(
        f"{n} {s}" for s, n in counts.items() if n)
    return outcome


def catalogue_due(hub: Hub, catalogue: CatalogueSpec, now: datetime | None = None) -> bool:
    """Whether the catalogue's ``schedule`` says a run is due: none ran yet, or the schedule's next time after
    the last run's start has come; never while one of its runs is going, nor without a schedule."""
    if catalogue.schedule is None:
        return False
    with hub.sessions() as session:
        running = session.scalar(select(HarvestJob.id).where(HarvestJob.catalogue == catalogue.name,
                                                             HarvestJob.status == "running").limit(1))
        last = session.scalar(select(func.max(HarvestJob.started_at)).where(HarvestJob.catalogue == catalogue.name))
    if running is not None:
        return False
    if last is None:
        return True
    return parse_schedule(catalogue.schedule).next_after(last) <= (now or utcnow())


def _owned_sources(hub: Hub, catalogue: CatalogueSpec) -> dict[str, tuple[int, str]]:
    """remote id → (source id, dataset name) of every dataset this catalogue made here."""
    with hub.sessions() as session:
        rows = session.execute(select(HarvestSource.id, HarvestSource.name, HarvestSource.options)).all()
    return {opts["remote_id"]: (sid, name) for sid, name, opts in rows
            if isinstance(opts, dict) and opts.get("catalogue") == catalogue.name and "remote_id" in opts}


def _pick_resource(catalogue: CatalogueSpec, entry: RemoteDataset, name: str) -> RemoteResource:
    """The resource to ingest: the first of the preferred formats (csv, geojson, json by default)."""
    order = catalogue.options.get("formats", ["csv", "geojson", "json"])
    usable = [r for r in entry.resources if r.format in order and r.url]
    if not usable:
        offered = ", ".join(sorted({r.format for r in entry.resources})) or "none"
        raise MalformedFeed(
            f"Dataset '{name}' of catalogue '{catalogue.name}' has no resource in a format the hub ingests "
            f"({', '.join(order)}); it offers: {offered}. It was not harvested.",
            details={"catalogue": catalogue.name, "dataset": name, "formats": offered})
    return min(usable, key=lambda r: order.index(r.format))


def _sync_dataset(hub: Hub, harvester: CatalogueHarvester, catalogue: CatalogueSpec, entry: RemoteDataset,
                  name: str, owned: tuple[int, str] | None, parent_id: int) -> DatasetOutcome:
    """One remote dataset: skipped when its metadata is unchanged, else metadata synced and its data harvested
    (its job a part of the run ``parent_id``)."""
    if owned is not None and _unchanged(hub, owned[0], entry):
        return DatasetOutcome(entry.remote_id, name, "skipped", f"{name}: metadata unchanged, not fetched")
    resource = _pick_resource(catalogue, entry, name)
    license_iri = map_license(entry.license or resource.license, catalogue, name)
    reader = _reader_options(catalogue, resource)
    schema = None
    if owned is None:  # a new dataset: its Table Schema is inferred from its data
        schema, reader = _first_look(harvester, catalogue, name, resource, reader)
    source_id, dataset_id = _write_metadata(hub, catalogue, entry, name, resource, license_iri, reader, schema)
    result = harvest_source(hub, name, jobs.start(hub, source_id, dataset_id, parent_id=parent_id))
    if result.status in ("published", "unchanged"):
        _remember_marker(hub, name, entry.marker)
    return DatasetOutcome(entry.remote_id, name, result.status, result.message, result.error_code,
                          job_id=result.job_id, known=owned is not None)


def _unchanged(hub: Hub, source_id: int, entry: RemoteDataset) -> bool:
    with hub.sessions() as session:
        source = session.get(HarvestSource, source_id)
        opts = source.options if source is not None else {}
    return opts.get("marker") == entry.marker and "withdrawn_at" not in opts


def _reader_options(catalogue: CatalogueSpec, resource: RemoteResource) -> dict[str, Any]:
    return dict(catalogue.options.get("csv", {})) if resource.format == "csv" else {}


def _first_look(harvester: CatalogueHarvester, catalogue: CatalogueSpec, name: str, resource: RemoteResource,
                reader: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Download a new dataset's resource once to sniff its CSV dialect and infer its Table Schema.

    The runner downloads it again to ingest it (a new dataset costs two downloads, a known one one).
    """
    spec = SourceSpec(name=name, dataset=name, url=resource.url, format=resource.format, options=reader)
    delivery = harvester.fetch(spec)
    if delivery is None:
        raise SourceUnreachable(f"The resource of '{name}' ({resource.url}) answered 'not modified' to a first "
                                "request; nothing to infer its schema from.", details={"url": resource.url})
    try:
        if resource.format == "csv":
            reader = {**sniff_csv_options(delivery.source), **reader}
        return infer_schema(delivery.source, resource.format, reader), reader
    finally:
        if delivery.path is not None:
            delivery.path.unlink(missing_ok=True)


def _publisher(session: Session, catalogue: CatalogueSpec, entry: RemoteDataset, name: str) -> Organization:
    wanted = catalogue.options.get("publisher")
    if wanted:
        org = session.scalar(select(Organization).where(Organization.name == wanted))
        if org is None:
            raise DefinitionError(f"Catalogue '{catalogue.name}' names the publisher '{wanted}', which does not "
                                  "exist; add it to publishers.yaml and run `urbandata init`.")
        return org
    slug = re.sub(r"[^a-z0-9-]+", "-", entry.publisher_name.lower()).strip("-")[:100]
    if not slug:
        raise DefinitionError(f"Dataset '{name}' of catalogue '{catalogue.name}' names no publisher; set the "
                              "catalogue's 'publisher' option to a local publisher.")
    org = session.scalar(select(Organization).where(Organization.name == slug))
    if org is None:
        org = Organization(name=slug, title=(entry.publisher_title or slug)[:300])
        session.add(org)
    return org


def _write_metadata(hub: Hub, catalogue: CatalogueSpec, entry: RemoteDataset, name: str, resource: RemoteResource,
                    license_iri: str, reader: dict[str, Any], schema: dict[str, Any] | None) -> tuple[int, int]:
    """Create or update the dataset and its harvest source (the marker is written after a good harvest);
    the source's id and the dataset's."""
    with hub.sessions.begin() as session:
        dataset = session.scalar(select(Dataset).where(Dataset.name == name))
        source = session.scalar(select(HarvestSource).where(HarvestSource.name == name))
        if dataset is not None and (source is None or source.options.get("catalogue") != catalogue.name):
            raise DefinitionError(f"Catalogue '{catalogue.name}' lists a dataset that would be named '{name}', but "
                                  "a dataset of that name exists here and is not this catalogue's. Set a 'prefix' "
                                  "option on the catalogue.", details={"dataset": name})
        if source is not None and source.options.get("remote_id") not in (None, entry.remote_id):
            raise DefinitionError(f"Catalogue '{catalogue.name}' lists two datasets named '{name}' here "
                                  f"({source.options['remote_id']} and {entry.remote_id}); the second was not "
                                  "harvested. Ask the publisher to give them distinct identifiers.",
                                  details={"dataset": name, "remote_ids": [source.options["remote_id"], entry.remote_id]})
        if dataset is None:
            assert schema is not None
            dataset = Dataset(name=name, table_schema=schema)
        dataset.title = (entry.title or name)[:300]
        dataset.description = entry.description.strip() or entry.title or name
        dataset.keywords = list(entry.keywords)
        dataset.themes = sorted({t.rstrip("/").rsplit("/", 1)[-1].upper() for t in entry.themes} & EU_THEMES)
        contact = {"name": entry.contact_name, "email": entry.contact_email.removeprefix("mailto:")}
        dataset.contact = {k: v for k, v in contact.items() if v}
        dataset.license = license_iri
        dataset.publisher = _publisher(session, catalogue, entry, name)
        dataset.modified_at = utcnow()
        if source is not None and "withdrawn_at" in source.options:
            dataset.private = False  # withdrawn by us, back at the source: public again
        session.add(dataset)
        session.flush()
        if source is None:
            source = HarvestSource(name=name, options={})
        if source.url != resource.url:  # another file: its validators do not apply
            source.etag, source.last_modified = None, None
        options = {k: v for k, v in source.options.items() if k not in ("withdrawn_at",)}
        options.update(reader, catalogue=catalogue.name, remote_id=entry.remote_id)
        source.dataset_id, source.type, source.url = dataset.id, catalogue.type, resource.url
        source.format, source.mode, source.options = resource.format, "replace", options
        session.add(source)
        session.flush()
        return source.id, dataset.id


def _remember_marker(hub: Hub, name: str, marker: str) -> None:
    with hub.sessions.begin() as session:
        source = session.scalar(select(HarvestSource).where(HarvestSource.name == name))
        if source is not None:
            source.options = {**source.options, "marker": marker}


def _withdraw(hub: Hub, catalogue: CatalogueSpec, source_id: int, remote_id: str, name: str,
              parent_id: int) -> DatasetOutcome:
    """A dataset deleted at the source: made private, marked withdrawn, a job says so. Its versions stay."""
    message = (f"{name}: withdrawn, the dataset '{remote_id}' is no longer listed by catalogue '{catalogue.name}'; "
               "it is hidden from the public catalogue, its versions are kept")
    with hub.sessions.begin() as session:
        source = session.get(HarvestSource, source_id)
        if source is None:
            return DatasetOutcome(remote_id, name, "failed", f"{name}: its harvest source is gone")
        if "withdrawn_at" in source.options:
            return DatasetOutcome(remote_id, name, "skipped", f"{name}: withdrawn earlier")
        source.options = {**source.options, "withdrawn_at": utcnow().isoformat()}
        dataset_id = source.dataset_id
        dataset = session.get(Dataset, dataset_id)
        if dataset is not None:
            dataset.private = True
    job_id = jobs.withdrawn(hub, source_id, dataset_id, message, parent_id=parent_id)
    log.warning("%s", message)
    return DatasetOutcome(remote_id, name, "withdrawn", message, job_id=job_id)
