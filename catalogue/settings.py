"""One settings class, read once at an entry point and passed down.

Each setting comes from, highest first: the arguments a caller passes, the ``URBANDATA_*``
environment variables, the TOML file named by ``URBANDATA_CONFIG`` (``urbandata --config``
sets it; keys are the setting names, at the top level), then the defaults below.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from catalogue.errors import InvalidConfigFile

CONFIG_ENV = "URBANDATA_CONFIG"

# The folder holding the catalogue package: the checkout in a development (editable) install,
# site-packages in an installed one. Tests use it to find the checkout's files.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def bundled_dir(name: str) -> Path:
    """Where the shipped content folder ``name`` (``site`` or ``datasets``) lives.

    A wheel carries both inside the package (``catalogue/bundled/``, copied there by setup.py);
    a checkout keeps them at its top, beside ``catalogue/``.
    """
    packaged = Path(__file__).resolve().parent / "bundled" / name
    return packaged if packaged.is_dir() else PROJECT_ROOT / name


class Settings(BaseSettings):
    """Every knob of the hub; environment variables use the ``URBANDATA_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="URBANDATA_", extra="forbid")

    data_dir: Path = Field(
        default=Path("var"),
        description="Directory for everything generated: catalogue database, Parquet store, built site.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the catalogue database; default: a SQLite file in data_dir.",
    )
    storage: str = Field(
        default="local",
        description="Name of the storage backend for Parquet parts and descriptors (plugin name).",
    )
    # The s3 backend (catalogue/store/s3.py). Credentials never come from here: only from the standard
    # AWS environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN).
    s3_endpoint_url: str | None = Field(
        default=None,
        description="URL of an S3-compatible server for storage=s3 (http://127.0.0.1:8333 for SeaweedFS or "
        "MinIO); unset: AWS S3 itself.",
    )
    s3_bucket: str | None = Field(default=None, description="Bucket holding the hub's files when storage=s3.")
    s3_prefix: str = Field(
        default="", description="Key prefix inside the bucket when storage=s3 ('hub' puts files under hub/...)."
    )
    s3_region: str = Field(default="us-east-1", description="Region of the bucket when storage=s3.")
    iceberg_catalog_url: str = Field(
        default="",
        description="SQLAlchemy URL of the Iceberg SQL catalog (pyiceberg, the [iceberg] extra) in which each dataset "
        "is also an Apache Iceberg table whose snapshots are its versions over the same Parquet parts "
        "(sqlite:////srv/hub/var/iceberg.sqlite, or the catalogue's PostgreSQL URL); empty (the default): no tables.",
    )
    definitions_dir: Path = Field(
        default=bundled_dir("datasets"),
        description="Directory holding publishers.yaml, definitions/*.yaml and Table Schemas.",
    )
    site_templates_dir: Path = Field(
        default=bundled_dir("site"),
        description="Directory holding the site's templates/, static/ and i18n/.",
    )
    feed_base_url: str | None = Field(
        default=None,
        description="Base URL that relative source URLs in dataset definitions resolve against.",
    )
    harvest_timeout_s: float = Field(
        default=30.0, gt=0, description="Connect and read timeout of one harvest request, in seconds."
    )
    harvest_max_bytes: int = Field(
        default=512 * 1024 * 1024, gt=0,
        description="Largest feed a harvest downloads, in bytes as sent over the network (compressed or not).",
    )
    harvest_max_decoded_bytes: int = Field(
        default=2 * 1024 * 1024 * 1024, gt=0,
        description="Largest feed a harvest keeps once its Content-Encoding (gzip...) is undone, in bytes: "
        "a compression bomb stops here.",
    )
    harvest_deadline_s: float = Field(
        default=600.0, gt=0,
        description="Total time one harvest download may take, redirects and body included, in seconds "
        "(a source that drips its body stops here; harvest_timeout_s bounds each single wait).",
    )
    harvest_max_redirects: int = Field(
        default=5, ge=0, description="Most redirects one harvest download follows."
    )
    harvest_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts a harvest may reach although they are inside the network (loopback, private, "
        "link-local...), which are refused otherwise. A name allows that name as written in a URL, whatever it "
        "resolves to; an address or network (127.0.0.1, 10.1.0.0/16, ::1) allows URLs naming such an address. "
        'As an environment variable, a JSON list: URBANDATA_HARVEST_ALLOWED_HOSTS=\'["127.0.0.1"]\'.',
    )
    queue_url: str = Field(
        default="",
        description="Redis URL of the harvest job queue (redis://127.0.0.1:6379/0; needs the [queue] extra): due "
        "harvests are enqueued there and run by `urbandata worker` processes. Empty (the default): no queue, "
        "due harvests run in the scheduling process.",
    )
    queue_namespace: str = Field(
        default="urbandata", min_length=1,
        description="Prefix of the job queue's Redis keys: hubs sharing one Redis need different ones.",
    )
    queue_heartbeat_timeout_s: float = Field(
        default=60.0, gt=0,
        description="Seconds without a heartbeat after which a queue worker counts as dead and its unfinished "
        "harvest goes back to the queue for another worker (shorter: faster retries, but a stalled live worker "
        "may lose its job to another, which then waits for it).",
    )
    max_report_errors: int = Field(
        default=1000, gt=0, description="Most errors listed in one validation report (all are counted)."
    )
    part_max_rows: int = Field(
        default=1_000_000, gt=0, description="Rows per Parquet part before a delivery is split."
    )
    row_group_rows: int = Field(
        default=64 * 1024, gt=0, description="Rows per Parquet row group (smaller groups prune better)."
    )
    default_page_size: int = Field(
        default=100, gt=0, description="Records returned when a request gives no limit."
    )
    max_returned_rows: int = Field(
        default=1000, gt=0, description="Most records one records request may return."
    )
    max_offset_rows: int = Field(
        default=10_000, gt=0,
        description="Largest offset+limit of a records request; beyond it, follow the keyset cursor (links.next).",
    )
    query_time_limit_ms: int = Field(
        default=5000, gt=0, description="Deadline of one records, facets or diff query, in milliseconds."
    )
    result_cache_mb: int = Field(
        default=64, ge=0,
        description="Memory for records and facets results kept by each API process for repeated requests, in MiB "
        "(least recently used go first); 0 turns the cache off. Versions never change, so kept results never go stale.",
    )
    read_memos: bool = Field(
        default=True,
        description="Keep the read path's memos (checked plans, counts, part-pruning answers, part footers, output "
        "columns, resolved versions) in each process; false computes them on every request (the benchmark measures "
        "the uncached path so). Apart from result_cache_mb.",
    )
    default_facet_size: int = Field(default=30, gt=0, description="Values listed per facet.")
    stream_heartbeat_s: float = Field(
        default=15.0, gt=0,
        description="Seconds between heartbeat comments on an idle stream of live values (/stream), so proxies keep it open.",
    )
    stream_poll_s: float = Field(
        default=2.0, gt=0,
        description="Seconds between looks at a streamed dataset's current version, for commits made by other "
        "processes that were not heard (commits of the serving process, and on PostgreSQL of every process, are heard at once).",
    )
    stream_buffer_versions: int = Field(
        default=32, gt=0,
        description="New versions one stream client may fall behind by; a client further behind is dropped "
        "(it may reconnect with Last-Event-ID), so a slow client never holds up the others.",
    )
    duckdb_memory_limit_mb: int = Field(
        default=2048, gt=0, description="Memory limit of the query engine, in MiB."
    )
    duckdb_threads: int = Field(default=2, gt=0, description="Threads the query engine may use.")
    ingest_memory_limit_mb: int = Field(
        default=256, gt=0,
        description="Memory DuckDB may use while validating and writing one delivery; beyond it, it spills to disk.",
    )
    site_page_size: int = Field(
        default=48, gt=0,
        description="Dataset cards per page of the site's listings (all datasets, each publisher's datasets); "
        "the front page shows the first page.",
    )
    api_prefix: str = Field(default="/api/v1", description="URL prefix of the REST API.")
    site_api_base_url: str = Field(
        default="",
        description="Base URL of the API as the built site links it (downloads, examples, search fallback), e.g. "
        "https://api.example.org/api/v1; empty: relative links to api_prefix on the site's own host.",
    )
    site_tile_url: str = Field(
        default="",
        description="Raster tile URL template ({z}/{x}/{y}) under the site's maps; empty: no tiles, the city "
        "districts drawn from the catalogue instead (no request to another host).",
    )
    site_impressum: str = Field(
        default="Stadt Musterstadt, Der Oberbürgermeister, Rathausplatz 1, 12345 Musterstadt. "
        "E-Mail: opendata@musterstadt.example. Verantwortlich nach § 18 Abs. 2 MStV: Open-Data-Team der Stadt.",
        description="Text of the site's Impressum (legal notice; paragraphs separated by blank lines).",
    )
    site_privacy: str = Field(
        default="Diese Website setzt keine Cookies, bindet keine Inhalte Dritter ein und erhebt keine Nutzungsprofile. "
        "Der Webserver verarbeitet technisch notwendige Verbindungsdaten (IP-Adresse, Zeitpunkt, abgerufene Adresse) "
        "nur zur Auslieferung und Absicherung des Angebots.",
        description="Text of the site's Datenschutz (privacy) page (paragraphs separated by blank lines).",
    )
    dcat_catalog_title: str = Field(
        default="Offene Daten Musterstadt", description="Title of the DCAT-AP.de catalogue (/catalog.ttl).")
    dcat_catalog_description: str = Field(
        default="Validierte, versionierte offene Daten der Stadt und ihrer Unternehmen.",
        description="Description of the DCAT-AP.de catalogue.")
    dcat_page_size: int = Field(default=100, gt=0, le=1000, description="Datasets per page of /catalog.ttl|.jsonld|.rdf.")
    dcat_catalog_publisher: str = Field(
        default="stadtverwaltung",
        description="Name of the publisher (datasets/publishers.yaml) that publishes the DCAT-AP.de catalogue itself "
        "(the dcat:Catalog's dct:publisher), normally the city administration running the hub. When no publisher "
        "has this name (or it is empty), the first publisher by name is used: DCAT-AP requires a publisher.")
    dcat_contributor_id: str = Field(
        default="", description="dcatde:contributorID IRI of the hub in GovData's contributor list (empty: omitted).")
    dcat_political_geocoding_uri: str = Field(
        default="", description="dcatde:politicalGeocodingURI of the city (a municipality key IRI; empty: omitted).")
    cors_origins: list[str] = Field(
        default=["*"],
        description="Origins a browser app may read the API from (CORS), or ['*'] for any; never with credentials: "
        "a request carrying a cookie or an Authorization header gets no CORS headers. [] turns CORS off.",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Public base URL of the hub, used in citations and absolute links.",
    )
    cursor_secret: SecretStr | None = Field(
        default=None, min_length=32,
        description="Key (32 characters or more) that signs paging cursors; default: a random key made once in "
        "data_dir/cursor-secret. Give every server of one hub the same key when they do not share data_dir.",
    )
    token_secret: SecretStr | None = Field(
        default=None, min_length=32,
        description="Key (32 characters or more) under which API tokens are hashed (HMAC-SHA256); default: a random "
        "key made once in data_dir/token-secret. Every server of one hub needs the same key.",
    )
    push_max_bytes: int = Field(
        default=512 * 1024 * 1024, gt=0,
        description="Largest body a pushed delivery may have, in bytes; larger is a 413 (before reading when "
        "Content-Length says so, else as soon as the stream passes it).",
    )
    sql_workers: int = Field(
        default=2, gt=0, description="Worker processes of the SQL endpoint: at most this many SQL queries run at once."
    )
    sql_time_limit_ms: int = Field(
        default=1000, gt=0, description="Deadline of one SQL query, in milliseconds (requests may lower it)."
    )
    sql_max_rows: int = Field(
        default=1000, gt=0, description="Most rows one SQL query returns (requests may lower it); more are cut and flagged."
    )
    sql_max_chars: int = Field(default=20_000, gt=0, description="Longest SQL statement accepted, in characters.")
    sql_memory_limit_mb: int = Field(
        default=1024, gt=0, description="DuckDB memory limit of each SQL worker, in MiB (nothing spills to disk)."
    )
    sql_worker_address_space_mb: int = Field(
        default=2048, gt=0,
        description="Address space a SQL worker may map beyond what it holds after loading DuckDB and spatial "
        "(about 1.2 GiB, mostly reserved and unused), in MiB; the OS refuses allocations past it (Linux).",
    )
    sql_kill_grace_ms: int = Field(
        default=2000, gt=0,
        description="How long past its deadline a SQL worker may take to answer before it is killed and replaced, in milliseconds.",
    )
    sql_part_cache_mb: int = Field(
        default=4096, gt=0,
        description="With parts in object storage (storage=s3): local copies the SQL sandbox reads, kept in "
        "data_dir/cache/parts up to this many MiB (the least recently used go first).",
    )
    sql_busy_wait_ms: int = Field(
        default=100, ge=0, description="How long a SQL query waits for a free worker before the answer is 503 sql-busy, in milliseconds."
    )

    rate_limit_per_minute: int = Field(
        default=0, ge=0,
        description="Requests one client (IP address) may send per minute, with bursts up to the same number; "
        "beyond it the answer is 429 with Retry-After. Answers carry RateLimit-Limit, RateLimit-Remaining and "
        "RateLimit-Reset. 0 (the default) turns rate limiting off.",
    )
    rate_limit_trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks of reverse proxies whose X-Forwarded-For header names the client for "
        "rate limiting; from any other peer the header is ignored. Empty (the default): never trusted.",
    )

    log_format: Literal["text", "json"] = Field(
        default="text",
        description="How the server and commands write their log lines to stderr: 'text' for people, 'json' for a "
        "log collector (one JSON object per line: time, level, logger, message; request lines add request_id, "
        "method, route, status, duration_ms).",
    )
    ready_timeout_s: float = Field(
        default=3.0, gt=0,
        description="How long each check of /ready (database, storage, queue) may take before it counts as failed, "
        "in seconds.",
    )

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then environment, then the ``URBANDATA_CONFIG`` file (if set), then defaults."""
        path = os.environ.get(CONFIG_ENV)
        if not path:
            return init_settings, env_settings, dotenv_settings, file_secret_settings
        return init_settings, env_settings, dotenv_settings, config_file_source(settings_cls, Path(path)), \
            file_secret_settings

    @field_validator("rate_limit_trusted_proxies")
    @classmethod
    def _proxy_networks(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"'{entry}' is no IP address or network (like 10.0.0.5 or 10.0.0.0/24)") from None
        return entries

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'catalogue.sqlite').resolve()}"

    @property
    def store_dir(self) -> Path:
        """Where the local storage backend keeps parts, descriptors and reports."""
        return self.data_dir / "store"

    @property
    def site_dir(self) -> Path:
        """Where the built static site goes."""
        return self.data_dir / "site"


def config_file_source(settings_cls: type[BaseSettings], path: Path) -> TomlConfigSettingsSource:
    """The settings in the TOML file ``path``; a missing or malformed file is an error naming it."""
    if not path.is_file():
        raise InvalidConfigFile(f"The configuration file {path} ({CONFIG_ENV} or --config) does not exist or is no "
                                "file; give the path of a TOML file of settings, or unset it.")
    try:
        with open(path, "rb") as handle:
            tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidConfigFile(f"The configuration file {path} cannot be read as TOML: {exc}. Write one "
                                "'setting_name = value' per line (urbandata settings lists the names).") from None
    return TomlConfigSettingsSource(settings_cls, toml_file=path)
