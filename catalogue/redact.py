"""Credentials kept out of everything shown: user info and secret query parameters of source URLs.

A source URL may carry a password (``https://user:pw@host/``) or a token in
its query (``?apikey=...``); job and delivery reports, provenance and error
messages show it with those parts replaced by ``***``.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

MASK = "***"
# Query parameter names that carry secrets, compared without case, '-' and '_' (access_token, X-Api-Key...).
SECRET_WORDS = ("token", "key", "password", "passwd", "pwd", "secret", "signature", "sig", "auth", "credential",
                "session")
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def secret_name(name: str) -> bool:
    """Whether a query parameter named ``name`` carries a secret."""
    plain = name.lower().replace("-", "").replace("_", "")
    return any(word in plain for word in SECRET_WORDS)


def redact_url(url: str) -> str:
    """``url`` with its user info and secret query values masked (anything unparsable returned masked whole)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        shown_host = f"[{host}]" if ":" in host else host
        netloc = f"{MASK}@{shown_host}" + (f":{port}" if port else "")
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(secret_name(k) for k, _ in pairs):
            query = "&".join(f"{quote(k, safe='')}={MASK if secret_name(k) else quote(v, safe='')}" for k, v in pairs)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (for messages that quote a URL)."""
    return _URL.sub(_redact_match, text)


def _redact_match(match: re.Match[str]) -> str:
    """A URL found in text, redacted; punctuation ending the sentence stays outside it."""
    url = match.group(0)
    kept = url.rstrip(".,;:!?)")
    return redact_url(kept) + url[len(kept):]
