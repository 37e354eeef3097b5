"""Operator start and stop: settings, the ledger, reconciliation with the cluster."""

from __future__ import annotations

import gc
import logging
import os
from typing import Any

import kopf
import kubernetes

from .. import metrics
from ..leader.replica import listen_address
from ..api import MANAGED_BY_LABEL, OPERATOR_FINALIZER
from ..budget import db
from ..budget.batcher import ReservationBatcher
from ..budget.ledger import Ledger
from ..kubeconfig import client_configuration
from ..sessions.batching import Batcher
from ..providers.ibm.iam import iam_exchange
from ..sessions.tokens import TokenManager
from .config import OperatorConfig
from .budgets import Budgets
from .budgetnotify import BudgetNotifier, install as install_budget_notifier
from .alarms import Alarms
from .expiry import delete_job
from .jobs import reconcile_ledger
from .podsweep import PodSweeper
from .sessions import Sessions
from .sessionview import SessionDirectory, install as install_session_directory
from .retrying import run_retrying
from .context import OperatorContext, ctx, set_context


RAW_EVENT_KINDS = frozenset({"QiskitJob", "QiskitBackend", "Pod"})
EVENT_SOURCE = "qgov-operator"  # the Events' source/reportingComponent (kubectl describe's "From")


class _DiffBaseWhereChanged(kopf.AnnotationsDiffBaseStorage):
    """kopf builds a diff base (a deep copy of the object) on every event of every kind it watches,
    but only kinds with change handlers (QiskitBudget, QiskitSession) compare one. QiskitJobs,
    QiskitBackends and pods are driven from raw events: for them there is nothing to compare."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        if body.get("kind") in RAW_EVENT_KINDS:
            return {}
        return super().build(body=body, extra_fields=extra_fields)

    def fetch(self, *, body: Any) -> Any:
        if body.get("kind") in RAW_EVENT_KINDS:
            return None
        return super().fetch(body=body)


LIST_CHUNK = 500  # objects per page of a watch's initial listing

_sweeper: PodSweeper | None = None  # started with the operator, stopped with it


@kopf.on.startup()
def start(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    # kopf's own finalizer (budgets: it stops their timers) must not be the one qgov puts on jobs:
    # kopf removes its finalizer from objects that no longer need it
    settings.persistence.finalizer = OPERATOR_FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="qgov.dev")
    settings.persistence.diffbase_storage = _DiffBaseWhereChanged(prefix="qgov.dev", key="last-handled")
    # kopf's own log lines become Events only from WARNING up ("Handler succeeded" at INFO would be
    # one more API call per job); the Events qgov means to post are posted explicitly with kopf.event
    settings.posting.level = logging.WARNING
    # `kubectl describe` shows an Event's source in its "From" column: say it is qgov, not "kopf"
    settings.posting.reporting_component = EVENT_SOURCE
    settings.posting.reporting_instance = os.environ.get("HOSTNAME") or EVENT_SOURCE
    settings.posting.event_name_prefix = "qgov-"
    settings.watching.server_timeout = 60
    # the initial listing in pages (client-go's reflectors page by 500 too): all at once, a cluster's
    # 50,000 jobs were one response decoded whole, the operator's peak memory, and the heap it
    # left behind stayed (with rawevents' slim listed jobs, RSS at 20,000 finished: 431 -> 247 MiB)
    settings.watching.chunk_size = LIST_CHUNK
    # the API server sends only qgov's pods (executors, session runners): in a shared cluster the
    # operator would otherwise receive, parse and drop every pod event of every workload. And only
    # once they have left Pending: the operator has nothing to do while a pod is scheduled and
    # pulled; a pod deleted while Pending is found by the pod sweep (podsweep.py)
    settings.watching.label_selectors["v1", "pods"] = f"{MANAGED_BY_LABEL}=qgov"
    settings.watching.field_selectors["v1", "pods"] = "status.phase!=Pending"
    # kopf logs every handler and timer run on an object at INFO ("Handler 'on_job_event'
    # succeeded.": three per job, a timer's per budget per second): lines that say nothing bury
    # what matters, and making them was a tenth of the operator's CPU per job. qgov's own lines
    # go to the "qgov" logger; kopf's warnings and errors (a handler that failed) still show.
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logging.getLogger("qiskit").setLevel(logging.WARNING)  # a line per transpiler pass per estimate otherwise
    settings.execution.max_workers = 32
    config = OperatorConfig.from_env()
    db.upgrade(config.database_url)  # idempotent; a fresh SQLite ledger needs its schema
    ledger = Ledger(config.database_url)
    # the process-wide default the handlers' clients start from: the one rule every qgov client follows
    kubernetes.client.Configuration.set_default(client_configuration())
    expiry = Alarms(lambda key: delete_job(context.custom, key), "qgov-job-expiry")
    context = OperatorContext(config, ledger, ReservationBatcher(ledger), executor=settings.execution.executor,
                              expiry=expiry)
    # the QiskitBudget handlers' collaborators, which they find in kopf's memo (budgets.py)
    memo.budgets = budgets = Budgets(ledger, context, context.job_phases, context.budget_units,
                                     config.status_interval_seconds)
    writer = budgets.status_writer
    # the QiskitSession handlers' (sessions.py), also in kopf's memo; the pod sweep re-creates runners with it
    memo.sessions = sessions = Sessions(ledger, context, TokenManager(metrics.counted_exchange(iam_exchange)), config,
                                           context.budget_units)
    # what the job, session and sweep handlers tell budgets (budgetnotify.py)
    install_budget_notifier(BudgetNotifier(context, writer, context.budget_units, config.provision_executor_identity))
    # which session a job runs in, automatic batches (sessionview.py)
    install_session_directory(SessionDirectory(
        context, Batcher(window_s=config.batch_window_seconds, max_jobs=config.batch_max_jobs), config))
    set_context(context)
    writer.start()
    expiry.start()
    run_retrying("start-up reconciliation of the ledger", reconcile_ledger)  # in the background if it fails
    global _sweeper
    _sweeper = PodSweeper(config.pod_sweep_seconds, context, sessions)
    _sweeper.start()
    metrics.serve(config.metrics_port, listen_address())  # (already served by the replica: a no-op)
    _tune_gc()
    logger.info(f"qgov operator started; ledger {db.redact(str(ledger.engine.url))}")


def _tune_gc() -> None:
    """The cyclic collector, for an operator whose start-up built a large heap that lives as long
    as it does (qiskit, kopf, SQLAlchemy: ~160,000 objects). Frozen, those are never traversed again;
    a full collection traversed them all. And a young generation of 10,000 objects instead of 700:
    most of a burst's objects (watch events, requests, answers) are freed by their reference counts
    before a collection would look at them. Together, in a burst of 3,000 admissions the collector's
    CPU fell from ~1.1 s to ~0.4 s (~0.2 ms per job). Objects made later are collected as before."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)


@kopf.on.cleanup()
def stop(memo: kopf.Memo, **_: Any) -> None:
    context = ctx()
    metrics.stop()
    if _sweeper is not None:
        _sweeper.stop()
    budgets = getattr(memo, "budgets", None)
    if budgets is not None:
        budgets.status_writer.stop()
    if context.expiry is not None:
        context.expiry.stop()
    context.batcher.close()
    context.ledger.close()
    install_budget_notifier(None)
    install_session_directory(None)
    set_context(None)
