"""JSON-family deliveries (a JSON array, records under a path, NDJSON, a GeoJSON FeatureCollection) read incrementally.

The file is decoded in blocks and walked with the standard library's own JSON
parser (``json.JSONDecoder.raw_decode``, its C scanner), one record at a time: the
values, the repeated-key marks and the error messages (with line and column in the
whole document) are exactly those ``json.loads`` of the whole text would give,
while only a block of text and one record are held. Only the containers around the
records (the top-level array, the objects on a ``record_path``, a FeatureCollection)
are stepped through here; every value inside them is parsed by ``raw_decode``.

A delivery's columns are the keys of all its records (in the order they first
appear), known only at its end, so a large file is read twice: once to check it
whole and collect the keys (any error is raised before a single row is handed on,
as before), once to hand its rows on in batches. A file of at most ``ONE_PASS_BYTES``
is read once, its batches held.
"""

from __future__ import annotations

import codecs
import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa

from catalogue.errors import MalformedFeed

BLOCK_BYTES = 1 << 20  # bytes decoded at a time
BATCH_ROWS = 50_000  # a batch ends at this many rows ...
BATCH_CHARS = 8 << 20  # ... or once its records took this many characters of text
ONE_PASS_BYTES = 16 << 20  # a file up to this size is read once, its batches held
_SPACE = re.compile(r"[ \t\n\r]*")  # what json skips between tokens

Source = bytes | Path


class RepeatedKeys(dict[str, Any]):
    """A JSON object that named a key more than once (json.loads would keep the last value silently)."""

    repeated: list[str]


