"""The site's static search index: German folding, prefix and stem matching, facets, and what a build writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalogue.hub import Hub
from catalogue.sitegen.search_index import build_index, doc_terms, fold, search, stem


def entry(name: str, title: str, text: str = "", **facets: object) -> dict[str, object]:
    doc = {"name": name, "title": title, **facets}
    return {"doc": doc, "terms": doc_terms([title, text]), "title_terms": doc_terms([title])}


INDEX = build_index({
    "parken": entry("parken", "Parkplätze in der Innenstadt", "Freie Stellplätze je Parkhaus", publisher="stadtwerke",
                    themes=["TRAN"], formats=["csv", "geojson"], geometry=True, timeseries=False),
    "wasser": entry("wasser", "Grundwasserstände", "Messstellen des Wasserverbands", publisher="wasserverband",
                    themes=["ENVI"], formats=["csv"], geometry=True, timeseries=True),
    "strassen": entry("strassen", "Straßenverzeichnis", "Alle Straßen und Plätze", publisher="stadtverwaltung",
                      themes=["REGI", "TRAN"], formats=["csv"], geometry=False, timeseries=False),
    "oeffnung": entry("oeffnung", "Öffnungszeiten der Bürgerämter", "Parkplatz am Rathaus", publisher="stadtverwaltung",
                      themes=["GOVE"], formats=["csv"], geometry=False, timeseries=False),
})


def test_folding_drops_umlauts_sharp_s_and_accents() -> None:
    assert fold("Grundwasserstände ÖFFNUNG Straße Café") == "grundwasserstande offnung strasse cafe"
    assert [stem(w) for w in ("parkplatze", "messstellen", "amter", "bad")] == ["parkplatz", "messstell", "amter", "bad"]


def test_a_word_finds_longer_words_it_begins_and_its_plural_forms() -> None:
    assert search(INDEX, "Parkplatz") == ["parken", "oeffnung"]  # "Parkplätze" by prefix, "Parkplatz" exactly
    assert search(INDEX, "Parkplätze") == ["parken", "oeffnung"]  # the stem finds the singular too
    assert search(INDEX, "Grundwasser") == ["wasser"]
    assert search(INDEX, "grundwasserstande") == ["wasser"]
    assert search(INDEX, "Strasse") == ["strassen"] == search(INDEX, "straße")
    assert search(INDEX, "oeffnungszeiten") == []  # ae/oe/ue spellings are not folded (documented)
    assert search(INDEX, "öffnungszeiten") == ["oeffnung"] == search(INDEX, "OFFNUNG")


def test_every_word_must_match_and_title_matches_come_first() -> None:
    assert search(INDEX, "parkplatz rathaus") == ["oeffnung"]
    assert search(INDEX, "plätze") == ["strassen"]  # a word only ever matches from its start
    assert search(INDEX, "stellplatze") == ["parken"]
    assert search(INDEX, "") == ["wasser", "oeffnung", "parken", "strassen"]  # everything, by folded title


def test_facets_filter_the_hits() -> None:
    assert search(INDEX, "", {"themes": "TRAN"}) == ["parken", "strassen"]
    assert search(INDEX, "", {"publisher": "stadtverwaltung", "geometry": "false"}) == ["oeffnung", "strassen"]
    assert search(INDEX, "", {"timeseries": "true"}) == ["wasser"]
    assert search(INDEX, "", {"formats": "geojson"}) == ["parken"]
    assert search(INDEX, "parkplatz", {"themes": "GOVE"}) == ["oeffnung"]


def test_the_built_index_covers_titles_keywords_and_field_names_in_both_languages(demo_hub: Hub) -> None:
    index = json.loads((demo_hub.settings.site_dir / "search" / "index.json").read_text(encoding="utf-8"))
    assert search(index, "Grundwasser") == ["groundwater-levels"]
    assert search(index, "groundwater") == ["groundwater-levels"]
    assert set(search(index, "lot_id")) == {"car-parks", "parking-occupancy"}  # a field name
    assert set(search(index, "Stellplatz")) == {"car-parks", "parking-occupancy"}  # keyword "Stellplätze"
    assert set(search(index, "", {"timeseries": "true"})) == {
        "groundwater-levels", "parking-occupancy", "waste-bin-fill-levels"}
    parks = next(d for d in index["docs"] if d["name"] == "car-parks")
    assert parks["geometry"] is True and "geojson" in parks["formats"] and parks["publisher"] == "stadtwerke"
    assert parks["license"] and parks["frequency"]
    assert index["publishers"]["stadtwerke"][0].startswith("Stadtwerke")  # titles once, not in every doc


def test_search_page_has_a_no_javascript_form_to_the_api_and_hidden_facets(demo_hub: Hub) -> None:
    site: Path = demo_hub.settings.site_dir
    page = (site / "en" / "search.html").read_text(encoding="utf-8")
    assert '<form class="search-form" role="search" action="../api/v1/datasets" method="get"' in page
    assert '<div class="search" hidden data-index="../search/index.json"' in page
    assert '<script src="../static/js/search.js" defer></script>' in page


QUERIES = [("Parkplatz", {}), ("Parkplätze", {}), ("Grundwasser", {}), ("straße", {}), ("OFFNUNG", {}),
           ("parkplatz rathaus", {}), ("plätze", {}), ("", {"themes": "TRAN"}),
           ("", {"publisher": "stadtverwaltung", "geometry": "false"}), ("parkplatz", {"themes": "GOVE"}), ("xyz", {})]


def test_the_sites_javascript_search_answers_as_the_python_one(tmp_path: Path) -> None:
    """site/static/js/search-core.js, run in Node, gives the same hits in the same order as ``search``."""
    import shutil
    import subprocess

    from catalogue.settings import bundled_dir

    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    core = bundled_dir("site") / "static" / "js" / "search-core.js"
    (tmp_path / "index.json").write_text(json.dumps(INDEX), encoding="utf-8")
    (tmp_path / "queries.json").write_text(json.dumps(QUERIES), encoding="utf-8")
    script = (f"require({json.dumps(str(core))}); const fs = require('fs');"
              f"const index = JSON.parse(fs.readFileSync({json.dumps(str(tmp_path / 'index.json'))}, 'utf8'));"
              f"const queries = JSON.parse(fs.readFileSync({json.dumps(str(tmp_path / 'queries.json'))}, 'utf8'));"
              "console.log(JSON.stringify(queries.map(([q, f]) => "
              "globalThis.UrbandataSearch.search(index, q, f).map(i => index.docs[i].name))));")
    done = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == [search(INDEX, q, f) for q, f in QUERIES]
