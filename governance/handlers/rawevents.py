"""QiskitJob watch events go straight to qgov's handler, past kopf's per-event machinery.

kopf processes every watch event of every object the same way: it recalls the object's
memory, wraps the body in views, builds three loggers, detects causes (a diff base, progress
storage), builds a handler state and the handler's keyword arguments, invokes the handler
with its context variables, and applies a patch. For a kind driven from raw events
(`@kopf.on.event`, nothing to diff, nothing to persist) all of it is overhead, and QiskitJobs
are the busiest kind: three events per admitted job (its arrival and the echoes of the
operator's two writes to it). In a burst of admissions that machinery was about 0.6 ms of
the event loop's CPU per event, more than the job's handler itself.

What is kept is what the handler relies on: kopf's watch (initial listing, reconnects,
bookmarks), its per-object queue (an object's events are handled one at a time, in order),
the readiness bookkeeping of the initial listing, and the context kopf.event needs (the
operator's Event queue). A handler's exception is logged and the event dropped, as kopf does
for event handlers (qgov's own work is retried inside, see retrying.py).

This reaches into kopf's internals (`kopf._core.reactor.processing`), which are not a public
API: when they are not what this module expects, nothing is installed and kopf handles the
events itself, as before, only slower.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("qgov.rawevents")

RawHandler = Callable[..., Awaitable[None]]  # handler(type, body, memo=...)
Slimmer = Callable[[dict[str, Any]], dict[str, Any]]

_handlers: dict[tuple[str, str], RawHandler] = {}  # (API group, plural) -> the kind's only handler
_listed: dict[tuple[str, str], Slimmer] = {}  # (API group, plural) -> what a listed object keeps while it waits


def route(group: str, plural: str, handler: RawHandler, listed: Slimmer | None = None) -> None:
    """Send the raw events of this kind to `handler(type, body, memo=memo)` instead of kopf's
    processing (`memo`: the operator's, where start-up put the handlers' collaborators). The
    kind must have no other kopf handler (they would not run): the handler stays registered with
    kopf as well (`@kopf.on.event`), so that kopf watches the kind, and runs it when the fast path
    is not installed.

    `listed(body)`: the part of an object from the initial listing that its handler will need.
    Every listed object waits (in its own kopf worker) until every watched kind is listed, so at
    start-up all of them are held at once: with 50,000 finished jobs in the cluster, their whole
    bodies were most of the operator's peak memory, and the heap that peak left behind stayed."""
    _handlers[(group, plural)] = handler
    if listed is not None:
        _listed[(group, plural)] = listed


def install() -> bool:
    """Put the fast path in front of kopf's event processing; call before kopf.run. False (and
    kopf's processing stays) when kopf's internals are not the expected ones."""
    try:
        from kopf._core.engines import posting
        from kopf._core.reactor import processing
    except ImportError:
        return False
    original = getattr(processing, "process_resource_event", None)
    if original is None or getattr(original, "_qgov_fast_path", False):
        return original is not None
    if "memobase" not in inspect.signature(original).parameters:  # the handlers' collaborators are in it
        return False
    queue_var = getattr(posting, "event_queue_var", None)
    loop_var = getattr(posting, "event_queue_loop_var", None)
    if queue_var is None or loop_var is None:
        return False

    async def process_resource_event(*, resource: Any, raw_event: Any, **kwargs: Any) -> str | None:
        kind = (str(getattr(resource, "group", "")), str(getattr(resource, "plural", "")))
        handler = _handlers.get(kind)
        if handler is None:
            answer: str | None = await original(resource=resource, raw_event=raw_event, **kwargs)
            return answer
        if raw_event.get("type") is None and (listed := _listed.get(kind)) is not None:
            # in place: kopf's worker holds this very event until the handler returns
            raw_event["object"] = listed(raw_event["object"])
        # the initial listing holds the operator's readiness until each listed object was seen
        operator_indexed, resource_indexed = kwargs.get("operator_indexed"), kwargs.get("resource_indexed")
        if operator_indexed is not None and resource_indexed is not None:
            await operator_indexed.drop_toggle(resource_indexed)
        if operator_indexed is not None:  # and handlers run once every kind was listed
            await operator_indexed.wait_for(True)
        # kopf.event (from this task, or from the threads it hands work to) posts through these
        loop_var.set(asyncio.get_running_loop())
        queue_var.set(kwargs["event_queue"])
        try:
            await handler(raw_event.get("type"), raw_event["object"], memo=kwargs.get("memobase"))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - as kopf does for an event handler: logged, not retried
            meta = (raw_event.get("object") or {}).get("metadata") or {}
            log.exception(f"{resource.plural} {meta.get('namespace')}/{meta.get('name')}: the event handler failed")
        return None

    process_resource_event._qgov_fast_path = True  # type: ignore[attr-defined]
    processing.process_resource_event = process_resource_event  # type: ignore[assignment]
    return True
