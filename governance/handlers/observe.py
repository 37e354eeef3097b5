"""What the metrics and the cluster snapshot learn from watches kopf keeps anyway: QiskitSessions
by mode and phase, and each session as its watch last showed it (governance/snapshot.py).

A raw-event handler on the event loop, O(1) per event; it neither calls the API nor the ledger
(governance/metrics.py counts, the scrape reads the counts)."""

from __future__ import annotations

from typing import Any

import kopf

from .. import metrics
from ..api import GROUP, VERSION


@kopf.on.event(GROUP, VERSION, "qiskitsessions")
async def on_session_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    if (operator := getattr(memo, "operator", None)) is not None:  # after start-up (startup.py)
        meta = body["metadata"]
        operator.snapshot.session_event(type, meta["namespace"], meta["name"], body)
    metrics.SESSIONS.observe(type, {"metadata": {"uid": body["metadata"]["uid"]}, "spec": dict(body.get("spec") or {}),
                                    "status": dict(body.get("status") or {})})
