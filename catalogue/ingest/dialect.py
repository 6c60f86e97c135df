"""A source's dialect: number and date conventions declared once in its options, applied to the schema.

German offices write ``1.234,56`` and ``20.11.2026``; a dataset's Table Schema
can say so field by field (``decimalChar``, ``groupChar``, ``format``), and a
source can say it once for all its fields (``decimal_char``, ``group_char``,
``date_format``, ``datetime_format``). What a field declares itself wins.

Nothing is guessed: a number format that could be read two ways (the same
character as decimal mark and thousands separator, a ``.`` thousands
separator without a declared decimal mark) is an error naming the option
to add. ``number_hint`` explains a quarantine whose number cells look German
while no decimal mark was declared.
"""

from __future__ import annotations

import re
from typing import Any

from catalogue.errors import AmbiguousDialect
from catalogue.schema.model import TableSchema

DIALECT_OPTIONS = ("decimal_char", "group_char", "date_format", "datetime_format")
# 1.234,5 or 12,5 or -0,25: a comma where the default decimal mark stands.
GERMAN_NUMBER = re.compile(r"^\s*[-+]?\d{1,3}(\.\d{3})*(,\d+)?\s*$|^\s*[-+]?\d+,\d+\s*$")


def apply_dialect(schema: TableSchema, options: dict[str, Any]) -> TableSchema:
    """``schema`` with the source's dialect options filled into the fields that declare none."""
    decimal, group = options.get("decimal_char"), options.get("group_char")
    dates, datetimes = options.get("date_format"), options.get("datetime_format")
    if decimal is None and group is None and dates is None and datetimes is None:
        return schema
    _check_numbers(decimal, group)
    fields = []
    for field in schema.fields:
        described = dict(field.descriptor)
        if field.type == "number" and decimal is not None:
            described.setdefault("decimalChar", decimal)
        if field.type in ("number", "integer") and group is not None:
            described.setdefault("groupChar", group)
        if field.type == "date" and dates is not None and described.get("format", "default") == "default":
            described["format"] = dates
        if field.type == "datetime" and datetimes is not None and described.get("format", "default") == "default":
            described["format"] = datetimes
        if field.type == "number" and described.get("decimalChar", ".") == described.get("groupChar"):
            raise AmbiguousDialect(
                f"Field '{field.name}' would read '{described['groupChar']}' both as decimal mark and as thousands "
                "separator. Set the source option decimal_char (or the field's decimalChar) to the other character.",
                details={"field": field.name, "option": "decimal_char"})
        fields.append(described)
    return TableSchema.from_stored({**schema.descriptor, "fields": fields})


def _check_numbers(decimal: Any, group: Any) -> None:
    for name, value in (("decimal_char", decimal), ("group_char", group)):
        if value is not None and (not isinstance(value, str) or len(value) != 1 or value.isdigit()):
            raise AmbiguousDialect(f"The source option {name} must be one character other than a digit, "
                                   f"not {value!r}.", details={"option": name})
    if group is not None and decimal is None and group == ".":
        raise AmbiguousDialect(
            "The source declares group_char '.' but no decimal_char, so '1.234' could be 1234 or 1.234. "
            "Add decimal_char: \",\" (German numbers) to the source options.", details={"option": "decimal_char"})
    if group is not None and group == decimal:
        raise AmbiguousDialect(
            f"The source declares '{group}' as both decimal_char and group_char, so numbers cannot be read. "
            "Set decimal_char and group_char to different characters.", details={"option": "decimal_char"})


def number_hint(report: dict[str, Any], schema: TableSchema) -> str:
    """A sentence naming the option to add when type errors of number fields hold German-looking numbers."""
    undeclared = {f.name for f in schema.fields if f.type == "number" and "decimalChar" not in f.descriptor}
    for error in _errors(report):
        if error.get("type") != "type-error" or error.get("fieldName") not in undeclared:
            continue
        cell = str(error.get("cell", ""))
        if "," in cell and GERMAN_NUMBER.match(cell):
            return (f"Field '{error['fieldName']}' holds '{cell}', a number with a decimal comma, but no decimal "
                    "mark is declared; add decimal_char: \",\" (and group_char: \".\" if thousands are grouped) "
                    "to the source options.")
    return ""


def _errors(report: dict[str, Any]) -> list[dict[str, Any]]:
    found = list(report.get("errors", []))
    for task in report.get("tasks", []):
        found += task.get("errors", [])
    return found
