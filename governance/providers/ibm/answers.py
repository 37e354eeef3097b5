"""What of a remote error's body may reach a status, an Event or a log: a short, sanitised reason.

An error body is whatever the server sent: it may echo the request (a key, a token), carry
markup, control characters or a page of HTML. A status gets the HTTP status and this: one line of
printable text, runs that look like keys or tokens (24+ letters, digits and base64 punctuation, other than
UUIDs and IBM's ids)
and URLs' user-info and queries cut out, at most `limit` characters. Pure: the operator and the
executor (executor/ibm.py) both use it.
"""

from __future__ import annotations

import re

_TOKENISH = re.compile(r"[A-Za-z0-9_\-+/=.:]{24,}")
_URL = re.compile(r"\bhttps?://[^\s\"'<>]+")
_MARKUP = re.compile(r"<[^>]{0,200}>")
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[a-z0-9]{20}", re.IGNORECASE)


def _token(match: re.Match[str]) -> str:
    """Keep URLs (already cut to scheme, host and path) and identifiers (UUIDs, IBM's 20-character
    job and session ids); hide any other long run."""
    text = match.group(0)
    return text if "://" in text or _ID.fullmatch(text) else "[…]"


def _url(match: re.Match[str]) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(match.group(0))
        host = parts.hostname or ""
        return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path[:40]}"
    except ValueError:
        return "[url]"


def brief(text: object, limit: int = 160) -> str:
    """`text` fit for a status: printable, one line, no token-like runs, at most `limit` chars."""
    line = "".join(ch if ch.isprintable() else " " for ch in str(text or ""))
    line = _MARKUP.sub(" ", line)
    line = _URL.sub(_url, line)
    line = " ".join(_TOKENISH.sub(_token, line).split())
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"
