"""11. MQTT: sustained readings/s validated and committed, and the delay from publish to queryable.

The machine's broker (127.0.0.1:1883; the phase is skipped without one or without paho-mqtt).
A publisher sends ``readings`` parking readings at QoS 1 as fast as the broker takes them, each
with a unique key; two subscribers take the same stream in turns:

- ours: ``harvesters.mqtt.follow`` into a catalogue (each message checked, parts of at most
  FLUSH_ROWS readings or FLUSH_S seconds validated and appended as versions, acknowledged after
  the commit). A reading is queryable when the dataset's current version holds it (what
  ``/records`` serves), seen by polling the current version's row count every 20 ms;
- the baseline: a minimal subscriber (QoS 1, acknowledged on receipt) that writes the same parts
  straight to Parquet files with pyarrow, no checks, no versions; a reading is queryable when its
  file is written.

Rate: readings / (time from the first publish until the last is queryable). Delay: per reading,
queryable minus published (p50, p99). Alone: ``python -m bench.phase_mqtt [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.context import Context
from bench.measure import Figure, per_turn, ratio_target

SECTION = "mqtt"
DATASET = "mqtt-readings"
FLUSH_ROWS = 5_000
FLUSH_S = 1.0
STALL_S = 60.0  # a side that makes no progress this long has lost readings
SCHEMA: dict[str, Any] = {
    "fields": [
        {"name": "sensor_id", "type": "string", "constraints": {"required": True}},
        {"name": "timestamp", "type": "datetime", "constraints": {"required": True}},
        {"name": "value", "type": "integer", "constraints": {"required": True, "minimum": 0}},
    ],
    "primaryKey": ["sensor_id", "timestamp"],
    "missingValues": [""],
}


def _payloads(count: int) -> list[bytes]:
    start = datetime(2026, 11, 26)
    return [json.dumps({"sensor_id": f"S{i % 1000:04d}", "timestamp": (start + timedelta(seconds=i // 1000)).isoformat(),
                        "value": i % 500}).encode() for i in range(count)]


def _publish(topic: str, payloads: list[bytes]) -> list[float]:
    """Publish every payload at QoS 1; the monotonic time each was handed to the client."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    sent, infos = [], []
    try:
        for payload in payloads:
            sent.append(time.monotonic())
            infos.append(client.publish(topic, payload, qos=1))
        for info in infos:
            info.wait_for_publish(60)
    finally:
        client.loop_stop()
        client.disconnect()
    return sent


def _ours(work: Path, topic: str, payloads: list[bytes]) -> tuple[float, list[float]]:
    """Rate and delays of harvesters.mqtt.follow into a catalogue."""
    from harvesters.base import SourceSpec
    from harvesters.mqtt import Subscription, follow

    client_id = f"bench-ours-{uuid.uuid4().hex[:8]}"
    options = {"topics": [topic], "client_id": client_id, "flush_rows": FLUSH_ROWS, "flush_seconds": FLUSH_S}
    hub = _catalogue(work, {"type": "mqtt", "url": "mqtt://127.0.0.1:1883", "format": "json", "mode": "append",
                            "options": options})
    spec = SourceSpec(name=DATASET, dataset=DATASET, url="mqtt://127.0.0.1:1883", format="json", mode="append",
                      options=options)
    Subscription(hub.settings, spec).close()
    stop = threading.Event()
    follower = threading.Thread(target=follow, args=(hub, DATASET, stop), daemon=True)
    follower.start()
    try:
        return _timed(topic, payloads, lambda: _current_rows(hub))
    finally:
        stop.set()
        follower.join(30)
        hub.close()


def _catalogue(work: Path, source: dict[str, Any]) -> Any:
    """A catalogue of the one dataset DATASET harvested from ``source``."""
    import yaml

    from catalogue.hub import open_hub
    from catalogue.meta.definitions import load_definitions, sync_definitions
    from catalogue.settings import Settings

    defs = work / "defs"
    (defs / "definitions").mkdir(parents=True)
    (defs / "schemas").mkdir()
    (defs / "publishers.yaml").write_text("publishers:\n  - name: bench\n    title: Bench\n", encoding="utf-8")
    schema = {**SCHEMA, "fields": [{**f, "title": f["name"], "description": f["name"]} for f in SCHEMA["fields"]]}
    (defs / "schemas" / f"{DATASET}.json").write_text(json.dumps(schema), encoding="utf-8")
    definition = {"name": DATASET, "title": "MQTT bench", "description": "Messwerte.", "publisher": "bench",
                  "license": "http://dcat-ap.de/def/licenses/dl-zero-de/2.0", "schema": f"schemas/{DATASET}.json",
                  "source": source}
    (defs / "definitions" / f"{DATASET}.yaml").write_text(yaml.safe_dump(definition), encoding="utf-8")
    hub = open_hub(Settings(data_dir=work / "var", definitions_dir=defs, harvest_allowed_hosts=["127.0.0.1"]))
    sync_definitions(hub, load_definitions(defs))
    return hub


def _current_rows(hub: Any) -> int:
    from catalogue.ingest.commit import current_version

    current = current_version(hub, DATASET)
    return current.row_count if current is not None else 0