def json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object from its key/value pairs, marked when a key repeats."""
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    marked = RepeatedKeys(pairs[::-1])  # the first value wins, as the first CSV column does
    seen: set[str] = set()
    marked.repeated = [k for k, _ in pairs if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
    return marked


def _codec(options: dict[str, Any]) -> tuple[str, str]:
    """The declared encoding, and the codec that reads it (a UTF-8 byte-order mark dropped)."""
    encoding = options.get("encoding", "utf-8")
    return encoding, ("utf-8-sig" if encoding.replace("_", "-").lower() in ("utf-8", "utf8") else encoding)


def _open(source: Source) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")


def _size(source: Source) -> int:
    return len(source) if isinstance(source, bytes) else source.stat().st_size


class _Text:
    """The decoded text of a delivery, read block by block: a window ``buf`` and a position in it.

    Counts the lines and the column before the window, so a position names its line and
    column in the whole document, as ``json.JSONDecodeError`` would.
    """

    def __init__(self, handle: BinaryIO, options: dict[str, Any]) -> None:
        self.encoding, codec = _codec(options)
        self._sig, self._bom = codec == "utf-8-sig", 0
        try:
            self._decoder = codecs.getincrementaldecoder(codec)()
        except LookupError as exc:
            raise MalformedFeed(f"The feed is not valid {self.encoding} text: {exc}.") from exc
        self._handle = handle
        self._read = 0  # bytes read so far
        self.buf, self.pos, self.eof = "", 0, False
        self._line, self._column = 0, 0  # line feeds before the window; characters after the last one
        self.chars = 0  # characters dropped before the window

    def more(self, at_least: int = 0) -> bool:
        """Read another block (at least ``at_least`` more characters, as far as there are any); False at the end."""
        if self.eof:
            return False
        self._drop()
        wanted = len(self.buf) + max(at_least, 1)
        while len(self.buf) < wanted and not self.eof:
            block = self._handle.read(max(BLOCK_BYTES, at_least))
            self.buf += self._decode(block, final=not block)
            self.eof = not block
        return True

    def _decode(self, block: bytes, final: bool) -> str:
        pending = len(self._decoder.getstate()[0])
        try:
            return self._decoder.decode(block, final=final)
        except UnicodeDecodeError as exc:
            # Its position counted as bytes.decode() of the whole file counts it (after a byte-order mark it drops).
            start = self._read - pending + exc.start - self._bom
            end = start + exc.end - exc.start
            where = (f"byte 0x{exc.object[exc.start]:02x} in position {start}" if end == start + 1
                     else f"bytes in position {start}-{end - 1}")
            raise MalformedFeed(f"The feed is not valid {self.encoding} text: '{exc.encoding}' codec can't "
                                f"decode {where}: {exc.reason}.") from exc
        finally:
            if not self._read and self._sig and block.startswith(codecs.BOM_UTF8):
                self._bom = len(codecs.BOM_UTF8)
            self._read += len(block)

    def _drop(self) -> None:
        """Forget the text before ``pos`` (keeping count of its lines)."""
        pos = self.pos
        lines = self.buf.count("\n", 0, pos)
        if lines:
            self._line += lines
            self._column = pos - self.buf.rfind("\n", 0, pos) - 1
        else:
            self._column += pos
        self.chars += pos
        self.buf, self.pos = self.buf[pos:], 0

    def where(self, pos: int) -> tuple[int, int]:
        """(line, column) of position ``pos`` of the window in the whole document, as json counts them."""
        lines = self.buf.count("\n", 0, pos)
        if lines:
            return self._line + lines + 1, pos - self.buf.rfind("\n", 0, pos)
        return self._line + 1, self._column + pos + 1

    def check_rest(self) -> None:
        """Decode the rest of the file (its text is not valid in the declared encoding: that error comes first)."""
        while self.more():
            self.buf, self.pos = "", 0

    def syntax(self, message: str, pos: int) -> MalformedFeed:
        """The feed's JSON syntax error at window position ``pos``, as the whole document's json.loads names it."""
        line, column = self.where(pos)
        self.check_rest()
        return MalformedFeed(f"The feed is not valid JSON: {message} at line {line}, column {column}.",
                             details={"line": line})


class _Walk:
    """One walk through a JSON document, yielding the elements of one array (the records).

    ``route(depth, kind)`` says, for a value of kind 'object', 'array' or 'scalar' at
    ``depth``, which member (or array index) leads on to the records, or None when
    this value is where they are. Members named in ``watch`` at the top level are
    kept (their first value), as json.loads' first-wins dicts keep them.
    """

    def __init__(self, text: _Text, route: Callable[[int, str], str | None], watch: tuple[str, ...] = ()) -> None:
        self.text, self.route, self.watch = text, route, watch
        self.decoder = json.JSONDecoder(object_pairs_hook=json_object)
        self.found: str | None = None  # the kind of the value where the records are ('array': they were yielded)
        self.missing: int | None = None  # the depth where the route ended (no such member)
        self.watched: dict[str, Any] = {}
        self.top: str | None = None  # the kind of the document's top-level value

    def records(self) -> Iterator[Any]:
        """Walk the whole document, yielding the records (a syntax error anywhere raises MalformedFeed)."""
        yield from self._value(0)
        if self._peek():
            raise self.text.syntax("Extra data", self.text.pos)

    def _peek(self) -> str:
        """The next character after white space ('' at the end)."""
        text = self.text
        while True:
            end = _SPACE.match(text.buf, text.pos).end()  # type: ignore[union-attr]
            text.pos = end
            if end < len(text.buf):
                return text.buf[end]
            if not text.more():
                return ""

    def _parse(self) -> Any:
        """The value at the position, parsed by json (more text read while it may be cut off)."""
        text = self.text
        self._peek()
        while True:
            try:
                value, end = self.decoder.raw_decode(text.buf, text.pos)
            except json.JSONDecodeError as exc:
                # Cut off by the window's end (at it, within a token, or in a string that has not ended yet):
                # read more and parse again; an error well before the end is the document's own.
                cut = exc.pos >= len(text.buf) - 10 or exc.msg.startswith("Unterminated string")
                if cut and text.more(len(text.buf) - text.pos):
                    continue
                raise text.syntax(exc.msg, exc.pos) from None
            if end == len(text.buf) and text.more(len(text.buf) - text.pos):
                continue  # a number may go on in the next block
            text.pos = end
            return value

    def _expect(self, char: str, message: str) -> None:
        if self._peek() != char:
            raise self.text.syntax(message, self.text.pos)
        self.text.pos += 1

    def _value(self, depth: int) -> Iterator[Any]:
        first = self._peek()
        kind = "object" if first == "{" else "array" if first == "[" else "scalar"
        if depth == 0:
            self.top = kind
        step = self.route(depth, kind)
        if step is None:
            self.found = kind
            if kind == "array":
                for _ in self._elements():
                    yield self._parse()
            else:
                self._parse()
            return
        if kind == "object":
            yield from self._object(depth, step)
        elif kind == "array" and step.isdigit():
            for index in self._elements():
                if index == int(step):
                    yield from self._value(depth + 1)
                else:
                    self._parse()
        else:
            self._parse()
        if self.found is None and self.missing is None:
            self.missing = depth

    def _object(self, depth: int, step: str) -> Iterator[Any]:
        text, seen = self.text, set()
        text.pos += 1
        if self._peek() == "}":
            text.pos += 1
            return
        while True:
            if self._peek() != '"':
                raise text.syntax("Expecting property name enclosed in double quotes", text.pos)
            key = self._parse()
            self._expect(":", "Expecting ':' delimiter")
            if key == step and key not in seen:
                yield from self._value(depth + 1)
            elif depth == 0 and key in self.watch and key not in seen:
                self.watched[key] = self._parse()
            else:
                self._parse()
            seen.add(key)
            if self._peek() == "}":
                text.pos += 1
                return
            self._expect(",", "Expecting ',' delimiter")

    def _elements(self) -> Iterator[int]:
        """Step through an array: yields the index of each element, whose value the caller then reads."""
        text = self.text
        text.pos += 1
        if self._peek() == "]":
            text.pos += 1
            return
        index = 0
        while True:
            yield index
            index += 1
            if self._peek() == "]":
                text.pos += 1
                return
            self._expect(",", "Expecting ',' delimiter")


class Rows:
    """Records as columns of text: their keys (in the order they first appear), and batches of bounded size.

    ``add`` takes one record; the first record that is not an object, or that repeats
    a key, is kept as ``problem`` (raised once the whole document has been read, as
    before). With ``keep``, finished batches are kept in ``batches``; without ``cells``
    only the keys are collected (the first of two readings).
    """

    def __init__(self, kind: str, keep: bool, labels: list[str] | None = None, cells: bool = True) -> None:
        self.kind, self.keep, self.build = kind, keep, cells
        self.labels: dict[str, None] = dict.fromkeys(labels or [])
        self.problem: MalformedFeed | None = None
        self.count = 0
        self.batches: list[pa.RecordBatch] = []
        self._cells: dict[str, list[str | None]] = {}
        self._rows = 0
        self._start = 0  # where the text of the batch's first record starts

    def add(self, record: Any, end: int = 0) -> pa.RecordBatch | None:
        """Take one record (``end``: where its text ends); the batch it completed, if any."""
        self.count += 1
        if self.problem is not None:
            return None
        if not isinstance(record, dict):
            self.problem = MalformedFeed(f"{self.kind} row {self.count} is not an object.",
                                         details={"record": self.count})
            return None
        if isinstance(record, RepeatedKeys):
            self.problem = MalformedFeed(f"{self.kind} row {self.count} names the key '{record.repeated[0]}' more "
                                         "than once; each key may appear once per object.")
            return None
        labels, cells, rows = self.labels, self._cells, self._rows
        if not self.build:
            for key in record:
                if key not in labels:
                    labels[key] = None
            return None
        for key in record:
            if key not in labels:
                labels[key] = None
            if key not in cells:
                cells[key] = [None] * rows
        for key, column in cells.items():
            column.append(_as_text(record.get(key)))
        self._rows += 1
        if self._rows >= BATCH_ROWS or end - self._start >= BATCH_CHARS:
            self._start = end
            return self.flush()
        return None

    def flush(self) -> pa.RecordBatch | None:
        """The rows taken since the last batch as one batch (None if there are none)."""
        if not self._rows:
            return None
        rows, cells = self._rows, self._cells
        batch = pa.RecordBatch.from_arrays(
            [pa.array(cells[label], pa.string()) if label in cells else pa.nulls(rows, pa.string())
             for label in self.labels], names=list(self.labels))
        self._cells, self._rows = {}, 0
        if self.keep:
            self.batches.append(batch)
        return batch

    def padded(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` with a column of nulls for each key that first appeared after it."""
        if batch.num_columns == len(self.labels):
            return batch
        have = set(batch.schema.names)
        return pa.RecordBatch.from_arrays(
            [batch.column(label) if label in have else pa.nulls(batch.num_rows, pa.string()) for label in self.labels],
            names=list(self.labels))


