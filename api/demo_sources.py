"""The demo's live sources beside its feed server: a pygeoapi (OGC API Features) server and MQTT readings.

``PygeoapiServer`` runs pygeoapi in a child process on a free loopback port
(its configuration is read at import, so each server gets a process of its
own), serving GeoJSON files through pygeoapi's GeoJSON provider. Tests use it
as the real OGC API Features server. ``ParkingPublisher`` publishes parking
occupancy readings to an MQTT broker, as the Stadtwerke's barrier counters
would. ``start_demo_sources`` starts what is installed and reachable and says
what it skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

STARTUP_S = 60.0  # pygeoapi imports a lot (rasterio, pyproj): the first start takes seconds
PYGEOAPI = "pygeoapi==0.21.0"
PYGEOAPI_SERVING = ("uvicorn", "starlette", "pyyaml")  # what PygeoapiServer's child process needs beside it
PYGEOAPI_POSTGRESQL = ("geoalchemy2", "psycopg2-binary")  # what pygeoapi's PostgreSQL provider imports


def pygeoapi_python() -> str | None:
    """This interpreter if pygeoapi (the optional extra ``ogc``) can be imported here, else None."""
    from importlib.util import find_spec

    return sys.executable if find_spec("pygeoapi") is not None else None


def pygeoapi_venv(extras: tuple[str, ...] = (), cache: Path | None = None) -> str:
    """An interpreter with pygeoapi (and ``extras``): this one if it has pygeoapi and nothing extra is asked,
    else a venv of its own, built once and kept; RuntimeError when it cannot be built (no package index).

    pygeoapi is not installed beside the project: its wheel brings a top-level ``tests`` package that
    hides ours. The venv lives in ``cache`` (default: ``URBANDATA_TEST_CACHE`` or ~/.cache/urbandata);
    ``extras`` (e.g. PYGEOAPI_POSTGRESQL) are added to it when asked for.
    """
    found = pygeoapi_python()
    if found and not extras:
        return found
    cache = cache or Path(os.environ.get("URBANDATA_TEST_CACHE", Path.home() / ".cache" / "urbandata"))
    venv = cache / PYGEOAPI.replace("==", "-")
    python = venv / "bin" / "python"
    if not python.exists():
        cache.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix="pygeoapi-venv-", dir=cache))
        try:
            subprocess.run([sys.executable, "-m", "venv", str(building)], check=True, capture_output=True, timeout=120)
            _pip_install(building / "bin" / "python", (PYGEOAPI, *PYGEOAPI_SERVING))
        except RuntimeError:
            shutil.rmtree(building, ignore_errors=True)
            raise
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            shutil.rmtree(building, ignore_errors=True)
            raise RuntimeError(f"a venv for pygeoapi could not be made: {exc}") from exc
        try:
            building.rename(venv)  # whole or not at all; another session may have won the race
        except OSError:
            shutil.rmtree(building, ignore_errors=True)
    if extras:
        _pip_install(python, extras)
    return str(python)


def _pip_install(python: Path, packages: tuple[str, ...]) -> None:
    try:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True, capture_output=True,
                       timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"pip could not install {', '.join(packages)} for pygeoapi: {exc}") from exc


@dataclass(frozen=True)
class Collection:
    """One collection served by pygeoapi: a GeoJSON FeatureCollection file and the property naming features."""

    id: str
    path: Path
    id_field: str
    title: str = ""
    provider: dict[str, Any] | None = None  # a pygeoapi provider of its own (``path`` unused); default: GeoJSON


class PygeoapiServer:
    """A real pygeoapi server in a child process on a free loopback port; ``url`` is its landing page.

    ``python``: the interpreter that has pygeoapi (with uvicorn and PyYAML); this module runs there as a
    script, so that interpreter needs nothing of urbandata.
    """

    def __init__(self, collections: list[Collection], workdir: Path | None = None, python: str | None = None) -> None:
        self.collections = collections
        self.workdir = workdir
        self.python = python or sys.executable
        self.url = ""
        self._process: subprocess.Popen[str] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> PygeoapiServer:
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="urbandata-pygeoapi-")
            self.workdir = Path(self._tmp.name)
        spec = [{"id": c.id, "path": str(c.path.resolve()), "id_field": c.id_field, "title": c.title or c.id,
                 "provider": c.provider} for c in self.collections]
        (self.workdir / "collections.json").write_text(json.dumps(spec), encoding="utf-8")
        self._process = subprocess.Popen(
            [self.python, str(Path(__file__).resolve()), "pygeoapi", str(self.workdir)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        port = self._read_port()
        self.url = f"http://127.0.0.1:{port}/"
        return self

    def _read_port(self) -> int:
        assert self._process is not None and self._process.stdout is not None
        found: list[str] = []
        reader = threading.Thread(target=lambda: found.append(self._process.stdout.readline()),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        reader.join(STARTUP_S)
        line = found[0].strip() if found else ""
        if not line.isdigit():
            self.__exit__()
            raise RuntimeError(f"pygeoapi did not start within {STARTUP_S:g} s (it said {line!r}).")
        return int(line)

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def pygeoapi_config(url: str, collections: list[dict[str, Any]]) -> dict[str, Any]:
    """A minimal pygeoapi configuration serving each collection through its provider (default: GeoJSON)."""
    resources = {
        c["id"]: {
            "type": "collection", "title": c["title"], "description": c["title"], "keywords": ["urbandata"],
            "extents": {"spatial": {"bbox": [-180, -90, 180, 90],
                                    "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}},
            "providers": [c.get("provider") or {"type": "feature", "name": "GeoJSON", "data": c["path"],
                                                "id_field": c["id_field"]}],
        }
        for c in collections
    }
    return {
        "server": {
            "bind": {"host": "127.0.0.1", "port": 0}, "url": url.rstrip("/"), "mimetype": "application/json; charset=UTF-8",
            "encoding": "utf-8", "languages": ["en-US"], "limits": {"default_items": 10, "max_items": 10000},
            "map": {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png", "attribution": "OpenStreetMap"},
        },
        "logging": {"level": "ERROR"},
        "metadata": {
            "identification": {"title": "Musterstadt OGC API", "description": "Demo source of urbandata",
                               "keywords": ["demo"], "url": "https://www.musterstadt.example/",
                               "terms_of_service": "https://www.musterstadt.example/"},
            "license": {"name": "dl-de/by-2-0", "url": "https://www.govdata.de/dl-de/by-2-0"}, "provider": {"name": "Musterstadt"}, "contact": {"name": "Open Data"},
        },
        "resources": resources,
    }


def _run_pygeoapi(workdir: Path) -> None:  # pragma: no cover - runs in the child process
    """Child process: bind a free port, write the configuration for it, serve pygeoapi's Starlette app."""
    import uvicorn

    # IPPROTO_TCP named, as uvicorn binds when given a port: asyncio sets TCP_NODELAY only on connections of
    # such a socket, and without it every keep-alive answer but the first waited 40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    collections = json.loads((workdir / "collections.json").read_text(encoding="utf-8"))
    config = pygeoapi_config(f"http://127.0.0.1:{port}", collections)
    (workdir / "config.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    os.environ["PYGEOAPI_CONFIG"] = str(workdir / "config.yml")
    os.environ["PYGEOAPI_OPENAPI"] = str(workdir / "openapi.yml")
    from pygeoapi.openapi import get_oas

    (workdir / "openapi.yml").write_text(yaml.safe_dump(get_oas(config)), encoding="utf-8")
    from pygeoapi.starlette_app import APP

    server = uvicorn.Server(uvicorn.Config(APP, log_level="error", lifespan="off"))
    print(port, flush=True)
    server.run(sockets=[sock])


# --- MQTT parking readings ---------------------------------------------------------------------------

LOTS = {  # lot id: capacity and location, as in datasets/feeds/car-parks.geojson
    "P01": (420, "9.99712, 53.55324"), "P02": (310, "10.00385, 53.55102"), "P03": (520, "9.98544, 53.56011"),
    "P04": (250, "10.01822, 53.54417"), "P05": (800, "9.95231, 53.58766"), "P06": (180, "10.04467, 53.52988"),
}


def parking_reading(lot: str, when: datetime, occupied: int) -> dict[str, Any]:
    """One reading of a car park's barrier counter, shaped as schemas/parking-occupancy.json."""
    capacity, location = LOTS[lot]
    occupied = max(0, min(capacity, occupied))
    return {"lot_id": lot, "timestamp": when.strftime("%Y-%m-%dT%H:%M:%S"), "occupied": occupied,
            "free": capacity - occupied, "capacity": capacity, "location": location}


@dataclass
class ParkingPublisher:
    """Publishes a reading per car park every ``interval_s`` seconds to ``<prefix>/<lot>`` (QoS 1)."""

    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "musterstadt/parking"
    interval_s: float = 5.0
    start: datetime = field(default_factory=lambda: datetime(2026, 11, 26, 0, 0))
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def run(self) -> None:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"urbandata-demo-publisher-{os.getpid()}")
        client.connect(self.host, self.port)
        client.loop_start()
        try:
            step = 0
            while not self._stop.is_set():
                when = self.start + timedelta(minutes=15 * step)
                for number, lot in enumerate(LOTS):
                    occupied = int(LOTS[lot][0] * (0.3 + 0.25 * ((step + number) % 4)))
                    client.publish(f"{self.prefix}/{lot}", json.dumps(parking_reading(lot, when, occupied)), qos=1)
                step += 1
                self._stop.wait(self.interval_s)
        finally:
            client.loop_stop()
            client.disconnect()

    def begin(self) -> None:
        self._thread = threading.Thread(target=self.run, name="demo-mqtt-publisher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


def broker_reachable(host: str = "127.0.0.1", port: int = 1883, timeout: float = 1.0) -> bool:
    """Whether something listens on the broker's port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def paho_installed() -> bool:
    from importlib.util import find_spec

    return find_spec("paho") is not None


# --- the demo's hook ------------------------------------------------------------------------------

OGC_DATASET = "car-parks"  # harvested from pygeoapi instead of its GeoJSON file while the demo runs
MQTT_DATASET = "parking-occupancy"  # gains the readings published to the broker while the demo runs
MQTT_TOPICS = "musterstadt/parking"


class DemoSources:
    """What ``start_demo_sources`` started; ``stop`` ends it all (also at exit)."""

    def __init__(self) -> None:
        self.pygeoapi: PygeoapiServer | None = None
        self.publisher: ParkingPublisher | None = None
        self.follower: threading.Thread | None = None
        self.stop_follow = threading.Event()
        self.restore: Callable[[], None] | None = None

    def stop(self) -> None:
        self.stop_follow.set()
        if self.publisher is not None:
            self.publisher.stop()
        if self.follower is not None:
            self.follower.join(15)
        if self.restore is not None:
            self.restore()
            self.restore = None
        if self.pygeoapi is not None:
            self.pygeoapi.__exit__()
            self.pygeoapi = None


def start_demo_sources(hub: Any, out: Any, *, live: bool = True, python: str | None = None) -> DemoSources:
    """Start the demo's OGC API Features and MQTT sources when installed and reachable; say what was skipped.

    pygeoapi serves datasets/feeds/car-parks.geojson and the car-parks source is pointed at it (its
    definition is restored when the demo ends, and by any `urbandata init`). Parking readings are
    published to the local broker every few seconds and followed into parking-occupancy (jobs without a
    source row, so no other harvest takes them from the demo's session). ``live``: the demo serves
    afterwards (without, there is no time for a live feed). ``python``: an interpreter with pygeoapi
    (default: this one, if it has it).
    """
    import atexit

    started = DemoSources()
    atexit.register(started.stop)
    python = python or pygeoapi_python()
    if python is None:
        out.print("pygeoapi is not installed (the extra 'ogc': pip install pygeoapi): skipping the OGC API Features source; "
                  f"{OGC_DATASET} is harvested from its GeoJSON file.")
    else:
        feed = hub.settings.definitions_dir / "feeds" / f"{OGC_DATASET}.geojson"
        started.pygeoapi = PygeoapiServer([Collection(OGC_DATASET, feed, "lot_id", "Parkhäuser")], python=python)
        started.pygeoapi.__enter__()
        started.restore = _point_source(hub, OGC_DATASET, type="ogc-features", url=started.pygeoapi.url,
                                        options={"collection": OGC_DATASET, "page_size": 100})
        out.print(f"OGC API Features (pygeoapi) at {started.pygeoapi.url}: {OGC_DATASET} is harvested from there.")
    if not live:
        out.print(f"Not serving: no live MQTT feed for {MQTT_DATASET}.")
    elif not paho_installed():
        out.print(f"paho-mqtt is not installed (the extra 'mqtt': pip install paho-mqtt): skipping the MQTT source of {MQTT_DATASET}.")
    elif not broker_reachable():
        out.print(f"No MQTT broker on 127.0.0.1:1883: skipping the MQTT source of {MQTT_DATASET}.")
    else:
        _start_mqtt(hub, started, out)
    return started


def _point_source(hub: Any, name: str, **fields: Any) -> Callable[[], None]:
    """Change a harvest source's row; the function that puts the old values back."""
    from sqlalchemy import select

    from catalogue.meta.models import HarvestSource

    with hub.sessions.begin() as session:
        source = session.scalar(select(HarvestSource).where(HarvestSource.name == name))
        if source is None:
            return lambda: None
        before = {key: getattr(source, key) for key in fields}
        for key, value in fields.items():
            setattr(source, key, value)

    def restore() -> None:
        with hub.sessions.begin() as session:
            found = session.scalar(select(HarvestSource).where(HarvestSource.name == name))
            for key, value in before.items():
                setattr(found, key, value)

    return restore


def _start_mqtt(hub: Any, started: DemoSources, out: Any) -> None:
    from harvesters.base import SourceSpec
    from harvesters.mqtt import Subscription, follow

    import hashlib

    client = f"urbandata-demo-{hashlib.sha256(str(hub.settings.data_dir.resolve()).encode()).hexdigest()[:12]}"
    spec = SourceSpec(name=f"{MQTT_DATASET}-mqtt", dataset=MQTT_DATASET, url="mqtt://127.0.0.1:1883", format="json",
                      mode="append", options={"topics": [f"{MQTT_TOPICS}/#"], "client_id": client,
                                              "flush_rows": 600, "flush_seconds": 2.0})
    Subscription(hub.settings, spec).close()  # the session exists before the first reading is published

    now = datetime.now(timezone.utc).replace(second=0, microsecond=0, tzinfo=None)
    publisher = started.publisher = ParkingPublisher(prefix=MQTT_TOPICS, start=now - timedelta(minutes=now.minute % 15))

    def run() -> None:
        # Live once the site is served, as the push feed (api/demo_live.py): the harvest and the first
        # pages show version 1 of every dataset.
        if not _served(hub.settings.public_url, started.stop_follow) or started.stop_follow.wait(publisher.interval_s):
            return
        publisher.begin()
        try:
            follow(hub, spec, started.stop_follow)
        except Exception as exc:  # noqa: BLE001 - the demo goes on without its live feed, saying why
            out.print(f"The MQTT follower of {MQTT_DATASET} stopped: {exc}")

    started.follower = threading.Thread(target=run, name="demo-mqtt-follower", daemon=True)
    started.follower.start()
    out.print(f"MQTT: once the site is served, parking readings are published to 127.0.0.1:1883 "
              f"({MQTT_TOPICS}/<lot>) every {publisher.interval_s:g} s and followed into {MQTT_DATASET}.")


def _served(url: str, stop: threading.Event) -> bool:
    """Wait until the hub at ``url`` answers /health (False: stopped before)."""
    import httpx

    while not stop.is_set():
        try:
            if httpx.get(f"{url.rstrip('/')}/health", timeout=2, trust_env=False).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        stop.wait(0.2)
    return False


if __name__ == "__main__":  # pragma: no cover - the pygeoapi child process
    sys.path.pop(0)  # run as a file: api/'s own modules must not hide any of pygeoapi's imports
    if len(sys.argv) == 3 and sys.argv[1] == "pygeoapi":
        _run_pygeoapi(Path(sys.argv[2]))
    else:
        sys.exit("usage: python api/demo_sources.py pygeoapi <workdir>")
