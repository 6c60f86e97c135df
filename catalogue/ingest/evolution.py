"""Schema evolution: what a delivery may change in its dataset's schema against the current version.

A field added to the Table Schema publishes a new version, its change
recorded (``changes.fields_added``; rows of earlier deliveries have NULL
there). A field removed, or one whose type changed, would silently drop or
reinterpret published data: the delivery is quarantined with a report that
says which fields and why, and the current version stays.
"""

from __future__ import annotations

from typing import Any

from frictionless import Report, errors

from catalogue.schema.model import TableSchema


def refused_changes(current: TableSchema, new: TableSchema) -> list[str]:
    """One sentence per field the new schema removes or retypes against ``current`` (empty: acceptable)."""
    types = {f.name: f.type for f in new.fields}
    problems = []
    for field in current.fields:
        if field.name not in types:
            problems.append(f"the field '{field.name}' ({field.type}) of the current version is missing from the "
                            "schema; removing a column would drop published data")
        elif types[field.name] != field.type:
            problems.append(f"the field '{field.name}' changes its type from {field.type} to {types[field.name]}; "
                            "published values would be read differently")
    return problems


def refusal_report(problems: list[str], dataset: str) -> dict[str, Any]:
    """A Frictionless report of one schema error per refused change, saying what to do."""
    advice = (f"The current version of '{dataset}' stays. Restore the field in the Table Schema, or publish the "
              "changed schema as a new dataset.")
    found: list[errors.Error] = [errors.SchemaError(note=f"{problem}. {advice}") for problem in problems]
    report: dict[str, Any] = Report.from_validation(errors=found).to_descriptor()
    return report