_LITERALS: dict[Any, str] = {True: "true", False: "false"}


def _as_text(value: Any) -> str | None:
    """A cell as text: a string as it is, any other value as json.dumps writes it (without escaping non-ASCII)."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if value is None:
        return None
    if kind is bool:
        return _LITERALS[value]
    if kind is int:
        return int.__repr__(value)
    if kind is float and value - value == 0:  # finite (json.dumps writes NaN and the infinities by name)
        return float.__repr__(value)
    return json.dumps(value, ensure_ascii=False)


# A reading of an opened delivery: its records, each with the position (in characters) where it ends.
Reading = Callable[[BinaryIO], Iterator[tuple[Any, int]]]


def read_records(source: Source, reading: Reading, kind: str) -> tuple[list[str], Iterator[pa.RecordBatch]]:
    """The records ``reading`` finds in ``source``: their column labels and a stream of batches of text columns.

    The first reading checks the whole delivery (MalformedFeed before any row is
    handed on) and collects the labels; a file larger than ``ONE_PASS_BYTES`` is
    read a second time for its rows, so no more than a batch of rows is held.
    """
    once = _size(source) <= ONE_PASS_BYTES
    rows = Rows(kind, keep=once, cells=once)
    with _open(source) as handle:
        for record, end in reading(handle):
            rows.add(record, end)
    rows.flush()
    if rows.problem is not None:
        raise rows.problem
    labels = list(rows.labels)
    if once:
        return labels, iter([rows.padded(batch) for batch in rows.batches])

    def again() -> Iterator[pa.RecordBatch]:
        second = Rows(kind, keep=False, labels=labels)
        with _open(source) as handle:
            for record, end in reading(handle):
                batch = second.add(record, end)
                if batch is not None:
                    yield batch
        last = second.flush()
        if last is not None:
            yield last

    return labels, again()


def _bom_check(text: _Text) -> None:
    """json.loads refuses a string that starts with a byte-order mark (one the declared codec did not drop)."""
    while not text.buf and text.more():
        pass
    if text.buf.startswith("\ufeff"):
        raise text.syntax("Unexpected UTF-8 BOM (decode using utf-8-sig)", 0)


def json_records(source: Source, options: dict[str, Any]) -> tuple[list[str], Iterator[pa.RecordBatch]]:
    """A JSON document's records: the array at the top, at ``record_path``, or under ``records_key`` of an object."""
    path = options.get("record_path")
    records_key = options.get("records_key", "records")
    steps = path.split(".") if path else []

    def route(depth: int, kind: str) -> str | None:
        if path:
            return steps[depth] if depth < len(steps) else None
        return records_key if depth == 0 and kind == "object" else None

    def reading(handle: BinaryIO) -> Iterator[tuple[Any, int]]:
        text = _Text(handle, options)
        _bom_check(text)
        walk = _Walk(text, route)
        for record in walk.records():
            yield record, text.chars + text.pos
        if path and walk.missing is not None:
            walked = ".".join(steps[:walk.missing]) or "the top level"
            raise MalformedFeed(f"The JSON feed has no '{steps[walk.missing]}' under {walked} (record_path '{path}'). "
                                "Check the record_path in the source options against the document.",
                                details={"record_path": path})
        if path and walk.found != "array":
            raise MalformedFeed(f"The value at record_path '{path}' is not an array of objects.")
        if walk.found != "array":
            raise MalformedFeed("The JSON feed must be an array of objects (one object per row).")

    return read_records(source, reading, "JSON")


