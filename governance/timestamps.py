"""Kubernetes timestamps: the one writer (`iso`: RFC 3339 in UTC, whole seconds, `Z`, as the API
server writes metadata times) and the one tolerant reader (`parse_iso`).

The reader takes every form a timestamp reaches the operator in: a watch event's string ends in
`Z`, a serialized client object's in `+00:00`, an executor or a tenant may add fractions of a
second or another offset, and the kubernetes client hands over `datetime` objects. Each call site
once parsed its own subset; a form one of them missed made a pod look never finished or a job
never expiring."""

from __future__ import annotations

from datetime import datetime, timezone

ISO = "%Y-%m-%dT%H:%M:%SZ"  # Kubernetes' timestamp format


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime(ISO)


def now_iso() -> str:
    return iso(datetime.now(timezone.utc))


def parse_iso(value: str | datetime) -> datetime:
    """An aware UTC datetime from an RFC 3339 / ISO 8601 timestamp (`Z`, `z` or an offset, with or
    without fractions) or a datetime; a time without an offset is taken as UTC (as SQLite returns
    them). Raises ValueError, naming the text, for anything else."""
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value).strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not an RFC 3339 timestamp: {value!r}") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def parse_optional(value: str | datetime | None) -> datetime | None:
    """`parse_iso` for a field that may be absent or unreadable (None for both): what a status
    written by hand or by an older version holds must not stop a handler."""
    if value is None or value == "":
        return None
    try:
        return parse_iso(value)
    except ValueError:
        return None
