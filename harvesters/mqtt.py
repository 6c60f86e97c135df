"""MQTT sources (being written)."""

from __future__ import annotations

from catalogue.settings import Settings


class MqttHarvester:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