def _baseline(work: Path, topic: str, payloads: list[bytes]) -> tuple[float, list[float]]:
    """Rate and delays of a minimal subscriber writing parts straight to Parquet."""
    import paho.mqtt.client as mqtt
    import pyarrow as pa
    import pyarrow.parquet as pq

    inbox: list[bytes] = []
    lock, written, stop = threading.Lock(), [0], threading.Event()
    subscribed = threading.Event()
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    # MQTT 5 with the receive maximum ours uses: a v3.1.1 client gets 20 messages in flight, and the broker
    # drops QoS 1 messages queued beyond its max_queued_messages (1,000) for a subscriber that lags.
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-base-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *a: subscribed.set()
    properties = Properties(PacketTypes.CONNECT)
    properties.ReceiveMaximum = 65_535

    def on_message(c: Any, u: Any, message: Any) -> None:
        with lock:
            inbox.append(bytes(message.payload))

    client.on_message = on_message
    client.connect("127.0.0.1", 1883, properties=properties)
    client.loop_start()
    subscribed.wait(10)

    def writer() -> None:
        number, since = 0, time.monotonic()
        while not stop.is_set():
            with lock:
                ready = len(inbox) >= FLUSH_ROWS or (inbox and time.monotonic() - since >= FLUSH_S)
                part = inbox[:FLUSH_ROWS] if ready else []
                del inbox[:len(part)]
            if not part:
                time.sleep(0.005)
                continue
            records = [json.loads(p) for p in part]
            table = pa.Table.from_pylist(records)
            pq.write_table(table, work / f"part-{number:05d}.parquet")
            number += 1
            written[0] += len(part)
            since = time.monotonic()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        return _timed(topic, payloads, lambda: written[0])
    finally:
        stop.set()
        thread.join(10)
        client.loop_stop()
        client.disconnect()


def _timed(topic: str, payloads: list[bytes], queryable: Callable[[], int]) -> tuple[float, list[float]]:
    """Publish in a thread while polling ``queryable`` (rows visible); (readings/s, delay per reading in s)."""
    sent: list[float] = []
    publisher = threading.Thread(target=lambda: sent.extend(_publish(topic, payloads)), daemon=True)
    first = time.monotonic()
    publisher.start()
    seen: list[tuple[float, int]] = []
    while not seen or time.monotonic() - seen[-1][0] < STALL_S:  # until all are in, or nothing moved for STALL_S
        rows = queryable()
        if not seen or rows > seen[-1][1]:
            seen.append((time.monotonic(), rows))
        if rows >= len(payloads):
            break
        time.sleep(0.02)
    publisher.join(60)
    if not seen or seen[-1][1] < len(payloads):
        raise RuntimeError(f"only {seen[-1][1] if seen else 0} of {len(payloads)} readings became queryable")
    delays, index = [], 0
    for when, rows in seen:  # readings become visible in the order they were published (one topic, one session)
        while index < min(rows, len(sent)):
            delays.append(when - sent[index])
            index += 1
    return len(payloads) / (seen[-1][0] - first), delays


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) >= 2 else values[0]


def run(ctx: Context) -> None:
    from importlib.util import find_spec

    from api.demo_sources import broker_reachable

    res = ctx.results
    if find_spec("paho") is None or not broker_reachable():
        res.skipped[SECTION] = "no MQTT broker on 127.0.0.1:1883 or paho-mqtt missing"
        return
    readings = 5_000 if ctx.quick else min(20_000, max(2_000, ctx.rows // 500))
    turns: dict[str, dict[str, list[float]]] = {side: {"rate": [], "p50": [], "p99": []} for side in ("ours", "baseline")}
    for turn in range(max(1, min(ctx.repeat, 2 if ctx.quick else 3))):
        for side, measure in (("baseline", _baseline), ("ours", _ours)):
            ctx.step(f"mqtt: {readings:,} readings, {side}, turn {turn + 1}")
            work = ctx.work / f"mqtt-{side}-{turn}"
            work.mkdir(parents=True)
            rate, delays = measure(work, f"bench/{uuid.uuid4().hex[:10]}/readings", _payloads(readings))
            turns[side]["rate"].append(rate)
            turns[side]["p50"].append(_p(delays, 50))
            turns[side]["p99"].append(_p(delays, 99))
    for side, label in (("ours", "follow (checked, validated, versioned)"), ("baseline", "minimal subscriber to Parquet")):
        res.add(Figure(f"mqtt.{side}.rate", f"MQTT {label}: readings/s committed", "readings/s", turns[side]["rate"],
                       higher_is_better=True))
        res.add(Figure(f"mqtt.{side}.p50", f"MQTT {label}: publish → queryable, p50", "s", turns[side]["p50"]))
        res.add(Figure(f"mqtt.{side}.p99", f"MQTT {label}: publish → queryable, p99", "s", turns[side]["p99"]))
    res.targets.append(ratio_target(SECTION, "MQTT readings/s: follow / minimal subscriber",
                                    per_turn(turns["ours"]["rate"], turns["baseline"]["rate"]), ">=", 0.5))
    res.note(SECTION, f"{readings:,} readings published at QoS 1 as fast as the broker takes them; parts of at most "
             f"{FLUSH_ROWS:,} readings or {FLUSH_S:g} s on both sides; queryable: in the current version (ours, "
             "polled every 20 ms) or in a written Parquet file (baseline). The issue's goal for the delay is a p99 "
             "of a few seconds (the figures above; no target row, as the bound is not a ratio).")


def main(argv: list[str] | None = None) -> None:
    """Run this phase alone and print its figures and targets."""
    parser = argparse.ArgumentParser(prog="python -m bench.phase_mqtt", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5,000 readings, 2 turns.")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rows", type=int, default=10_000_000, help="The bench's history size (readings: rows / 500, "
                        "2,000 to 20,000).")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="urbandata-bench-mqtt-") as work:
        ctx = Context(work=Path(work), rows=args.rows, repeat=args.repeat, quick=args.quick, console=console)
        run(ctx)
        for line in ctx.results.lines():
            console.print(line)


if __name__ == "__main__":
    main()