def geojson_records(source: Source, options: dict[str, Any]) -> tuple[list[str], Iterator[pa.RecordBatch]]:
    """A FeatureCollection's features as rows: their properties plus a ``geometry`` column (GeoJSON text)."""

    def reading(handle: BinaryIO) -> Iterator[tuple[Any, int]]:
        text = _Text(handle, options)
        _bom_check(text)
        walk = _Walk(text, lambda depth, kind: "features" if depth == 0 and kind == "object" else None,
                     watch=("type",))
        problem: MalformedFeed | None = None
        for number, feature in enumerate(walk.records(), start=1):
            if problem is None:
                record = _feature_row(number, feature)
                if isinstance(record, MalformedFeed):
                    problem = record
                else:
                    yield record, text.chars + text.pos
        if walk.top != "object" or walk.watched.get("type") != "FeatureCollection":
            raise MalformedFeed("The GeoJSON feed must be a FeatureCollection object.")
        if walk.found != "array":
            raise MalformedFeed("The GeoJSON FeatureCollection has no 'features' list.")
        if problem is not None:
            raise problem

    return read_records(source, reading, "GeoJSON")


def _feature_row(number: int, feature: Any) -> dict[str, Any] | MalformedFeed:
    """The row of GeoJSON feature ``number`` (its properties and geometry), or what is wrong with it."""
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        return MalformedFeed(f"GeoJSON feature {number} is not a Feature object.")
    properties = feature.get("properties") or {}
    if isinstance(properties, RepeatedKeys):
        return MalformedFeed(f"GeoJSON feature {number} names the property '{properties.repeated[0]}' more "
                             "than once; each property may appear once per feature.")
    try:
        record = dict(properties)
    except (TypeError, ValueError):
        return MalformedFeed(f"GeoJSON feature {number} has properties that are not an object; a feature's "
                             "'properties' must be an object (or null).")
    record["geometry"] = feature.get("geometry")
    return record


