"""Leader election over a coordination.k8s.io/v1 Lease: the adapter (get, create, replace naming
the resourceVersion read) and the elector that acts on `decide` in threads of its own.

Why threads, not the operator's event loop: the holder must renew every couple of seconds even
while the loop is busy (a burst of admissions keeps it busy for seconds at a time), and it must
stop acting when it cannot renew even if the loop is stuck. So the renewals run in one thread
(blocking HTTP with short timeouts), and a second thread is the deadline guard: it wakes at the
renew deadline and, if no renewal has moved it, calls `on_lost` (in the operator: exit the
process at once, as client-go's users do with klog.Fatal, so the Deployment restarts it as a
standby). Nothing here blocks the event loop; it is told through callbacks.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import kubernetes

from ..kubeerrors import Conflict, NotFound, api_errors
from .decide import Action, LeaseStep, LeaseRecord, Memory, Timing, decide, observe, renew_deadline

log = logging.getLogger("qgov.leader")
CONNECT_TIMEOUT = 2.0
MIN_TIMEOUT = 0.2  # below this, a request could not be answered anyway


def request_timeout(deadline: float | None, now: float, standby_s: float) -> tuple[float, float]:
    """(connect, read) timeouts for one lease request. The holder's request may take whatever is
    left until its renew deadline, as client-go's renewals run under a context with that deadline:
    an API server that answers in 5 s under load is slow, not lost, and a fixed short timeout would
    turn it into a lost lease. A standby has no deadline; its reads wait `standby_s`."""
    budget = standby_s if deadline is None else max(MIN_TIMEOUT, deadline - now)
    return min(CONNECT_TIMEOUT, budget), budget


class LeaseConflict(Exception):
    """409: someone else wrote the Lease since it was read (or created it first)."""


def micro_time(when: datetime) -> str:
    """A MicroTime as the API server parses it (RFC 3339, exactly six fractional digits)."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(body: dict[str, Any]) -> LeaseRecord:
    spec = body.get("spec") or {}
    return LeaseRecord(holder=spec.get("holderIdentity") or "", duration_s=float(spec.get("leaseDurationSeconds") or 0),
                       version=str(body["metadata"]["resourceVersion"]), transitions=int(spec.get("leaseTransitions") or 0))


class LeaseApi:
    """One Lease through the API server. A write names the resourceVersion last read or written,
    so of two replicas that both saw the lease expire, only one replaces it (the other gets 409).
    Each call takes its (connect, read) timeouts: the elector's come from `request_timeout`."""

    def __init__(self, api: kubernetes.client.ApiClient, namespace: str, name: str) -> None:
        self.leases = kubernetes.client.CoordinationV1Api(api)
        self.namespace, self.name = namespace, name
        self._body: dict[str, Any] | None = None  # as last read or written

    def get(self, timeout: tuple[float, float]) -> LeaseRecord | None:
        try:
            with api_errors():
                answer = self.leases.read_namespaced_lease(self.name, self.namespace, _preload_content=False,
                                                           _request_timeout=timeout)
        except NotFound:
            self._body = None
            return None
        self._body = json.loads(answer.data)
        return _record(self._body)

    def create(self, holder: str, duration_s: float, timeout: tuple[float, float]) -> LeaseRecord:
        now = micro_time(datetime.now(timezone.utc))
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace,
                             "labels": {"app.kubernetes.io/name": "qgov-operator"}},
                "spec": {"holderIdentity": holder, "leaseDurationSeconds": int(duration_s), "acquireTime": now,
                         "renewTime": now, "leaseTransitions": 0}}
        return self._answer(lambda: self.leases.create_namespaced_lease(
            self.namespace, body, _preload_content=False, _request_timeout=timeout))

    def write(self, holder: str, duration_s: float, timeout: tuple[float, float]) -> LeaseRecord:
        """Replace the lease last seen with `holder` renewing it now (a new holder: acquired now, one
        more transition). 409 if anyone wrote it since."""
        if self._body is None:
            raise LeaseConflict("the lease was not read")
        body = json.loads(json.dumps(self._body))
        spec = body.setdefault("spec", {})
        now = micro_time(datetime.now(timezone.utc))
        if spec.get("holderIdentity") != holder:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if spec.get("holderIdentity") else 0)
        spec.update(holderIdentity=holder, leaseDurationSeconds=int(duration_s), renewTime=now)
        return self._answer(lambda: self.leases.replace_namespaced_lease(
            self.name, self.namespace, body, _preload_content=False, _request_timeout=timeout))

    def release(self, timeout: tuple[float, float] = (CONNECT_TIMEOUT, 3.0)) -> LeaseRecord:
        """Give the lease up (graceful shutdown): holder empty, as client-go's ReleaseOnCancel
        writes it, so a standby takes it at its next look instead of after the lease duration."""
        if self._body is None:
            raise LeaseConflict("the lease was not read")
        body = json.loads(json.dumps(self._body))
        now = micro_time(datetime.now(timezone.utc))
        body.setdefault("spec", {}).update(holderIdentity="", leaseDurationSeconds=1, renewTime=now, acquireTime=now)
        return self._answer(lambda: self.leases.replace_namespaced_lease(
            self.name, self.namespace, body, _preload_content=False, _request_timeout=timeout))

    def _answer(self, call: Callable[[], Any]) -> LeaseRecord:
        try:
            with api_errors():
                answer = call()
        except Conflict:
            self._body = None  # read it again before the next write
            raise LeaseConflict(f"the lease {self.namespace}/{self.name} changed") from None
        self._body = json.loads(answer.data)
        return _record(self._body)


