"""CQL2 text filters (OGC API Features Part 3) as ODSQL ``where`` clauses, for what ODSQL can say.

Basic CQL2: comparisons (``= <> < > <= >=``) of properties and literals (strings, numbers,
booleans, ``DATE('…')``, ``TIMESTAMP('…')``), ``AND``/``OR``/``NOT``, ``IS [NOT] NULL``, and
the advanced comparisons ``LIKE``, ``IN (…)``, ``BETWEEN … AND …``; spatial: ``S_INTERSECTS``
of a geometry property and a ``BBOX(…)`` or a WKT literal (``POINT``, ``POLYGON``, …). The text is
tokenised, each token checked and rewritten (properties against the collection's fields), and
the result compiled by the ODSQL compiler like any ``where``: nothing is passed on unread.
Anything else (other functions, CQL2 JSON, arithmetic, temporal operators) is refused, naming it.
"""

from __future__ import annotations

import re

from catalogue.errors import InvalidParameter
from catalogue.schema.model import TableSchema

MAX_CHARS = 4000
TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")+")
  | (?P<number>[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><>|<=|>=|=|<|>)
  | (?P<punct>[(),+-])
""", re.VERBOSE)
KEYWORDS = {"AND", "OR", "NOT", "IS", "NULL", "TRUE", "FALSE", "LIKE", "IN", "BETWEEN"}
WKT = {"POINT", "LINESTRING", "POLYGON", "MULTIPOINT", "MULTILINESTRING", "MULTIPOLYGON", "GEOMETRYCOLLECTION"}


def _refuse(message: str) -> InvalidParameter:
    return InvalidParameter(f"filter: {message}", details={"parameter": "filter"})


def _tokens(text: str) -> list[tuple[str, str]]:
    out, position = [], 0
    while position < len(text):
        found = TOKEN.match(text, position)
        if found is None:
            raise _refuse(f"cannot read '{text[position:position + 20]}' at character {position + 1}.")
        kind = found.lastgroup or ""
        if kind != "space":
            out.append((kind, found.group()))
        position = found.end()
    return out


class _Translation:
    """One pass over the tokens, writing ODSQL."""

    def __init__(self, schema: TableSchema, tokens: list[tuple[str, str]]) -> None:
        self.fields = {f.name: f for f in schema.fields}
        self.tokens = tokens
        self.at = 0

    def next(self) -> tuple[str, str]:
        if self.at >= len(self.tokens):
            raise _refuse("the expression ends too early.")
        token = self.tokens[self.at]
        self.at += 1
        return token

    def expect(self, text: str) -> None:
        kind, value = self.next()
        if value != text:
            raise _refuse(f"expected '{text}', found '{value}'.")

    def following(self, text: str) -> bool:
        """Whether the next token is ``text`` (a name before ``(`` is a function, else a property)."""
        return self.at < len(self.tokens) and self.tokens[self.at][1] == text

    def property(self, name: str) -> str:
        if name not in self.fields:
            raise _refuse(f"'{name}' is no property of this collection; its queryables are "
                          f"{', '.join(self.fields)}.")
        return f"`{name}`"

    def run(self) -> str:
        out = []
        while self.at < len(self.tokens):
            kind, value = self.next()
            upper = value.upper()
            if kind == "quoted":
                out.append(self.property(value[1:-1].replace('""', '"')))
            elif kind == "word" and upper in KEYWORDS:
                out.append(upper)
            elif kind == "word" and upper in ("DATE", "TIMESTAMP") and self.following("("):
                self.expect("(")
                literal_kind, literal = self.next()
                if literal_kind != "string":
                    raise _refuse(f"{upper}() takes a quoted date or timestamp.")
                self.expect(")")
                out.append(f"{upper.lower()}{literal}")
            elif kind == "word" and upper == "S_INTERSECTS":
                out.append(self.intersects())
            elif kind == "word" and self.following("("):
                raise _refuse(f"the function {value}() is not supported; supported: S_INTERSECTS, DATE, TIMESTAMP.")
            elif kind == "word":
                out.append(self.property(value))
            elif kind == "punct" and value in "+-" and (not out or out[-1] in ("(", ",") or out[-1] in KEYWORDS
                                                          or out[-1] in ("=", "<>", "<", ">", "<=", ">=")):
                out.append(value)  # a sign
            elif kind == "punct" and value in "+-":
                raise _refuse("arithmetic is not supported.")
            else:
                out.append(value)
        return " ".join(out)

    def intersects(self) -> str:
        self.expect("(")
        kind, name = self.next()
        if kind not in ("word", "quoted"):
            raise _refuse("S_INTERSECTS takes a geometry property first.")
        name = name[1:-1] if kind == "quoted" else name
        field = self.property(name)
        if not self.fields[name].is_geometry:
            raise _refuse(f"'{name}' is no geometry property.")
        self.expect(",")
        _, shape = self.next()
        if shape.upper() == "BBOX":
            numbers = self.numbers()
            if len(numbers) == 6:
                numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
            if len(numbers) != 4:
                raise _refuse("BBOX takes four numbers: minlon, minlat, maxlon, maxlat.")
            west, south, east, north = numbers
            self.expect(")")
            return f"in_bbox({field}, {south}, {west}, {north}, {east})"
        if shape.upper() not in WKT:
            raise _refuse(f"S_INTERSECTS takes a BBOX(…) or a WKT geometry ({', '.join(sorted(WKT))}); got '{shape}'.")
        wkt = shape.upper() + self.balanced()
        self.expect(")")
        return f"intersects({field}, geom'{wkt}')"

    def numbers(self) -> list[str]:
        self.expect("(")
        values, sign = [], ""
        while True:
            kind, value = self.next()
            if value in "+-" and kind == "punct":
                sign = "-" if value == "-" else ""
                continue
            if kind != "number":
                raise _refuse(f"expected a number, found '{value}'.")
            values.append(sign + value)
            sign = ""
            kind, value = self.next()
            if value == ")":
                return values
            if value != ",":
                raise _refuse(f"expected ',' or ')', found '{value}'.")

    def balanced(self) -> str:
        """A WKT body: parentheses, numbers, signs and commas (``((9 53, 10 53, …))``)."""
        depth, parts = 0, []
        while True:
            kind, value = self.next()
            if kind not in ("punct", "number"):
                raise _refuse(f"a WKT geometry holds numbers only, found '{value}'.")
            depth += {"(": 1, ")": -1}.get(value, 0)
            parts.append(value)
            if depth == 0:
                break
        text = " ".join(parts)
        return re.sub(r"\s*([(),])\s*", r"\1", text).replace(",", ", ").replace("- ", "-")


def odsql_where(schema: TableSchema, text: str) -> str:
    """The ODSQL ``where`` of a CQL2 text filter over ``schema``'s fields; InvalidParameter for what it cannot say."""
    if len(text) > MAX_CHARS:
        raise _refuse(f"at most {MAX_CHARS} characters.")
    tokens = _tokens(text)
    if not tokens:
        raise _refuse("it is empty.")
    return _Translation(schema, tokens).run()