def _lines(text: _Text) -> Iterator[tuple[int, str]]:
    """The text's lines (ended by LF only, as str.split('\\n') cuts them) with their numbers."""
    number = 0
    while True:
        end = text.buf.find("\n", text.pos)
        if end < 0:
            if text.more(len(text.buf) - text.pos):
                continue
            yield number + 1, text.buf[text.pos:]
            text.pos = len(text.buf)
            return
        number += 1
        yield number, text.buf[text.pos:end]
        text.pos = end + 1


def ndjson_records(source: Source, options: dict[str, Any]) -> tuple[list[str], Iterator[pa.RecordBatch]]:
    """Newline-delimited JSON: one object per line (blank lines skipped); a bad line is named by its number."""
    decoder = json.JSONDecoder(object_pairs_hook=json_object)

    def reading(handle: BinaryIO) -> Iterator[tuple[Any, int]]:
        text = _Text(handle, options)
        # Lines end at LF (CRLF too): str.splitlines() would also cut at U+2028, U+0085 or a form feed,
        # which a JSON string may hold raw.
        for number, line in _lines(text):
            if not line.strip():
                continue
            try:
                if line.startswith("\ufeff"):  # as json.loads refuses it
                    raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", line, 0)
                record = decoder.decode(line)
            except json.JSONDecodeError as exc:
                text.check_rest()
                raise MalformedFeed(f"NDJSON line {number} is not valid JSON: {exc.msg} at column {exc.colno}.",
                                    details={"line": number}) from exc
            yield record, text.chars + text.pos

    return read_records(source, reading, "NDJSON line")
