"""Labels of the EU controlled vocabularies the hub uses (data themes, frequencies)."""

from __future__ import annotations

THEMES = {
    "AGRI": ("Landwirtschaft, Fischerei, Forstwirtschaft und Nahrungsmittel", "Agriculture, fisheries, forestry and food"),
    "ECON": ("Wirtschaft und Finanzen", "Economy and finance"),
    "EDUC": ("Bildung, Kultur und Sport", "Education, culture and sport"),
    "ENER": ("Energie", "Energy"),
    "ENVI": ("Umwelt", "Environment"),
    "GOVE": ("Regierung und öffentlicher Sektor", "Government and public sector"),
    "HEAL": ("Gesundheit", "Health"),
    "INTR": ("Internationale Themen", "International issues"),
    "JUST": ("Justiz, Rechtssystem und öffentliche Sicherheit", "Justice, legal system and public safety"),
    "OP_DATPRO": ("Vorläufige Daten", "Provisional data"),
    "REGI": ("Regionen und Städte", "Regions and cities"),
    "SOCI": ("Bevölkerung und Gesellschaft", "Population and society"),
    "TECH": ("Wissenschaft und Technologie", "Science and technology"),
    "TRAN": ("Verkehr", "Transport"),
}
THEME_IRI = "http://publications.europa.eu/resource/authority/data-theme/"

FREQUENCIES = {
    "CONT": ("kontinuierlich", "continuous"),
    "HOURLY": ("stündlich", "hourly"),
    "DAILY": ("täglich", "daily"),
    "WEEKLY": ("wöchentlich", "weekly"),
    "MONTHLY": ("monatlich", "monthly"),
    "QUARTERLY": ("vierteljährlich", "quarterly"),
    "ANNUAL": ("jährlich", "annual"),
    "IRREG": ("unregelmäßig", "irregular"),
    "NEVER": ("nie", "never"),
    "UNKNOWN": ("unbekannt", "unknown"),
}
FREQUENCY_IRI = "http://publications.europa.eu/resource/authority/frequency/"


def label(table: dict[str, tuple[str, str]], code: str, lang: str) -> str:
    """The German or English label of ``code``, or the code itself when unknown."""
    if code not in table:
        return code
    return table[code][0 if lang == "de" else 1]
