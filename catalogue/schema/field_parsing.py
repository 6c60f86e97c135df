"""SQL expressions that parse one text column into a Table Schema field's type.

Each parser returns NULL for a value it cannot read, never a guess: with
``decimalChar=","`` the text ``12.345,67`` becomes 12345.67 only where
``groupChar="."`` is declared, and ``12.5`` is refused rather than read as
12.5 or 125 (group characters must separate groups of three digits). Regular expressions guard casts that DuckDB would round
(``'12.5'::BIGINT`` is 13) or read loosely (``'1_000'``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from catalogue.schema.sql_text import literal, literal_list

if TYPE_CHECKING:  # model.py imports this module's defaults; a runtime import would be a cycle
    from catalogue.schema.model import Field

INTEGER_RE = r"\s*[+-]?\d+\s*"
NUMBER_RE = r"\s*([+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]?(NaN|INF|Infinity))\s*"
ISO_DATE_RE = r"\d{4}-\d{2}-\d{2}"
# Frictionless' default datetime: date, time to the second, maybe a fraction and an offset.
# Without it DuckDB would also read 'infinity', 'epoch', a bare date or a time without seconds.
ISO_DATETIME_RE = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?"
# Frictionless' default time, in UTC ('Z') or local: an offset cannot be kept in a TIME, and DuckDB
# would drop it without a word (12:00:00+01:00 read as 12:00:00), as it would read 12:00 or 1:2:3.
ISO_TIME_RE = r"\d{2}:\d{2}:\d{2}(\.\d+)?Z?"
YEAR_RE = r"\s*\d{4}\s*"
PAIR_RE = r"\s*[+-]?\d+(\.\d+)?\s*,\s*[+-]?\d+(\.\d+)?\s*"

# What each strptime directive of a date, datetime or time pattern matches: the widths of
# Python's strptime (``_strptime.TimeRE``: %Y four digits, %y two, %d, %m, %H, %M and %S one
# or two, %f one to six), the English names DuckDB's strptime reads. DuckDB's own strptime is
# looser (%Y reads '26' as the year 26, blanks around the value are skipped), so the whole
# value must match the pattern built from these before it is parsed; the ranges (no 13th
# month) are left to the parser. Digits without alternatives keep the guard cheap: 3M values
# parse in 0.50 s with it, 0.49 s without (with Python's range alternatives: 1.08 s).
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DIRECTIVES = {
    "Y": r"\d{4}",
    "y": r"\d{2}",
    "m": r"\d{1,2}",
    "d": r"\d{1,2}",
    "j": r"\d{1,3}",
    "H": r"\d{1,2}",
    "I": r"\d{1,2}",
    "M": r"\d{1,2}",
    "S": r"\d{1,2}",
    "f": r"\d{1,6}",
    "p": r"(?i:am|pm)",
    "b": "(?i:" + "|".join(m[:3] for m in _MONTHS) + ")",
    "h": "(?i:" + "|".join(m[:3] for m in _MONTHS) + ")",
    "B": "(?i:" + "|".join(_MONTHS) + ")",
    "a": "(?i:" + "|".join(d[:3] for d in _DAYS) + ")",
    "A": "(?i:" + "|".join(_DAYS) + ")",
    "z": r"[+-]\d{2}:?[0-5]\d",
    "%": "%",
}


def pattern_regex(pattern: str) -> str:
    """The regular expression a value must match in whole to be read with the strptime ``pattern``.

    Raises ValueError naming a directive the hub does not support.
    """
    out, rest = [], pattern
    while rest:
        head, percent, rest = rest.partition("%")
        out.append(re.escape(head))
        if not percent:
            break
        directive, rest = rest[:1], rest[1:]
        if directive not in DIRECTIVES:
            raise ValueError(f"'%{directive}' is not a supported directive; use "
                             + ", ".join(f"%{d}" for d in DIRECTIVES) + ".")
        out.append(f"(?:{DIRECTIVES[directive]})")
    return "".join(out)


DEFAULT_TRUE = ["true", "True", "TRUE", "1"]
DEFAULT_FALSE = ["false", "False", "FALSE", "0"]


def _guarded(text: str, pattern: str, expression: str) -> str:
    return f"CASE WHEN regexp_full_match({text}, {literal(pattern)}) THEN {expression} END"


def _strip_group(text: str, field: Field) -> str:
    group = field.group_char
    return f"replace({text}, {literal(group)}, '')" if group else text


def _grouping_ok(text: str, field: Field, decimal: str | None) -> str:
    """SQL: group characters, where present, sit between groups of three digits (1.234.567,8)."""
    group = field.group_char
    if not group:
        return "TRUE"
    g = re.escape(group)
    fraction = rf"({re.escape(decimal)}\d*)?" if decimal else ""
    grouped = rf"\s*[+-]?\d{{1,3}}({g}\d{{3}})+{fraction}\s*"
    return f"(NOT contains({text}, {literal(group)}) OR regexp_full_match({text}, {literal(grouped)}))"


def _double(text: str) -> str:
    """``text`` cast to DOUBLE where it matches NUMBER_RE, without the regex for the text most numbers are.

    DuckDB's cast reads beyond NUMBER_RE only with '_' between digits, a '+'
    before the sign, a vertical tab as a blank, or words for NaN and infinity;
    text free of them that casts to a finite number matches NUMBER_RE (a test
    holds the cast to this).
    """
    cast = f"TRY_CAST({text} AS DOUBLE)"
    plain = f"isfinite({cast}) AND NOT (contains({text}, '_') OR contains({text}, '+-') OR contains({text}, chr(11)))"
    return f"CASE WHEN {plain} THEN {cast} ELSE {_guarded(text, NUMBER_RE, cast)} END"


def _number(text: str, field: Field) -> str:
    decimal = field.decimal_char
    grouping = _grouping_ok(text, field, decimal)
    text = _strip_group(text, field)
    if decimal != ".":
        # A '.' left after removing group characters is not this feed's decimal mark.
        text = f"CASE WHEN NOT contains({text}, '.') THEN replace({text}, {literal(decimal)}, '.') END"
    return f"CASE WHEN {grouping} THEN {_double(text)} END"


def _integer(text: str, field: Field) -> str:
    grouping = _grouping_ok(text, field, None)
    text = _strip_group(text, field)
    cast = f"TRY_CAST({text} AS BIGINT)"
    # Text the cast writes back unchanged is digits after an optional '-', which INTEGER_RE
    # takes: only the rest needs the regex (30 % cheaper on plain integers).
    return (f"CASE WHEN {grouping} THEN CASE WHEN CAST({cast} AS VARCHAR) = {text} THEN {cast} "
            f"ELSE {_guarded(text, INTEGER_RE, cast)} END END")


def _boolean(text: str, field: Field) -> str:
    true = field.true_values
    false = field.false_values
    return f"CASE WHEN {text} IN {literal_list(true)} THEN TRUE WHEN {text} IN {literal_list(false)} THEN FALSE END"


def _has_pattern(field: Field) -> bool:
    return field.format not in ("default", "any")


# Digits each numeric directive has when written in full (zero-padded): a value of exactly that
# shape always has the widths pattern_regex asks for.
_PADDED = {"Y": 4, "y": 2, "m": 2, "d": 2, "j": 3, "H": 2, "I": 2, "M": 2, "S": 2}


def padded_glob(pattern: str) -> str | None:
    """A GLOB matching the values of ``pattern`` written zero-padded (None if it has names, %f or %z)."""
    out, rest = [], pattern
    while rest:
        head, percent, rest = rest.partition("%")
        out.append("".join(f"[{c}]" if c in "*?[]" else c for c in head))
        if not percent:
            break
        directive, rest = rest[:1], rest[1:]
        if directive == "%":
            out.append("%")
        elif directive in _PADDED:
            out.append("[0-9]" * _PADDED[directive])
        else:
            return None
    return "".join(out)


def _strptime(text: str, field: Field) -> str:
    """The text read with the field's strptime pattern, where all of it matches the pattern's widths.

    Most values are written zero-padded, which a GLOB recognises for a third
    of what the regular expression costs (3M values: 0.85 s against 1.08 s,
    0.58 s unguarded); only the rest go to the regular expression.
    """
    parse = f"try_strptime({text}, {literal(field.format)})"
    regex = f"regexp_full_match({text}, {literal(pattern_regex(field.format))})"
    glob = padded_glob(field.format)
    if glob is None:
        return f"CASE WHEN {regex} THEN {parse} END"
    return f"CASE WHEN {text} GLOB {literal(glob)} THEN {parse} WHEN {regex} THEN {parse} END"


def _date(text: str, field: Field) -> str:
    if _has_pattern(field):
        return f"CAST({_strptime(text, field)} AS DATE)"
    return _guarded(text, ISO_DATE_RE, f"TRY_CAST({text} AS DATE)")


def reads_offset(pattern: str) -> bool:
    """Whether the strptime ``pattern`` reads an offset (%z)."""
    return pattern not in ("default", "any") and "%z" in pattern.replace("%%", "")


def zoned_pattern(field: Field) -> bool:
    """Whether the field's strptime pattern reads an offset (%z): its every value is an instant."""
    return reads_offset(field.format)


