"""MQTT sources: JSON sensor readings from a broker, appended to the dataset in parts.

The hub holds a persistent MQTT 5 session per source (client id ``options.client_id``, default
``urbandata-<source>``; clean start off, session kept a day), subscribed at QoS 1 to
``options.topics``. Readings are acknowledged by hand, only once the part holding them is committed
(or the message is quarantined): a reading the hub received but did not store is sent again by the
broker after a reconnect, and stored once, because parts are appended by primary key (a repeated key
inside a part is dropped here, one already published is dropped by the append).

Each message is checked on its own (a JSON object; no field outside the Table Schema; required
fields present; integers, numbers, booleans, dates and datetimes that read as such; enum, minimum,
maximum). A bad message is kept with its topic and payload under
``quarantine/<dataset>/mqtt-<stamp>.json`` and the stream goes on. A part is flushed when it
holds ``options.flush_rows`` readings or ``options.flush_seconds`` have passed; each flush is one
harvest job (published, unchanged or quarantined, saying how many messages it quarantined).

Two ways to run it: ``urbandata harvest NAME`` takes one part (the Harvester protocol: the part's
readings are acknowledged when the delivery is handed over), ``urbandata follow NAME`` keeps the
session open and flushes parts until stopped (``follow`` below; ``urbandata demo`` runs it in a thread).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from catalogue.errors import MalformedFeed, SourceNotFound, SourceUnreachable
from catalogue.hub import Hub, open_hub
from catalogue.ingest import jobs
from catalogue.ingest.pipeline import Delivery, IngestResult, ingest_delivery
from catalogue.meta.metadata import get_dataset
from catalogue.meta.models import HarvestSource, utcnow
from catalogue.schema.model import TableSchema
from catalogue.settings import Settings
from harvesters.base import SourceSpec
from harvesters.guard import OutboundGuard

log = logging.getLogger(__name__)

DEFAULT_PORT = 1883
FLUSH_ROWS = 1000
FLUSH_SECONDS = 5.0
SESSION_EXPIRY_S = 86_400  # the broker keeps the session (and unacknowledged readings) a day
RECEIVE_MAXIMUM = 65_535  # unacknowledged readings the broker may send ahead (MQTT 5); parts ack in bulk
RETRY_S = 2.0  # wait after a failed part before reconnecting
PAYLOAD_SHOWN = 4096  # bytes of a bad payload kept in the quarantine file


@dataclass(frozen=True)
class Message:
    """One MQTT message as received."""

    topic: str
    payload: bytes
    mid: int
    dup: bool = False


class BadMessage(Exception):
    """A message that is no valid reading; the text says why."""


@dataclass
class Reading:
    """A checked reading of ``part``: the record and its primary key."""

    message: Message
    record: dict[str, Any]
    key: tuple[Any, ...]


@dataclass
class Part:
    """The messages of one flush, sorted: readings to append, repeats, bad messages."""

    readings: list[Reading] = field(default_factory=list)
    repeats: list[Message] = field(default_factory=list)
    bad: list[tuple[Message, str]] = field(default_factory=list)

    @property
    def messages(self) -> list[Message]:
        return [r.message for r in self.readings] + self.repeats + [m for m, _ in self.bad]


def broker(settings: Settings, source: SourceSpec) -> tuple[str, int]:
    """The checked address and port of the source's broker (``mqtt://host:port``), through the outbound guard."""
    parts = urlsplit(source.url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise MalformedFeed(
            f"Source '{source.name}' (mqtt) needs a broker URL like mqtt://broker.example:1883, not '{source.url}'.",
            details={"url": source.url},
        )
    port = parts.port or DEFAULT_PORT
    guard = OutboundGuard.from_settings(settings)
    try:
        addresses = guard.addresses(parts.hostname, port)
    except Exception as exc:  # noqa: BLE001 - httpcore's ConnectError for a name that does not resolve
        if isinstance(exc, SourceUnreachable | MalformedFeed) or getattr(exc, "code", None):
            raise
        raise SourceUnreachable(f"Source '{source.name}': the broker {parts.hostname} cannot be resolved ({exc}).",
                                details={"url": source.url}) from exc
    return str(addresses[0]), port


class Subscription:
    """A persistent MQTT 5 session at QoS 1 whose messages queue up until taken; acknowledged by hand."""

    def __init__(self, settings: Settings, source: SourceSpec) -> None:
        import paho.mqtt.client as mqtt  # the [mqtt] extra
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.source = source
        self.topics = list(source.options.get("topics") or [])
        if not self.topics:
            raise MalformedFeed(f"Source '{source.name}' (mqtt) subscribes to no topic: add `options.topics`.")
        self.inbox: queue.Queue[Message] = queue.Queue()
        self.subscribed = threading.Event()
        host, port = broker(settings, source)
        client_id = str(source.options.get("client_id") or f"urbandata-{source.name}")
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                                  manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = lambda client, userdata, m: self.inbox.put(
            Message(m.topic, bytes(m.payload), m.mid, bool(m.dup)))
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        try:
            self.client.connect(host, port, keepalive=30, clean_start=False, properties=properties)
        except OSError as exc:
            raise SourceUnreachable(
                f"Source '{source.name}' cannot reach its MQTT broker at {source.url}: {exc.strerror or exc}. "
                "Check the URL and that the broker is running.", details={"url": source.url},
            ) from exc
        self.client.loop_start()
        if not self.subscribed.wait(settings.harvest_timeout_s):
            self.close()
            raise SourceUnreachable(f"Source '{source.name}': the broker at {source.url} did not confirm the "
                                    f"subscription within {settings.harvest_timeout_s:g} s.",
                                    details={"url": source.url})

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not reason.is_failure:
            client.subscribe([(topic, 1) for topic in self.topics])

    def take(self, rows: int, seconds: float, stop: threading.Event | None = None) -> list[Message]:
        """Messages until ``rows`` arrived or ``seconds`` passed since the first (or ``stop`` is set)."""
        taken: list[Message] = []
        ends: float | None = None
        while len(taken) < rows and not (stop is not None and stop.is_set()):
            wait = 0.2 if ends is None else min(0.2, ends - time.monotonic())
            if ends is not None and wait <= 0:
                break
            try:
                taken.append(self.inbox.get(timeout=max(wait, 0.001)))
            except queue.Empty:
                if ends is None and stop is None:  # one-shot: nothing queued for a whole window
                    ends = time.monotonic() + seconds
                continue
            if ends is None:
                ends = time.monotonic() + seconds
        return taken

    def ack(self, messages: list[Message]) -> None:
        for message in messages:
            self.client.ack(message.mid, 1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def check_message(message: Message, schema: TableSchema) -> dict[str, Any]:
    """The reading in ``message`` as a record of the schema's fields; raises BadMessage with the reason."""
    try:
        record = json.loads(message.payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadMessage(f"not JSON text in UTF-8: {exc}") from exc
    if not isinstance(record, dict):
        raise BadMessage("not a JSON object (one reading per message)")
    names = {f.name for f in schema.fields}
    unknown = sorted(set(record) - names)
    if unknown:
        raise BadMessage(f"field '{unknown[0]}' is not in the dataset's Table Schema")
    for f in schema.fields:
        value = record.get(f.name)
        if value is None or value == "":
            if f.constraints.get("required") or f.name in schema.primary_key:
                raise BadMessage(f"field '{f.name}' is missing")
            continue
        _check_value(f.name, f.type, f.format, value, f.constraints)
    return {f.name: record.get(f.name) for f in schema.fields}


def _check_value(name: str, kind: str, fmt: str, value: Any, constraints: Mapping[str, Any]) -> None:
    """Checks that need no parsing (JSON types, ISO dates, enum, bounds); validation does the rest."""
    ok, number = True, None
    if isinstance(value, (dict, list)) and kind not in ("geojson", "geopoint", "object", "array"):
        ok = False
    elif kind in ("integer", "number") and not isinstance(value, str):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and (kind == "number" or float(value).is_integer())
        number = value if ok else None
    elif kind == "boolean" and not isinstance(value, (bool, str)):
        ok = False
    elif kind in ("datetime", "date") and fmt in ("", "default"):
        try:
            (datetime if kind == "datetime" else date).fromisoformat(value)
        except (TypeError, ValueError):
            ok = False
    if not ok:
        raise BadMessage(f"field '{name}' is not a valid {kind}: {json.dumps(value)[:80]}")
    if "enum" in constraints and value not in constraints["enum"]:
        raise BadMessage(f"field '{name}' is {json.dumps(value)[:80]}, not one of {list(constraints['enum'])}")
    if number is not None and "minimum" in constraints and number < constraints["minimum"]:
        raise BadMessage(f"field '{name}' is {number}, below the minimum {constraints['minimum']}")
    if number is not None and "maximum" in constraints and number > constraints["maximum"]:
        raise BadMessage(f"field '{name}' is {number}, above the maximum {constraints['maximum']}")


def sort_messages(messages: list[Message], schema: TableSchema) -> Part:
    """Check each message; a primary key seen before in the part is a repeat (a QoS 1 redelivery)."""
    part, seen = Part(), set()
    key_fields = list(schema.primary_key)
    for message in messages:
        try:
            record = check_message(message, schema)
        except BadMessage as exc:
            part.bad.append((message, str(exc)))
            continue
        key = tuple(record[k] for k in key_fields) if key_fields else (message.payload,)
        if key in seen:
            part.repeats.append(message)
            continue
        seen.add(key)
        part.readings.append(Reading(message, record, key))
    return part


def keep_bad_messages(hub: Hub, dataset: str, bad: list[tuple[Message, str]]) -> str:
    """Keep bad messages with topic, payload and reason under quarantine/; their storage key."""
    entries = []
    for message, reason in bad:
        try:
            payload: str = message.payload[:PAYLOAD_SHOWN].decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            payload, encoding = message.payload[:PAYLOAD_SHOWN].hex(), "hex"
        entries.append({"topic": message.topic, "payload": payload, "payload_encoding": encoding,
                        "payload_bytes": len(message.payload), "error": reason})
    key = f"quarantine/{dataset}/mqtt-{utcnow().strftime('%Y%m%dT%H%M%S%f')}.json"
    hub.storage.write_bytes(key, json.dumps({"messages": entries}, indent=1, ensure_ascii=False).encode())
    return key


def _delivery(source: SourceSpec, part: Part) -> Delivery:
    content = json.dumps([r.record for r in part.readings], ensure_ascii=False).encode()
    provenance = {"source": source.name, "source_url": source.url, "received_at": utcnow().isoformat(),
                  "messages": len(part.messages), "readings": len(part.readings), "delivery_bytes": len(content)}
    return Delivery(content=content, format="json", options={}, mode="append", provenance=provenance)


def _report(bad: list[tuple[Message, str]], key: str) -> dict[str, Any]:
    """A report in the shape of a Frictionless one, an error per bad message (its topic as the place)."""
    errors = [{"type": "mqtt-message", "rowNumber": number, "message": f"topic {m.topic}: {reason}",
               "note": reason} for number, (m, reason) in enumerate(bad, start=1)]
    return {"valid": False, "stats": {"errors": len(errors)}, "errors": errors, "tasks": [],
            "quarantined_messages": key}


class MqttHarvester:
    """One part per run for ``urbandata harvest NAME`` (the Harvester protocol); ``follow`` streams."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def fetch(self, source: SourceSpec) -> Delivery | None:
        hub = open_hub(self.settings)
        try:
            schema = _dataset_schema(hub, source.dataset)
            subscription = Subscription(self.settings, source)
            try:
                messages = subscription.take(int(source.options.get("flush_rows", FLUSH_ROWS)),
                                             float(source.options.get("flush_seconds", FLUSH_SECONDS)))
                part = sort_messages(messages, schema)
                if part.bad:
                    key = keep_bad_messages(hub, source.dataset, part.bad)
                    log.warning("%s: %d bad MQTT messages quarantined at %s", source.name, len(part.bad), key)
                subscription.ack(part.messages)
            finally:
                subscription.close()
        finally:
            hub.close()
        return _delivery(source, part) if part.readings else None


def _dataset_schema(hub: Hub, dataset: str) -> TableSchema:
    from catalogue.meta.models import Dataset

    with hub.sessions() as session:
        found = session.scalar(select(Dataset).where(Dataset.name == dataset))
        if found is None:
            raise SourceNotFound(f"There is no dataset named '{dataset}'.")
        return found.schema


@dataclass
class FollowStats:
    """What a follower did so far."""

    parts: int = 0
    readings: int = 0  # valid readings offered to the dataset
    appended: int = 0  # rows the dataset gained (a reading it already holds is not appended again)
    repeats: int = 0  # a key repeated inside one part
    redelivered: int = 0  # messages the broker marked as sent again (DUP)
    failed: int = 0  # parts whose job failed (their readings come again after a reconnect)
    quarantined: int = 0
    jobs: list[int] = field(default_factory=list)
    last: IngestResult | None = None


def follow(hub: Hub, name: str | SourceSpec, stop: threading.Event, *,
           on_part: Callable[[str, FollowStats], None] | None = None) -> FollowStats:
    """Stream an MQTT source into its dataset until ``stop`` is set; each flushed part is a job.

    ``name``: a harvest source of the catalogue, or a SourceSpec not kept there (the demo's live
    feed, whose jobs then name no source).
    """
    if isinstance(name, SourceSpec):
        source, source_id = name, None
        with hub.sessions() as session:
            dataset_id = get_dataset(session, source.dataset).id
    else:
        with hub.sessions() as session:
            row = session.scalar(select(HarvestSource).where(HarvestSource.name == name))
            if row is None:
                raise SourceNotFound(f"There is no harvest source named '{name}'.")
            source = SourceSpec(name=name, dataset=row.dataset.name, url=row.url, format=row.format,
                                mode="append", options=dict(row.options))
            source_id, dataset_id = row.id, row.dataset_id
    schema = _dataset_schema(hub, source.dataset)
    rows = int(source.options.get("flush_rows", FLUSH_ROWS))
    seconds = float(source.options.get("flush_seconds", FLUSH_SECONDS))
    stats = FollowStats()
    subscription = Subscription(hub.settings, source)
    try:
        while not stop.is_set():
            messages = subscription.take(rows, seconds, stop)
            if not messages:
                continue
            try:
                line = _flush(hub, source, source_id, dataset_id, sort_messages(messages, schema), stats)
            except Exception as exc:  # noqa: BLE001 - the job says why; the broker keeps the readings
                stats.failed += 1
                line = (f"{source.dataset}: a part of {len(messages)} messages failed ({jobs.describe(exc, hub).message}); "
                        f"reconnecting in {RETRY_S:g} s, the broker sends them again")
                log.warning("%s", line)
                if on_part is not None:
                    on_part(line, stats)
                subscription.close()  # unacknowledged: redelivered on the next connection
                if stop.wait(RETRY_S):
                    break
                subscription = Subscription(hub.settings, source)
                continue
            subscription.ack(messages)  # only now: what was not stored is sent again after a reconnect
            if on_part is not None:
                on_part(line, stats)
    finally:
        subscription.close()
    return stats


def _flush(hub: Hub, source: SourceSpec, source_id: int | None, dataset_id: int, part: Part, stats: FollowStats) -> str:
    """Append one part as one job; the line saying what happened. Raises if the job could not be done."""
    job_id = jobs.start(hub, source_id, dataset_id)
    stats.jobs.append(job_id)
    try:
        result: IngestResult | None = None
        if part.readings:
            result = ingest_delivery(hub, source.dataset, _delivery(source, part), job_id=job_id)
            if result.status == "quarantined":  # the full validation found what the message check did not
                result = _without_reported(hub, source, part, result, job_id)
        note = ""
        if part.bad:
            key = keep_bad_messages(hub, source.dataset, part.bad)
            note = f"{len(part.bad)} bad messages quarantined at {key}"
            if result is None:
                result = IngestResult("quarantined", source.dataset, None, 0, _report(part.bad, key), report_key=None)
        if result is None:
            jobs.finish(hub, job_id, None, note=f"{len(part.repeats)} repeated readings, nothing new")
        else:
            result.note = "; ".join(n for n in (result.note, note) if n)
            jobs.finish(hub, job_id, result, bytes_received=sum(len(m.payload) for m in part.messages))
    except Exception as exc:
        jobs.fail(hub, job_id, exc)
        raise
    stats.parts += 1
    stats.readings += len(part.readings)
    stats.redelivered += sum(m.dup for m in part.messages)
    if result is not None and result.status == "published":
        stats.appended += int((result.changes or {}).get("added", 0))
    stats.repeats += len(part.repeats)
    stats.quarantined += len(part.bad)
    stats.last = result
    status = f"{result.status}, version {result.version}" if result else "unchanged"
    return (f"{source.dataset}: {len(part.readings)} readings ({status}), {len(part.repeats)} repeats, "
            f"{len(part.bad)} bad messages")


def _without_reported(hub: Hub, source: SourceSpec, part: Part, result: IngestResult, job_id: int) -> IngestResult:
    """Move the rows the validation report names to the bad messages and append the rest (once)."""
    reported = {e.get("rowNumber") for e in _errors(result.report) if isinstance(e.get("rowNumber"), int)}
    keep, first_row = [], _first_row_number(result.report)
    for index, reading in enumerate(part.readings):
        if index + first_row in reported:
            part.bad.append((reading.message, "refused by the Table Schema's validation"))
        else:
            keep.append(reading)
    if not reported or len(keep) == len(part.readings):
        part.bad.extend((r.message, "refused by the Table Schema's validation") for r in part.readings)
        part.readings = []
        return result
    part.readings = keep
    if not keep:
        return result
    return ingest_delivery(hub, source.dataset, _delivery(source, part), job_id=job_id)


def _errors(report: dict[str, Any]) -> list[dict[str, Any]]:
    found = list(report.get("errors", []))
    for task in report.get("tasks", []):
        found += task.get("errors", [])
    return found


def _first_row_number(report: dict[str, Any]) -> int:
    """The row number the report gives the first record (Frictionless counts the header line as row 1)."""
    return 2
