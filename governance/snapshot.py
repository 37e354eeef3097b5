"""The cluster as the operator's watches see it: QiskitBackends (parsed, as admission reads them),
the budgets of each namespace the ledger has taken in (name -> unit), and QiskitSessions (their
backend, mode and phase). One object, built at start-up (handlers/startup.py), fed by the kopf
handlers of those kinds and read by the job controller, the session controller and, when it runs
in the same process as a leading operator, the admission webhook (webhook/server.py), so that
both decide from the same facts.

Plain data: no kopf, no Kubernetes client. What a watch has not delivered yet (a backend created a
moment ago) is read through a function the caller passes in (`backend`): that one fallback is here,
for the controller and the webhook alike. Written from kopf's event loop and its worker threads,
read from the webhook's threads: every change is made under a lock and readers get copies.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .assessment import Problem, backend_from_object, look_up_backend
from .api.specs import Backend

BackendGet = Callable[[str], "Mapping[str, Any] | None"]  # one read of a QiskitBackend; None: there is none


@dataclass(frozen=True)
class WatchedSession:
    """A QiskitSession as its watch last showed it: what a job placed in it is checked against."""

    backend: str
    mode: str  # dedicated | batch (spec.mode; batch when it names none)
    phase: str  # status.phase; "" before the controller wrote one


class ClusterSnapshot:
    """The watched cluster, one per operator process (see the module's docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._backends: dict[str, Backend | Problem] = {}
        self._budgets: dict[str, dict[str, str]] = {}  # namespace -> budget name -> unit (the ledger's)
        self._sessions: dict[tuple[str, str], WatchedSession] = {}

    # ------------------------------------------------------------------ backends

    def backend_event(self, type: str | None, name: str, body: Mapping[str, Any]) -> None:
        """A QiskitBackend watch event (type None: the initial listing)."""
        if type == "DELETED":
            self.backend_gone(name)
        else:
            self.backend_seen(name, body)

    def backend_seen(self, name: str, body: Mapping[str, Any]) -> None:
        parsed = backend_from_object(name, body)
        with self._lock:
            self._backends[name] = parsed

    def backend_gone(self, name: str) -> None:
        with self._lock:
            self._backends.pop(name, None)

    def replace_backends(self, bodies: Iterable[Mapping[str, Any]]) -> None:
        """Every QiskitBackend at once, from a list (where no watch feeds this snapshot)."""
        fresh = {o["metadata"]["name"]: backend_from_object(o["metadata"]["name"], o) for o in bodies}
        with self._lock:
            self._backends = fresh

    def backend(self, name: str, get: BackendGet) -> Backend | Problem | None:
        """The QiskitBackend `name` as admission uses it: as the watch showed it, else as `get`
        reads it (created a moment ago, its event not here yet). None: there is no such backend.
        What `get` read is not kept: the watch's event, when it comes, is the truth."""
        return look_up_backend(name, self._backends, get)

    def backend_names(self) -> frozenset[str]:
        return frozenset(self._backends)

    # ------------------------------------------------------------------ budgets

    def budget_seen(self, namespace: str, name: str, unit: str) -> None:
        """The ledger took the QiskitBudget in (created, its spec changed, or resumed)."""
        with self._lock:
            self._budgets.setdefault(namespace, {})[name] = unit

    def budget_gone(self, namespace: str, name: str) -> None:
        """The QiskitBudget was deleted: it pays for nothing more. The namespace stays known (with
        no budget), so its next job does not read the ledger again."""
        with self._lock:
            known = self._budgets.get(namespace)
            if known is not None:
                known.pop(name, None)

    def budgets(self, namespace: str) -> Mapping[str, str] | None:
        """The namespace's budgets (name -> unit); None when none was seen there since start-up."""
        with self._lock:
            known = self._budgets.get(namespace)
            return None if known is None else dict(known)

    def budgets_or_load(self, namespace: str, load: Callable[[], Mapping[str, str]]) -> Mapping[str, str]:
        """The namespace's budgets; when none was seen there yet, what `load` reads (the ledger's,
        once per namespace: a job may come before its namespace's budget events) is kept."""
        known = self.budgets(namespace)
        if known is not None:
            return known
        loaded = dict(load())
        with self._lock:
            return dict(self._budgets.setdefault(namespace, loaded))

    def budget_keys(self, namespace: str | None = None) -> list[tuple[str, str]]:
        """(namespace, name) of every budget known, or of one namespace's."""
        with self._lock:
            return [(ns, name) for ns, names in self._budgets.items() if namespace in (None, ns) for name in names]

    # ------------------------------------------------------------------ sessions

    def session_event(self, type: str | None, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        """A QiskitSession watch event (type None: the initial listing)."""
        if type == "DELETED":
            with self._lock:
                self._sessions.pop((namespace, name), None)
            return
        spec, status = body.get("spec") or {}, body.get("status") or {}
        view = WatchedSession(str(spec.get("backend") or ""), str(spec.get("mode") or "batch"),
                           str(status.get("phase") or ""))
        with self._lock:
            self._sessions[(namespace, name)] = view

    def session(self, namespace: str, name: str) -> WatchedSession | None:
        return self._sessions.get((namespace, name))


_published: ClusterSnapshot | None = None


def publish(snapshot: ClusterSnapshot) -> None:
    """The watches feed `snapshot` now (the operator started on this replica): the webhook, served
    in the same process, reads it instead of listing the cluster itself."""
    global _published
    _published = snapshot


def withdraw(snapshot: ClusterSnapshot) -> None:
    """The watches stopped feeding `snapshot` (the operator stopped)."""
    global _published
    if _published is snapshot:
        _published = None


def published() -> ClusterSnapshot | None:
    """The snapshot the operator's watches feed in this process, if they run."""
    return _published
