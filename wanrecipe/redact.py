"""Keep secrets out of logs, records, lock files and error messages.

API keys travel in the Authorization header; result URLs are signed in their query string; data
URIs are just large. Everything we write down passes through these.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+")
_SK = re.compile(r"\bsk-[A-Za-z0-9_-]{6,}")
# A query already redacted (``?<redacted>``) is taken with its URL, so that redacting twice
# gives what redacting once did.
_URL = re.compile(r"\b(?:https?|oss)://[^\s\"'<>]+(?:<redacted>)?")


def redact_url(url: str) -> str:
    """Drop the query string and fragment (signatures live there); shorten data URIs."""
    if url.startswith("data:"):
        head, _, payload = url.partition(",")
        return f"{head},<{len(payload)} chars>"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    query = "<redacted>" if parts.query else ""
    # Host and port as written, never the userinfo (user:password@) before them; no
    # parts.port, which raises for a port that is not a number.
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_text(text: str) -> str:
    """Scrub bearer tokens, sk- keys and signed URL query strings from free text."""
    text = _BEARER.sub(r"\1<redacted>", text)
    text = _SK.sub("sk-<redacted>", text)
    return _URL.sub(_redact_match, text)


def _redact_match(match: re.Match[str]) -> str:
    url = match.group(0)
    # A bare trailing "?" (a shortened ``?<redacted>``) stays, as it was written.
    return redact_url(url) + ("?" if url.endswith("?") else "")


def redact_value(value: object) -> object:
    """``redact_text`` applied to every string inside ``value`` (dicts, lists, tuples)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


def has_userinfo(url: str) -> bool:
    """Whether ``url`` carries ``user[:password]@`` before its host."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.username is not None or parts.password is not None