def offset_expression(text: str, field: Field) -> str | None:
    """SQL: whether the datetime text carries an offset or Z; None where the field's format decides it.

    A ``datetime`` field with the default (ISO 8601) format holds instants when
    its values carry offsets and local times when they do not (README, data
    rules); validation holds each delivery to one of the two.
    """
    if field.type != "datetime" or _has_pattern(field):
        return None
    # Text shaped yyyy-mm-ddThh:mm:ss (most local values) has no room for an offset.
    return (f"CASE WHEN {text} LIKE '____-__-__T__:__:__' THEN false "
            f"ELSE regexp_matches({text}, '(Z|[+-]\\d{{2}}:?\\d{{2}})$') END")


def _datetime(text: str, field: Field) -> str:
    if zoned_pattern(field):  # the instant, in UTC, as every datetime is held while validating
        return f"timezone('UTC', {_strptime(text, field)})"
    if _has_pattern(field):
        return _strptime(text, field)
    # ISO 8601; an offset or Z is converted to UTC (validation then keeps the field as instants).
    # Text shaped yyyy-mm-ddThh:mm:ss has ':' where an offset's sign would be, so it skips the regexes.
    iso = _guarded(text, ISO_DATETIME_RE, (
        f"CASE WHEN regexp_matches({text}, '([+-]\\d{{2}}:?\\d{{2}}|Z)$') "
        f"THEN timezone('UTC', TRY_CAST({text} AS TIMESTAMPTZ)) ELSE TRY_CAST({text} AS TIMESTAMP) END"
    ))
    return (f"CASE WHEN {text} LIKE '____-__-__T__:__:__' AND NOT {text} LIKE '%Z' "
            f"THEN TRY_CAST({text} AS TIMESTAMP) ELSE {iso} END")