class Elector:
    """Campaigns for the lease in a thread; `on_acquired()` once it holds it; `on_lost(reason)`
    (from a thread) if it was leading and no longer is, or cannot prove it still is by its renew
    deadline. `stop(release=True)` on a graceful shutdown gives the lease up."""

    def __init__(self, leases: LeaseApi, identity: str, timing: Timing = Timing(), *,
                 on_acquired: Callable[[], None] = lambda: None, on_lost: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.leases, self.identity, self.timing = leases, identity, timing
        self.on_acquired, self.on_lost, self.clock = on_acquired, on_lost, clock
        self.memory = Memory()  # replaced whole (immutable), so the guard thread reads a consistent one
        self.leading = threading.Event()
        self.lost: str | None = None
        self.started_at = 0.0
        self._stop = threading.Event()
        self._lost_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> Elector:
        self.started_at = self.clock()
        for target in (self._campaign, self._guard):
            thread = threading.Thread(target=target, name=f"qgov-leader-{target.__name__.strip('_')}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, release: bool = True, timeout: float = 5.0) -> bool:
        """Stop campaigning and renewing; with `release`, give up a lease this replica holds.
        True if it was released."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        if not (release and self.leading.is_set() and self.lost is None):
            return False
        try:
            self.leases.release()
        except LeaseConflict:
            return False  # someone else wrote it meanwhile: it is not ours to release
        except Exception as exc:  # noqa: BLE001 - the lease then expires after its duration
            log.warning(f"leader election: could not release the lease ({type(exc).__name__}: {exc}); "
                        f"a standby takes over once it expires")
            return False
        self.leading.clear()
        log.info(f"leader election: {self.identity} released the lease {self.leases.namespace}/{self.leases.name}")
        return True

    # ------------------------------------------------------------------ threads

    def _campaign(self) -> None:
        record: LeaseRecord | None = None
        fresh = False  # `record` is what the last write returned: no need to read it again
        complained = ""
        while not self._stop.is_set():
            if not fresh:
                try:
                    record = self.leases.get(self._timeout())
                except Exception as exc:  # noqa: BLE001 - the API server restarting, say: the guard watches the deadline
                    complained = self._complain(complained, f"cannot read the lease: {type(exc).__name__}: {exc}")
                    self._stop.wait(self.timing.retry_every_s)
                    continue
                self.memory = observe(self.memory, record, self.clock())
            fresh = False
            decision = decide(record, self.identity, self.memory, self.clock(), self.timing)
            if decision.action is Action.LOST:
                self._lose(decision.reason)
                return
            if decision.action is Action.WAIT:
                self._stop.wait(max(0.0, (decision.wake_at or 0.0) - self.clock()))
                fresh = self.leading.is_set()  # the holder renews what it wrote; a standby reads again
                continue
            sent = self.clock()
            try:
                if decision.action is Action.CREATE:
                    record = self.leases.create(self.identity, self.timing.duration_s, self._timeout())
                else:
                    record = self.leases.write(self.identity, self.timing.duration_s, self._timeout())
            except LeaseConflict:
                continue  # another replica wrote first: read what it wrote
            except Exception as exc:  # noqa: BLE001 - retried; the guard stops a holder that cannot renew in time
                complained = self._complain(complained, f"cannot write the lease: {type(exc).__name__}: {exc}")
                self._stop.wait(self.timing.retry_every_s / 4)
                # the holder tries the same write again at once (a read first would spend the time
                # left); if the failed one was applied after all, this one gets 409 and reads
                fresh = self.leading.is_set() and record is not None
                continue
            complained = ""
            if (took := self.clock() - sent) > self.timing.renew_every_s and self.leading.is_set():
                log.warning(f"leader election: renewing the lease took {took:.1f} s "
                            f"(renew deadline {self.timing.renew_deadline_s:g} s)")
            self.memory = observe(replace(self.memory, renewed_at=sent), record, self.clock())
            fresh = True
            if not self.leading.is_set():
                self._acquired(decision)

    def _timeout(self) -> tuple[float, float]:
        return request_timeout(renew_deadline(self.memory, self.timing), self.clock(), self.timing.duration_s / 2)

    def _acquired(self, decision: LeaseStep) -> None:
        self.leading.set()
        log.info(f"leader election: {self.identity} holds the lease {self.leases.namespace}/{self.leases.name} "
                 f"({decision.reason}; after {self.clock() - self.started_at:.1f} s)")
        self.on_acquired()

    def _guard(self) -> None:
        """The deadline guard: independent of the campaign thread (which may hang in a request)."""
        while not self._stop.is_set():
            deadline = renew_deadline(self.memory, self.timing)
            if deadline is None:
                self._stop.wait(self.timing.renew_every_s / 2)
                continue
            remaining = deadline - self.clock()
            if remaining <= 0:
                self._lose(f"could not renew the lease within its renew deadline of {self.timing.renew_deadline_s:g} s")
                return
            self._stop.wait(remaining)

    def _lose(self, reason: str) -> None:
        with self._lost_lock:
            if self.lost is not None or self._stop.is_set():
                return
            self.lost = reason
        self.leading.clear()
        self._stop.set()
        log.error(f"leader election: {self.identity} lost the lease {self.leases.namespace}/{self.leases.name}: {reason}")
        self.on_lost(reason)

    def _complain(self, said: str, message: str) -> str:
        if message != said:
            log.warning(f"leader election: {message}")
        return message
