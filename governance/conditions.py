"""status.conditions the Kubernetes way: type, status, reason, message, lastTransitionTime,
observedGeneration; the transition time only moves when the status does. Pure: the job and
session cores build statuses with it, the handlers only write them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .timestamps import now_iso


def set_condition(conditions: Sequence[Mapping[str, Any]] | None, type_: str, status: bool, reason: str, message: str,
                  generation: int | None) -> list[dict[str, Any]]:
    result = [dict(c) for c in conditions or [] if c.get("type") != type_]
    old = next((c for c in conditions or [] if c.get("type") == type_), None)
    value = "True" if status else "False"
    changed = old is None or old.get("status") != value
    result.append({
        "type": type_, "status": value, "reason": reason, "message": message,
        "lastTransitionTime": now_iso() if old is None or changed else old.get("lastTransitionTime", now_iso()),
        "observedGeneration": generation,
    })
    return sorted(result, key=lambda c: c["type"])
