"""What jobs and sessions tell a QiskitBudget: an Event on it, that its status should be
rewritten, and (for the work it pays for) that its namespace needs the executor identity. Here,
not in budgets.py, so that the job and session handlers need not import the budget handlers,
which start the jobs a budget change admits.

What it uses is given at start-up: startup.py builds a BudgetNotifier with exactly its
collaborators and hands it to the job, session and budget handlers and to the pod sweep."""

from __future__ import annotations

from typing import Any, Literal

from kubernetes.client.rest import ApiException

from ..api import GROUP, VERSION
from ..jobs.events import Event
from ..snapshot import ClusterSnapshot
from .budgetstatus import BudgetStatusWriter
from .identity import ensure_executor_identity
from .kube import BUDGETS, emit
from .retrying import type_name


class BudgetNotifier:
    def __init__(self, clients: Any, status_writer: BudgetStatusWriter, snapshot: ClusterSnapshot,
                 provision_executor_identity: bool) -> None:
        """`clients`: the API clients (`.custom`, `.core`, `.rbac`: one per thread, see
        kube.Kube); `snapshot`: the cluster as the watches see it (the budgets known, by namespace);
        `provision_executor_identity`: QGOV_PROVISION_EXECUTOR_IDENTITY."""
        self.clients, self.status_writer, self.snapshot = clients, status_writer, snapshot
        self.provision_executor_identity = provision_executor_identity
        self.identities: set[str] = set()  # namespaces whose executor identity exists (identity.py)

    def budget_event(self, namespace: str, name: str, type_: Literal["Normal", "Warning"], reason: str,
                     message: str) -> None:
        """An Event on a QiskitBudget, from anywhere (a job's refusal, a threshold crossing)."""
        try:
            body = self.clients.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, BUDGETS, name)
        except ApiException:
            return
        emit(body, Event(type_, reason, message))

    def refresh_budget_status(self, namespace: str, name: str) -> None:
        """Ask for the budget's status to be rewritten. Debounced by the status writer
        (budgetstatus.py): a burst of N jobs costs N cheap marks, not N reports of N jobs each."""
        self.status_writer.mark((namespace, name))

    def refresh_namespace_budgets(self, namespace: str | None = None) -> None:
        """Every budget of the namespace (or of the cluster) may show something new: when the ledger
        fails, for instance, they say so."""
        for ns, name in self.snapshot.budget_keys(namespace):
            self.refresh_budget_status(ns, name)

    def provide_executor_identity(self, budget: dict[str, Any], namespace: str) -> None:
        """The namespace's executor ServiceAccount and RoleBinding (identity.py), once per namespace
        and operator process; a refusal is a Warning on the budget (or on the unbudgeted job that
        asked), not a failed budget."""
        if not self.provision_executor_identity or namespace in self.identities:
            return
        try:
            ensure_executor_identity(self.clients.core, self.clients.rbac, namespace)
            self.identities.add(namespace)
        except ApiException as exc:
            emit(budget, Event("Warning", "ExecutorIdentityFailed", f"could not create ServiceAccount/RoleBinding qgov-executor: {type_name(exc)}"))
