"""CKAN's DataStore over a version: datastore_search parameters as a records request, and its answers.

``filters`` (``{field: value or [values]}``) become refine filters or an ``IN`` list, ``q`` the
records API's ``search()`` (over every text field, or ``{field: text}``), ``fields`` the select list,
``sort`` the order; every field named must be one of the version's, or the request is refused
naming the fields there are. Rows stay the records planner's: the same engine, limits and deadline.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from catalogue.errors import InvalidParameter
from catalogue.query.planning import RecordsRequest
from catalogue.schema.model import TableSchema

CKAN_TYPES = {"string": "text", "integer": "int", "number": "numeric", "boolean": "bool", "date": "date",
              "datetime": "timestamp", "time": "time", "year": "int", "geopoint": "json", "geojson": "json"}
RECORDS_FORMATS = ("objects", "lists", "csv", "tsv")
XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def field_dicts(schema: TableSchema) -> list[dict[str, Any]]:
    """The fields as DataStore describes them (``id``, ``type``, and the Table Schema's own in ``schema``)."""
    return [{"id": f.name, "type": CKAN_TYPES.get(f.type, "text"),
             "info": {"label": f.title or "", "notes": f.description or ""}, "schema": f.descriptor}
            for f in schema.fields]


def _known(schema: TableSchema, name: Any, parameter: str) -> str:
    names = [f.name for f in schema.fields]
    if not isinstance(name, str) or name not in names:
        raise InvalidParameter(f"{parameter}: there is no field '{name}'; the fields are {', '.join(names)}.",
                               details={"parameter": parameter})
    return name


def _odsql_value(kind: str, value: Any) -> str:
    """An ODSQL literal of ``value`` for a field of type ``kind`` (parsed and bound by the ODSQL compiler)."""
    if isinstance(value, bool) or kind == "boolean":
        return "true" if str(value).lower() in ("true", "1") else "false"
    if isinstance(value, (int, float)) or (kind in ("integer", "number", "year")
                                          and re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", str(value))):
        return str(value)
    quoted = "'" + str(value).replace("'", "''") + "'"
    return {"date": "date", "datetime": "timestamp"}.get(kind, "") + quoted


def _filters(schema: TableSchema, filters: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(refine filters, ODSQL conditions) of a ``filters`` object."""
    refine, where = [], []
    kinds = {f.name: f.type for f in schema.fields}
    for name, value in filters.items():
        _known(schema, name, "filters")
        if isinstance(value, list):
            if not value:
                raise InvalidParameter(f"filters: the list of values for '{name}' is empty.",
                                       details={"parameter": "filters"})
            where.append(f"`{name}` in ({', '.join(_odsql_value(kinds[name], v) for v in value)})")
        elif isinstance(value, dict):
            raise InvalidParameter(f"filters: '{name}' takes a value or a list of values, not an object.",
                                   details={"parameter": "filters"})
        else:
            refine.append(f"{name}:{'true' if value is True else 'false' if value is False else value}")
    return refine, where


def _search(schema: TableSchema, q: str | dict[str, Any]) -> list[str]:
    """``search()`` conditions of a full-text ``q``: a text over every text field, or ``{field: text}``."""
    asked = q.items() if isinstance(q, dict) else [(None, q)]
    out = []
    for name, text in asked:
        if not isinstance(text, str) or not text.strip():
            raise InvalidParameter("q takes a text to find, or an object of field names and texts.",
                                   details={"parameter": "q"})
        literal = "'" + text.replace("'", "''") + "'"
        out.append(f"search(`{_known(schema, name, 'q')}`, {literal})" if name is not None else f"search({literal})")
    return out


def _sort(schema: TableSchema, sort: str) -> str:
    items = []
    for item in (p.strip() for p in sort.split(",") if p.strip()):
        name, _, direction = item.rpartition(" ") if item.lower().endswith((" asc", " desc")) else (item, "", "asc")
        name = name.strip().strip('"')
        items.append(f"`{_known(schema, name, 'sort')}` {direction.lower()}")
    return ", ".join(items)


def search_request(schema: TableSchema, *, filters: dict[str, Any] | None, q: str | dict[str, Any] | None,
                   fields: list[str] | None, sort: str | None, limit: int, offset: int) -> RecordsRequest:
    """The records request answering one datastore_search."""
    refine, where = _filters(schema, filters or {})
    if q:
        where += _search(schema, q)
    select = ", ".join(f"`{_known(schema, n, 'fields')}`" for n in fields) if fields else None
    return RecordsRequest(select=select, where=" and ".join(f"({w})" for w in where) or None,
                          order_by=_sort(schema, sort) if sort else None, limit=limit, offset=offset, refine=refine)


def formatted_records(records: list[dict[str, Any]], names: list[str], records_format: str) -> Any:
    """The rows as datastore_search gives them: objects, lists, or CSV/TSV text without a header."""
    if records_format == "objects":
        return records
    lists = [[r.get(n) for n in names] for r in records]
    if records_format == "lists":
        return lists
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t" if records_format == "tsv" else ",", lineterminator="\n")
    writer.writerows([[_cell(v) for v in row] for row in lists])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def xml_rows(lines: Iterable[bytes]) -> Iterator[bytes]:
    """A JSON-lines export as CKAN's XML dump: ``<data><row _id="1"><field>value</field>...</row></data>``.

    A field name that is no XML name becomes ``<value key="name">``, as CKAN writes it.
    """
    yield b'<?xml version="1.0" encoding="utf-8"?>\n<data xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
    number = 0
    pending = b""
    for chunk in lines:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if line.strip():
                number += 1
                yield _xml_row(number, json.loads(line))
    if pending.strip():
        yield _xml_row(number + 1, json.loads(pending))
    yield b"</data>\n"


def _xml_row(number: int, row: dict[str, Any]) -> bytes:
    cells = []
    for name, value in row.items():
        if value is None:
            text = ""
            null = ' xsi:nil="true"'
        else:
            text, null = escape(_cell(value)), ""
        if XML_NAME.match(name) and not name.lower().startswith("xml"):
            cells.append(f"<{name}{null}>{text}</{name}>")
        else:
            cells.append(f"<value key={quoteattr(name)}{null}>{text}</value>")
    return f'<row _id="{number}">{"".join(cells)}</row>\n'.encode()
