"""The Table Schema inferred for a dataset found in a CKAN portal or DCAT catalogue: from its cells as written."""

from __future__ import annotations

import json
import re

import pytest

from catalogue.errors import SchemaError
from harvesters.catalogue_schema import infer_schema

CSV = ("kennung;plz;betrag;gemessen;anzahl;anteil;offen;tag\n"
       "01;01067;1.100;2026-11-20T08:15:00;0;0.5;true;2026-11-20\n"
       "02;09599;2.500;2026-11-20T09:30:00+01:00;-12;10.25;false;2026-11-21\n").encode()


def types(descriptor: dict) -> dict[str, str]:
    return {f["name"]: f["type"] for f in descriptor["fields"]}


def test_csv_columns_are_typed_from_their_text_not_from_a_reader_guess() -> None:
    # Read with guessed types, 01067 became 1067 (an integer), 1.100 became 1.1 (a number past the
    # ambiguity check) and 2026-11-20T08:15:00 became '2026-11-20 08:15:00' (a string).
    assert types(infer_schema(CSV, "csv", {"delimiter": ";"})) == {
        "kennung": "string", "plz": "string", "betrag": "string", "gemessen": "datetime", "anzahl": "integer",
        "anteil": "number", "offen": "boolean", "tag": "date"}


def test_json_values_with_a_leading_zero_stay_text() -> None:
    rows = [{"kennung": "01", "anzahl": 3}, {"kennung": "02", "anzahl": 0}]

    assert types(infer_schema(json.dumps(rows).encode(), "json", {})) == {"kennung": "string", "anzahl": "integer"}


@pytest.mark.parametrize(("content", "reason"), [
    (b"a;a\n1;2\n", "the name(s) a appear more than once"),  # was one field 'a' holding both columns' cells
    (b"a;;b\n1;2;3\n", "column(s) 2 have no name"),
])
def test_a_repeated_or_blank_csv_column_name_is_refused_with_its_reason(content: bytes, reason: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(reason)):
        infer_schema(content, "csv", {"delimiter": ";"})
