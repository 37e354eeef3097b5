"""What the operator puts on a QiskitJob object itself: qgov's finalizer and its session's label."""

from __future__ import annotations

from typing import Any

from ..api import FINALIZER, GROUP, SESSION_LABEL, VERSION, label_value
from ..kubeerrors import Conflict, Invalid, NotFound, api_errors
from .kube import JOBS as PLURAL
from .kube import Kube


def mark(kube: Kube, job: dict[str, Any], *, finalizer: bool, session: str | None) -> None:
    """What the operator puts on the job object itself, in one JSON patch: qgov's finalizer when
    money is held for it (deleting it must release or settle first), and the label of the
    QiskitSession it runs in (the session's timer and runner select its jobs by it, server-side,
    instead of reading every job of the namespace)."""
    meta = job["metadata"]
    ops: list[dict[str, Any]] = []
    current = meta.get("finalizers") or []
    if finalizer and FINALIZER not in current:
        ops.append({"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER} if current
                   else {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]})
    labels = meta.get("labels") or {}
    if session and labels.get(SESSION_LABEL) != label_value(session):
        ops.append({"op": "add", "path": "/metadata/labels/" + SESSION_LABEL.replace("~", "~0").replace("/", "~1"),
                    "value": label_value(session)} if labels
                   else {"op": "add", "path": "/metadata/labels", "value": {SESSION_LABEL: label_value(session)}})
    if ops:
        kube.json_patch(PLURAL, meta["namespace"], meta["name"], ops)

def remove_finalizer(kube: Kube, job: dict[str, Any]) -> None:
    """Remove our finalizer only: a `test` guards against dropping a finalizer added meanwhile."""
    meta = job["metadata"]
    for _ in range(5):
        current = meta.get("finalizers") or []
        if FINALIZER not in current:
            return
        try:
            with api_errors():
                kube.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, meta["namespace"], PLURAL, meta["name"],
                    [{"op": "test", "path": "/metadata/finalizers", "value": current},
                     {"op": "replace", "path": "/metadata/finalizers",
                      "value": [f for f in current if f != FINALIZER]}],
                    _content_type="application/json-patch+json")
            return
        except NotFound:
            return
        except (Conflict, Invalid):  # changed meanwhile (the JSON patch's test fails with 422): read it again
            pass
        fresh = kube.get_job(meta["namespace"], meta["name"])
        if fresh is None:
            return
        meta = fresh["metadata"]
