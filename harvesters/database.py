"""Harvest a table or a read-only query from PostgreSQL, streamed in batches.

The connection string comes from the environment (``options.dsn_env`` names the variable), never
from the definition; ``url`` only says where the data comes from, for people (e.g.
``postgresql://stadtwerke-db/parking``), and is not used to connect. The query runs in a READ ONLY
transaction with a statement timeout of the harvest deadline, through a server-side cursor fetched
``batch_rows`` at a time, and the rows are written as CSV into the data directory's ``incoming/``
(capped at ``harvest_max_bytes``), which the pipeline reads as any CSV delivery. Unchanged rows
make no new version (the pipeline compares them).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from catalogue.errors import FeedTooLarge, MalformedFeed, SourceUnreachable
from catalogue.ingest.pipeline import Delivery
from catalogue.meta.models import utcnow
from catalogue.settings import Settings
from harvesters.base import SourceSpec
from harvesters.guard import Deadline

BATCH_ROWS = 10_000
CSV_OPTIONS = {"delimiter": ",", "encoding": "utf-8", "newlines_in_values": True}


class DatabaseHarvester:
    """Rows of ``options.table`` or ``options.query`` from the PostgreSQL database in ``$<options.dsn_env>``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def fetch(self, source: SourceSpec) -> Delivery:
        import psycopg  # the [postgres] extra

        dsn, statement = self._dsn(source), self._statement(source, psycopg)
        batch = int(source.options.get("batch_rows", BATCH_ROWS))
        deadline = Deadline(self.settings.harvest_deadline_s, f"Reading source '{source.name}' from its database")
        incoming = self.settings.data_dir / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"{source.name}-", suffix=".csv", dir=incoming)
        path = Path(name)
        try:
            rows, size, digest = self._copy(source, psycopg, dsn, statement, batch, deadline, fd)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        provenance = {"source": source.name, "source_url": source.url, "rows_read": rows,
                      "received_at": utcnow().isoformat(), "delivery_sha256": digest, "delivery_bytes": size}
        return Delivery(content=b"", path=path, format="csv", options=CSV_OPTIONS, mode=source.mode,
                        provenance=provenance)

    def _dsn(self, source: SourceSpec) -> str:
        variable = source.options.get("dsn_env")
        if not variable:
            raise MalformedFeed(
                f"Source '{source.name}' (database) names no environment variable for its connection. Add "
                "`options: {dsn_env: <VARIABLE>}` to its definition and put the DSN in that variable.",
            )
        dsn = os.environ.get(variable)
        if not dsn:
            raise SourceUnreachable(
                f"Source '{source.name}' connects with the DSN in the environment variable {variable}, which is "
                "not set here. Set it for the process that harvests (e.g. postgresql://user@host:5432/db).",
                details={"dsn_env": variable},
            )
        return dsn

    def _statement(self, source: SourceSpec, psycopg: Any) -> Any:
        table, query = source.options.get("table"), source.options.get("query")
        if bool(table) == bool(query):
            raise MalformedFeed(
                f"Source '{source.name}' (database) must name exactly one of `options.table` and `options.query` "
                f"(it names {'both' if table else 'neither'}).",
            )
        if table:
            return psycopg.sql.SQL("SELECT * FROM {}").format(psycopg.sql.Identifier(*str(table).split(".", 1)))
        return psycopg.sql.SQL(str(query))  # the operator's query, run READ ONLY

    def _copy(self, source: SourceSpec, psycopg: Any, dsn: str, statement: Any, batch: int, deadline: Deadline,
              fd: int) -> tuple[int, int, str]:
        """Stream the rows into the CSV file ``fd``; (rows, bytes, sha256)."""
        cap, digest, rows, size = self.settings.harvest_max_bytes, hashlib.sha256(), 0, 0
        try:
            connect_s = max(1, int(min(self.settings.harvest_timeout_s, deadline.remaining())))
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as out, \
                    psycopg.connect(dsn, connect_timeout=connect_s) as conn:
                conn.read_only = True  # BEGIN READ ONLY: a query that writes fails, nothing changes
                conn.execute(psycopg.sql.SQL("SET LOCAL statement_timeout = {}").format(
                    psycopg.sql.Literal(max(1, int(deadline.remaining() * 1000)))))
                with conn.cursor(name=f"urbandata_{os.getpid()}") as cursor:
                    cursor.itersize = batch
                    cursor.execute(statement)
                    header = True
                    while True:
                        deadline.check()
                        found = cursor.fetchmany(batch)
                        lines = [_line([column.name for column in cursor.description or []])] if header else []
                        header = False
                        lines += [_line([_cell(value) for value in row]) for row in found]
                        for line in lines:
                            out.write(line)
                            encoded = line.encode()
                            digest.update(encoded)
                            size += len(encoded)
                        rows += len(found)
                        if size > cap:
                            raise FeedTooLarge(
                                f"Source '{source.name}' returns more than {cap} bytes of rows, more than the limit. "
                                "Narrow the query or raise URBANDATA_HARVEST_MAX_BYTES.", details={"max_bytes": cap},
                            )
                        if not found:
                            break
                conn.rollback()  # it only read
        except psycopg.OperationalError as exc:
            if getattr(exc, "sqlstate", None) == "57014":  # query_canceled: the statement timeout
                deadline.check(slack=float("inf"))
            raise SourceUnreachable(
                f"Source '{source.name}' cannot reach its database: {_first_line(exc)}. Check the DSN in "
                f"${source.options.get('dsn_env')} and that the server is running.",
                details={"dsn_env": source.options.get("dsn_env")},
            ) from exc
        except psycopg.Error as exc:
            raise MalformedFeed(
                f"Source '{source.name}': the database refused the read: {_first_line(exc)}. Check "
                "`options.table` or `options.query` in its definition (it runs in a READ ONLY transaction).",
                details={"sqlstate": getattr(exc, "sqlstate", None)},
            ) from exc
        return rows, size, digest.hexdigest()


def _line(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


def _cell(value: Any) -> str:
    """A database value as the text the pipeline parses (ISO dates and times, JSON for structures)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    return str(value)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
