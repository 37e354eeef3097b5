"""Work that must happen, tried again until it does.

kopf retries the handlers it runs to completion (create, update, timers), but not event
handlers: an exception in one is logged and forgotten. qgov drives jobs and pods from raw
events, and what those events carry is money: a settlement when a pod ends, a release when a
job is deleted, an admission. So each is run here: on failure it is tried again with a
bounded back-off until it succeeds. The work must be idempotent (ledger keys, deterministic
names) and read what it needs afresh when it runs again.

A database outage is the expected failure, and the one to recover from in seconds: its retries
are at most LEDGER_RETRY_CAP_SECONDS apart. Anything else (a bug, an API server refusing) backs
off to OTHER_RETRY_CAP_SECONDS, as kopf's own handler retries do.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from typing import Any

from ..api.errors import describe_error
from ..budget.errors import DatabaseUnavailable

log = logging.getLogger("qgov.retrying")

FIRST_RETRY_SECONDS = 0.5
LEDGER_RETRY_CAP_SECONDS = 5.0
OTHER_RETRY_CAP_SECONDS = 60.0
# kopf's own retries of the handlers it runs (budgets, sessions) and of the budget status writer:
# kopf's default is 60 s, which kept a budget's status frozen that long after an outage
HANDLER_RETRY_SECONDS = 2.0


class NotYet(Exception):
    """The work waits for another handler's (a budget's, say, that its watch has not delivered
    yet): retried as soon as a ledger outage is."""


def retry_delay(attempt: int, exc: BaseException) -> float:
    """Seconds before try `attempt + 1`: doubling from FIRST_RETRY_SECONDS, capped by the kind of failure."""
    cap = LEDGER_RETRY_CAP_SECONDS if isinstance(exc, (DatabaseUnavailable, NotYet)) else OTHER_RETRY_CAP_SECONDS
    factor: int = 2 ** (attempt - 1)
    return min(cap, FIRST_RETRY_SECONDS * factor)


class Watcher:
    """What a caller wants to hear about its work's retries (both optional, both best effort)."""

    def failed(self, exc: BaseException, delay: float) -> None:  # the work failed; tried again in `delay` s
        pass

    def recovered(self) -> None:  # the work succeeded after failing
        pass


def run_retrying(what: str, work: Callable[[], Any], again: Callable[[], Any] | None = None,
                 watcher: Watcher | None = None, attempt: int = 1) -> None:
    """Run `work`; when it raises, run `again` (default: `work`) later, and so on until one succeeds.
    `again` is where a retry reads fresh state (the event that started the work may be stale)."""
    try:
        work()
    except Exception as exc:  # noqa: BLE001 - every failure is retried; the log says which
        delay = retry_delay(attempt, exc)
        log.warning(f"{what}: {type_name(exc)}; trying again in {delay:g}s (attempt {attempt + 1})")
        if watcher is not None:
            _quietly(watcher.failed, exc, delay)
        later(delay, run_retrying, what, again or work, again, watcher, attempt + 1)
        return
    if attempt > 1 and watcher is not None:
        _quietly(watcher.recovered)


def _quietly(fn: Callable[..., Any], *args: Any) -> None:
    """A watcher's report must not stop the retry (it may need the same API or ledger that failed)."""
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001
        log.debug(f"retry watcher: {type_name(exc)}")


def later(delay: float, fn: Callable[..., Any], *args: Any) -> None:
    """Run fn(*args) after `delay` seconds on a timer thread, in a copy of this context: kopf's
    context variables (which kopf.event needs) do not reach a bare thread."""
    timer = threading.Timer(delay, contextvars.copy_context().run, args=(fn, *args))
    timer.daemon = True
    timer.start()


def type_name(exc: BaseException) -> str:
    return describe_error(exc)