def _time(text: str, field: Field) -> str:
    if _has_pattern(field):
        return f"CAST({_strptime(text, field)} AS TIME)"
    return _guarded(text, ISO_TIME_RE, f"TRY_CAST({text} AS TIME)")


def _year(text: str, field: Field) -> str:
    return _guarded(text, YEAR_RE, f"TRY_CAST({text} AS INTEGER)")


def _point(lon: str, lat: str) -> str:
    return (
        f"CASE WHEN {lon} BETWEEN -180 AND 180 AND {lat} BETWEEN -90 AND 90 "
        f"THEN ST_Point({lon}, {lat}) END"
    )


def _geopoint(text: str, field: Field) -> str:
    fmt = field.format
    if fmt == "array":
        lon = f"TRY_CAST(json_extract_string({text}, '$[0]') AS DOUBLE)"
        lat = f"TRY_CAST(json_extract_string({text}, '$[1]') AS DOUBLE)"
        ok = f"json_valid({text}) AND json_array_length({text}) = 2"
    elif fmt == "object":
        lon = f"TRY_CAST(json_extract_string({text}, '$.lon') AS DOUBLE)"
        lat = f"TRY_CAST(json_extract_string({text}, '$.lat') AS DOUBLE)"
        ok = f"json_valid({text}) AND json_type({text}) = 'OBJECT'"
    else:
        lon = f"TRY_CAST(split_part({text}, ',', 1) AS DOUBLE)"
        lat = f"TRY_CAST(split_part({text}, ',', 2) AS DOUBLE)"
        ok = f"regexp_full_match({text}, {literal(PAIR_RE)})"
    return f"CASE WHEN {ok} THEN {_point(lon, lat)} END"


def _geojson(text: str, field: Field) -> str:
    return f"CASE WHEN json_valid({text}) THEN try(ST_GeomFromGeoJSON({text})) END"


PARSERS: dict[str, Callable[[str, Field], str]] = {
    "string": lambda text, field: text,
    "integer": _integer,
    "number": _number,
    "boolean": _boolean,
    "date": _date,
    "datetime": _datetime,
    "time": _time,
    "year": _year,
    "geopoint": _geopoint,
    "geojson": _geojson,
}


def parse_expression(text: str, field: Field) -> str:
    """SQL turning the text expression ``text`` into the field's stored type (NULL if unreadable)."""
    return PARSERS[field.type](text, field)


def type_note(field: Field) -> str:
    """Frictionless' note for a type error: 'type is "number/default"'."""
    return f'type is "{field.type}/{field.format}"'
