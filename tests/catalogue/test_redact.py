"""Credentials of source URLs never shown: user info and secret query values masked, everything else kept."""

from __future__ import annotations

import pytest

from catalogue.redact import redact_text, redact_url


@pytest.mark.parametrize("url, shown", [
    ("https://daten.example/feed.csv", "https://daten.example/feed.csv"),
    ("https://daten.example/feed.csv?page=2&format=csv", "https://daten.example/feed.csv?page=2&format=csv"),
    ("https://amt:geheim@daten.example:8443/f.csv", "https://***@daten.example:8443/f.csv"),
    ("https://token@daten.example/f.csv", "https://***@daten.example/f.csv"),
    ("https://d.example/f?apikey=abc&page=1", "https://d.example/f?apikey=***&page=1"),
    ("https://d.example/f?access_token=a&X-Api-Key=b&Signature=c&password=d&client_secret=e",
     "https://d.example/f?access_token=***&X-Api-Key=***&Signature=***&password=***&client_secret=***"),
    ("http://[::1]:8080/f?token=x", "http://[::1]:8080/f?token=***"),
    ("http://u:p@[::1]:8080/f", "http://***@[::1]:8080/f"),
    ("feeds/car-parks.geojson", "feeds/car-parks.geojson"),
    ("http://[broken/f", "***"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_masks_every_url_in_a_message() -> None:
    message = ("Source 'x' answered HTTP 404 for https://a:b@h.example/f.csv?token=t1. "
               "Moved to http://h.example/g.csv?key=k2 perhaps.")
    assert redact_text(message) == ("Source 'x' answered HTTP 404 for https://***@h.example/f.csv?token=***. "
                                    "Moved to http://h.example/g.csv?key=*** perhaps.")
