"""One error hierarchy: a kebab-case code, an HTTP-ish status, a safe message.

Messages say what went wrong, where, and how to fix it; they never carry
file-system paths or stack traces.
"""

from __future__ import annotations

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


class SourceUnreachable(UrbandataError):
    """A harvest source did not answer, or answered with an error status."""

    code = "source-unreachable"
    status = 502


class FeedTooLarge(UrbandataError):
    code = "feed-too-large"
    status = 413


class UnknownPlugin(UrbandataError):
    code = "unknown-plugin"
    status = 500


class StoreCorrupted(UrbandataError):
    """A stored file does not match its recorded hash."""

    code = "store-corrupted"
    status = 500
