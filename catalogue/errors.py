"""One error hierarchy: a kebab-case code, an HTTP-ish status, a safe message.

Messages say what went wrong, where, and how to fix it; they never carry
file-system paths or stack traces.
"""

from __future__ import annotations

import errno

from typing import Any


class UrbandataError(Exception):
    """Base of every error the hub raises on purpose."""

    code = "urbandata-error"
    status = 500

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The error as the JSON envelope's ``error`` object."""
        body: dict[str, Any] = {"code": self.code, "status": self.status, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class NotFound(UrbandataError):
    code = "not-found"
    status = 404


class DatasetNotFound(NotFound):
    code = "dataset-not-found"


class VersionNotFound(NotFound):
    code = "version-not-found"


class PublisherNotFound(NotFound):
    code = "publisher-not-found"


class SourceNotFound(NotFound):
    code = "source-not-found"


class CatalogueNotFound(NotFound):
    """A command that reads or changes a catalogue was pointed at a place that holds none."""

    code = "catalogue-not-found"


class BadRequest(UrbandataError):
    code = "bad-request"
    status = 400


class InvalidParameter(BadRequest):
    code = "invalid-parameter"


class DefinitionError(UrbandataError):
    """A dataset or publisher definition in datasets/ is invalid."""

    code = "invalid-definition"
    status = 422


class SchemaError(UrbandataError):
    """A Table Schema is unusable (unknown type, bad primary key...)."""

    code = "invalid-schema"
    status = 422


class MalformedFeed(UrbandataError):
    """The delivered bytes cannot be parsed in the declared format."""

    code = "malformed-feed"
    status = 422


class AmbiguousDialect(MalformedFeed):
    """A source's number or date options could read a value two ways; the message names the option to set."""

    code = "ambiguous-dialect"


class UpsertWithoutKey(UrbandataError):
    """A delivery in mode upsert for a dataset without a primary key (nothing says which rows it replaces)."""

    code = "upsert-without-key"
    status = 422


class SourceUnreachable(UrbandataError):
    """A harvest source did not answer, or answered with an error status."""

    code = "source-unreachable"
    status = 502


class FeedTooLarge(UrbandataError):
    code = "feed-too-large"
    status = 413


class SourceRefused(UrbandataError):
    """A harvest URL or redirect hop leads to an address inside the network (loopback, private, link-local...)."""

    code = "source-address-refused"
    status = 403


class TooManyRedirects(SourceUnreachable):
    """A harvest source redirected more often than the redirect limit allows (a loop, most likely)."""

    code = "too-many-redirects"


class HarvestDeadlineExceeded(UrbandataError):
    """A harvest run took longer than its total deadline (a source that drips its body, or never ends it)."""

    code = "harvest-deadline-exceeded"
    status = 504


class RateLimited(UrbandataError):
    """A client sent more requests than its quota; ``retry_after_s`` says when the next one is allowed."""

    code = "rate-limited"
    status = 429

    def __init__(self, message: str, *, retry_after_s: int, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class UnknownPlugin(UrbandataError):
    code = "unknown-plugin"
    status = 500


class StoreCorrupted(UrbandataError):
    """A stored file does not match its recorded hash."""

    code = "store-corrupted"
    status = 500


class SqlSyntaxError(BadRequest):
    """DuckDB's parser rejected the statement (details carry the character position)."""

    code = "sql-syntax-error"


class SqlNotAllowed(BadRequest):
    """The statement does something the read-only SQL endpoint refuses."""

    code = "sql-not-allowed"


class SqlUnknownTable(BadRequest):
    """A table name in the statement is no published dataset or version."""

    code = "sql-unknown-table"


class SqlError(BadRequest):
    """DuckDB refused or failed to run the statement (unknown column, type mismatch...)."""

    code = "sql-error"


class SqlResourceLimit(BadRequest):
    """The statement needed more memory than a SQL worker may use, and was stopped."""

    code = "sql-resource-limit"


class SqlBusy(UrbandataError):
    """Every SQL worker is busy; ``retry_after_s`` says when to try again."""

    code = "sql-busy"
    status = 503

    def __init__(self, message: str, *, retry_after_s: int, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class QueryError(InvalidParameter):
    """A query parameter (select, where, group_by, order_by...) cannot be parsed or is not allowed."""

    code = "invalid-query"


class QueryTimeout(UrbandataError):
    """A records, facets or diff query ran past its deadline and was stopped."""

    code = "query-timeout"
    status = 400


class DatabaseBusy(UrbandataError):
    """Every connection to the catalogue database is in use; ``retry_after_s`` says when to try again."""

    code = "database-busy"
    status = 503

    def __init__(self, message: str, *, retry_after_s: int, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


# The OSError numbers of a full disk: no room, past the file-size limit (RLIMIT_FSIZE), past the quota.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


class InsufficientStorage(UrbandataError):
    """The server's disk (or its file-size limit) is full, so a file it needed to write could not be written."""

    code = "insufficient-storage"
    status = 507


class ServerBusy(UrbandataError):
    """The server holds as many connections as it may; ``retry_after_s`` says when to try again."""

    code = "server-busy"
    status = 503

    def __init__(self, message: str, *, retry_after_s: int, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class SiteBusy(UrbandataError):
    """Another build of the same static site held it for longer than a build waits (``sitegen.build_lock``)."""

    code = "site-busy"
    status = 503


class CommitConflict(UrbandataError):
    """Other versions of the dataset kept landing while a delivery was being committed."""

    code = "commit-conflict"
    status = 409


class IngestFailed(UrbandataError):
    """An ingest stopped on an error that is not the delivery's fault (a bug, the database); nothing was published."""

    code = "ingest-failed"
    status = 500


class JobInterrupted(UrbandataError):
    """A harvest job's process ended (killed, machine restarted) before the job finished."""

    code = "job-interrupted"
    status = 500


class PortInUse(UrbandataError):
    """The port the server should listen on is taken by another program."""

    code = "port-in-use"
    status = 409


class DatabaseUnreachable(UrbandataError):
    """The catalogue database does not answer (server down, wrong host or port in the URL)."""

    code = "database-unreachable"
    status = 503


class QueueUnreachable(UrbandataError):
    """The harvest job queue (``queue_url``) does not answer, or its URL is no Redis URL."""

    code = "queue-unreachable"
    status = 503


class CatalogueTooNew(UrbandataError):
    """The catalogue's schema comes from a newer release than the one running."""

    code = "catalogue-too-new"
    status = 409


class LiveValuesUnavailable(NotFound):
    """``/latest`` of a dataset whose primary key is not (entity, time): it has no latest row per entity."""

    code = "no-live-values"


class Unauthorized(UrbandataError):
    """A request needs a valid API token (``Authorization: Bearer udt_…``) and has none that is valid."""

    code = "unauthorized"
    status = 401


class TokenMissing(Unauthorized):
    code = "token-missing"


class TokenInvalid(Unauthorized):
    code = "token-invalid"


class TokenRevoked(Unauthorized):
    code = "token-revoked"


class TokenExpired(Unauthorized):
    code = "token-expired"


class Forbidden(UrbandataError):
    """A valid token that may not do this (a scope it lacks, another publisher's dataset)."""

    code = "forbidden"
    status = 403


class MissingScope(Forbidden):
    code = "missing-scope"


class WrongPublisher(Forbidden):
    code = "wrong-publisher"


class TokenNotFound(NotFound):
    code = "token-not-found"


class DatasetExists(UrbandataError):
    """A dataset of that name exists already."""

    code = "dataset-exists"
    status = 409


class BaseVersionConflict(UrbandataError):
    """A delivery based on a version (If-Match) that is no longer the current one."""

    code = "base-version-conflict"
    status = 409


class IdempotencyKeyReused(UrbandataError):
    """An Idempotency-Key sent again with another body."""

    code = "idempotency-key-reused"
    status = 422


class DeliveryTooLarge(UrbandataError):
    """A pushed delivery larger than the configured cap."""

    code = "delivery-too-large"
    status = 413


class UnsupportedDeliveryFormat(UrbandataError):
    """A pushed body in a format the hub does not read."""

    code = "unsupported-delivery-format"
    status = 415


class DeliveryInProgress(UrbandataError):
    """A delivery with the same Idempotency-Key is still being ingested."""

    code = "delivery-in-progress"
    status = 409

    def __init__(self, message: str, *, retry_after_s: int, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class DeliveryInvalid(UrbandataError):
    """A pushed delivery that failed validation: quarantined with its report, nothing published."""

    code = "delivery-invalid"
    status = 422


class StorageUnavailable(UrbandataError):
    """The object store holding parts and descriptors did not answer or refused the request."""

    code = "storage-unavailable"
    status = 503


class InvalidConfigFile(UrbandataError):
    """The settings file named by URBANDATA_CONFIG (or --config) is missing or is no valid TOML."""

    code = "invalid-config-file"
    status = 500


class NotReady(UrbandataError):
    """A readiness check (/ready) failed: the database, the storage or the job queue does not answer."""

    code = "not-ready"
    status = 503
