"""Timestamps as the API server stores them: RFC 3339 parsed on write, written back in UTC.

A real server decodes core objects into Go structs, so a metav1.Time field sent as
`2026-11-30T11:00:00.123456+00:00` comes back as `2026-11-30T11:00:00Z` and a MicroTime
(an Event's eventTime) as `2026-11-30T11:00:00.123456Z`. Clients depend on that shape:
kubectl's ages and `kubectl describe` read these fields. Custom resources are kept as sent
(the server never decodes their spec or status); only their metadata, which the server
writes itself, is normalised.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$")

TIME, MICRO = "Time", "MicroTime"

# (path, kind) per resource type key; "*" steps into every item of a list
_CONDITIONS = [(("status", "conditions", "*", "lastTransitionTime"), TIME)]
_CONTAINER_STATE = [
    (("state", which, when), TIME) for which, when in
    (("running", "startedAt"), ("terminated", "startedAt"), ("terminated", "finishedAt"))]
_CONTAINERS = [
    (("status", group, "*", state, *rest), kind)
    for group in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")
    for state in ("state", "lastState") for (_, *rest), kind in _CONTAINER_STATE]
FIELDS: dict[tuple[str, str], list[tuple[tuple[str, ...], str]]] = {
    ("", "events"): [(("firstTimestamp",), TIME), (("lastTimestamp",), TIME), (("eventTime",), MICRO),
                     (("series", "lastObservedTime"), MICRO)],
    ("", "pods"): [(("status", "startTime"), TIME), (("status", "conditions", "*", "lastProbeTime"), TIME),
                   *_CONDITIONS, *_CONTAINERS],
    ("", "namespaces"): _CONDITIONS,
    ("apiextensions.k8s.io", "customresourcedefinitions"): _CONDITIONS,
    ("coordination.k8s.io", "leases"): [(("spec", "acquireTime"), MICRO), (("spec", "renewTime"), MICRO)],
}
METADATA = [(("metadata", "creationTimestamp"), TIME), (("metadata", "deletionTimestamp"), TIME),
            (("metadata", "managedFields", "*", "time"), TIME)]


class BadTime(ValueError):
    """A timestamp that is not RFC 3339 (the server answers 400, as for any undecodable body)."""

    def __init__(self, field: str, value: Any) -> None:
        super().__init__(f'{field}: parsing time "{value}" as "2006-01-02T15:04:05Z07:00": not RFC 3339')
        self.field = field


def parse(text: str) -> datetime | None:
    """An RFC 3339 timestamp (any fraction, `Z` or an offset) as an aware datetime; None if it is not one."""
    m = _RFC3339.match(text) if isinstance(text, str) else None
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, _, sign, off_h, off_m = m.groups()
    offset = timedelta(0) if sign is None else (1 if sign == "+" else -1) * timedelta(hours=int(off_h),
                                                                                        minutes=int(off_m))
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                          int((frac or "0")[:6].ljust(6, "0")), tzinfo=timezone(offset))
    except ValueError:
        return None
    return moment.astimezone(timezone.utc)


def format_time(moment: datetime) -> str:
    """metav1.Time on the wire: seconds, UTC, `Z`."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro(moment: datetime) -> str:
    """metav1.MicroTime on the wire: microseconds, UTC, `Z`."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _walk(node: Any, path: tuple[str, ...], kind: str, where: str) -> None:
    if not isinstance(node, dict) or not path:
        return
    head, rest = path[0], path[1:]
    if rest and rest[0] == "*":
        items = node.get(head)
        for i, item in enumerate(items if isinstance(items, list) else []):
            _walk(item, rest[1:], kind, f"{where}{head}[{i}].")
        return
    if rest:
        _walk(node.get(head), rest, kind, f"{where}{head}.")
        return
    value = node.get(head)
    if value is None or head not in node:
        return
    moment = parse(value)
    if moment is None:
        raise BadTime(f"{where}{head}", value)
    node[head] = format_micro(moment) if kind == MICRO else format_time(moment)


def normalise(key: tuple[str, str], obj: dict[str, Any]) -> dict[str, Any]:
    """Rewrite obj's timestamp fields in place the way the server's decode/encode does; raises BadTime."""
    for path, kind in METADATA + FIELDS.get(key, []):
        _walk(obj, path, kind, "")
    return obj


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration, as kubectl shows ages: 45s, 2m30s, 3h10m, 5d2h, 2y30d."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24 % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def age(timestamp: Any, now: datetime | None = None) -> str:
    """A table cell for a timestamp: `<unknown>` if unset, `<invalid>` if unparseable (as the server)."""
    if not timestamp:
        return "<unknown>"
    moment = parse(timestamp)
    if moment is None:
        return "<invalid>"
    return human_duration(((now or datetime.now(timezone.utc)) - moment).total_seconds())
