"""The typed Table Schema: parsed once, descriptor kept verbatim."""

from __future__ import annotations

import json

import pytest

from catalogue.errors import SchemaError
from catalogue.schema.model import Field, TableSchema
from catalogue.schema.table_schema import schema_hash

DESCRIPTOR = {
    "fields": [
        {"name": "station", "type": "string", "title": "Station", "constraints": {"required": True}},
        {"name": "at", "type": "datetime", "format": "%d.%m.%Y %H:%M"},
        {"name": "value", "type": "number", "decimalChar": ",", "groupChar": "."},
        {"name": "ok", "type": "boolean", "trueValues": ["ja"], "falseValues": ["nein"]},
        {"name": "where", "type": "geopoint", "description": "Location"},
    ],
    "primaryKey": ["station", "at"],
    "missingValues": ["", "-"],
}


def test_parse_reads_every_property_and_keeps_the_descriptor() -> None:
    schema = TableSchema.parse(json.loads(json.dumps(DESCRIPTOR)))
    assert schema.names == ("station", "at", "value", "ok", "where")
    assert schema.primary_key == ("station", "at")
    assert schema.missing_values == ("", "-")
    assert schema.geometry_fields == ("where",)
    assert schema.time_field == "at"
    assert schema.descriptor == DESCRIPTOR
    assert schema.hash == schema_hash(DESCRIPTOR)
    station, at, value, ok, where = schema.fields
    assert (station.title, station.constraints, station.stored_type) == ("Station", {"required": True}, "VARCHAR")
    assert (at.format, at.stored_type, at.description) == ("%d.%m.%Y %H:%M", "TIMESTAMP", None)
    assert (value.decimal_char, value.group_char, value.bare_number) == (",", ".", True)
    assert (ok.true_values, ok.false_values) == (("ja",), ("nein",))
    assert (where.is_geometry, where.description, where.format) == (True, "Location", "default")
    assert schema.field("value") is value
    assert schema.get("nothing") is None
    with pytest.raises(KeyError):
        schema.field("nothing")


def test_a_bare_string_key_and_defaults() -> None:
    schema = TableSchema.from_stored({"fields": [{"name": "id", "type": "integer"}], "primaryKey": "id"})
    assert schema.primary_key == ("id",)
    assert schema.missing_values == ("",)
    assert schema.time_field is None
    assert schema.fields[0] == Field.of({"name": "id", "type": "integer"})
    assert (schema.fields[0].decimal_char, schema.fields[0].group_char) == (".", None)


def test_equal_descriptors_make_equal_hashable_schemas() -> None:
    one, two = TableSchema.from_stored(DESCRIPTOR), TableSchema.from_stored(json.loads(json.dumps(DESCRIPTOR)))
    assert one == two and hash(one) == hash(two)
    assert len({one, two}) == 1
    assert one != TableSchema.from_stored({"fields": [{"name": "x", "type": "string"}]})


def test_parse_refuses_an_invalid_schema_with_every_problem() -> None:
    with pytest.raises(SchemaError) as caught:
        TableSchema.parse({"fields": [{"name": "a", "type": "array"}, {"name": "b", "type": "date", "format": "%Q"}]})
    problems = caught.value.details["problems"]
    assert len(problems) == 2
    assert problems[0] == ("Field 'a' has type 'array', which the hub cannot store yet. Use one of: boolean, date, "
                           "datetime, geojson, geopoint, integer, number, string, time, year.")
    assert problems[1].startswith("Field 'b' has the format '%Q': ")
