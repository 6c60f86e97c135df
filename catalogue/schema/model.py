"""The typed Table Schema: a descriptor parsed once into frozen ``Field`` and ``TableSchema`` objects.

A schema enters the kernel in two ways: from a dataset definition (checked with
frictionless: ``TableSchema.parse``) or from the catalogue database, where only
checked schemas are ever stored (``TableSchema.from_stored``, which never loads
frictionless, so the read path stays light). The original JSON dict travels
along as ``descriptor``, unchanged, for everything that writes it out (the
database column, ``v<N>.datapackage.json``, API answers) or hashes it, so files
and answers stay byte-identical to what the publisher wrote.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from catalogue.schema.field_parsing import DEFAULT_FALSE, DEFAULT_TRUE
from catalogue.schema.table_schema import GEOMETRY_TYPES, STORED_TYPES, check_schema


@dataclass(frozen=True, eq=False)
class Field:
    """One field of a Table Schema, with the properties the kernel reads.

    ``descriptor`` is the field's own JSON object, for the per-type parsing
    options (``catalogue.schema.field_parsing``) and for writing it out.
    """

    name: str
    type: str
    format: str
    title: str | None
    description: str | None
    constraints: Mapping[str, Any]
    descriptor: dict[str, Any]

    @classmethod
    def of(cls, descriptor: dict[str, Any]) -> Field:
        """The field described by one entry of a schema's ``fields``."""
        return cls(
            name=descriptor["name"],
            # A stored schema always names its types; "string" is what the kernel has always read for a missing one.
            type=descriptor.get("type", "string"),
            format=descriptor.get("format", "default"),
            title=descriptor.get("title"),
            description=descriptor.get("description"),
            constraints=descriptor.get("constraints") or {},
            descriptor=descriptor,
        )

    @property
    def stored_type(self) -> str:
        """The DuckDB type of the stored column."""
        return STORED_TYPES[self.type]

    @property
    def is_geometry(self) -> bool:
        """Whether the field is stored as a geometry."""
        return self.type in GEOMETRY_TYPES

    @property
    def unique(self) -> bool:
        """Whether the field's values must be unique (``constraints.unique``)."""
        return bool(self.constraints.get("unique"))

    @property
    def decimal_char(self) -> str:
        """The decimal mark of a number field."""
        return str(self.descriptor.get("decimalChar", "."))

    @property
    def group_char(self) -> str | None:
        """The thousands separator of a number or integer field, if any."""
        return self.descriptor.get("groupChar") or None

    @property
    def bare_number(self) -> bool:
        """Whether a number holds nothing but the number (no currency signs, units …)."""
        return bool(self.descriptor.get("bareNumber", True))

    @property
    def true_values(self) -> tuple[str, ...]:
        """The texts a boolean field reads as true."""
        return tuple(self.descriptor.get("trueValues", DEFAULT_TRUE))

    @property
    def false_values(self) -> tuple[str, ...]:
        """The texts a boolean field reads as false."""
        return tuple(self.descriptor.get("falseValues", DEFAULT_FALSE))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Field) and self.descriptor == other.descriptor

    def __hash__(self) -> int:
        return hash(json.dumps(self.descriptor, sort_keys=True))


@dataclass(frozen=True, eq=False)
class TableSchema:
    """A Table Schema: its fields, primary key and missing values, and the descriptor it was parsed from.

    Two schemas are equal when their descriptors are; the hash is the
    descriptor's (``hash``), so a schema can key a cache.
    """

    fields: tuple[Field, ...]
    primary_key: tuple[str, ...]
    missing_values: tuple[str, ...]
    descriptor: dict[str, Any]

    @classmethod
    def parse(cls, descriptor: dict[str, Any]) -> TableSchema:
        """Check ``descriptor`` (frictionless and the types the hub stores) and parse it.

        Raises SchemaError listing every problem at once.
        """
        return cls.from_stored(check_schema(descriptor))

    @classmethod
    def from_stored(cls, descriptor: dict[str, Any]) -> TableSchema:
        """Parse a descriptor that was checked when it entered the catalogue (no frictionless)."""
        key = descriptor.get("primaryKey") or []
        return cls(
            fields=tuple(Field.of(f) for f in descriptor.get("fields") or []),
            # Table Schema allows a bare string for a one-field key.
            primary_key=(key,) if isinstance(key, str) else tuple(key),
            missing_values=tuple(str(v) for v in descriptor.get("missingValues", [""])),
            descriptor=descriptor,
        )

    @cached_property
    def names(self) -> tuple[str, ...]:
        """The field names, in order."""
        return tuple(f.name for f in self.fields)

    @cached_property
    def _by_name(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}

    def field(self, name: str) -> Field:
        """The field called ``name``; KeyError if there is none."""
        return self._by_name[name]

    def get(self, name: str) -> Field | None:
        """The field called ``name``, or None."""
        return self._by_name.get(name)

    @cached_property
    def geometry_fields(self) -> tuple[str, ...]:
        """Names of the fields stored as geometry."""
        return tuple(f.name for f in self.fields if f.is_geometry)

    @cached_property
    def time_field(self) -> str | None:
        """The date/datetime field of a compound primary key, by which parts are cut into time windows."""
        for name in self.primary_key[1:]:
            found = self.get(name)
            if found is not None and found.type in ("datetime", "date"):
                return name
        return None

    @cached_property
    def hash(self) -> str:
        """A stable SHA-256 of the descriptor, for change detection (as ``table_schema.schema_hash``)."""
        return hashlib.sha256(json.dumps(self.descriptor, sort_keys=True).encode()).hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TableSchema) and self.descriptor == other.descriptor

    def __hash__(self) -> int:
        return hash(self.hash)
