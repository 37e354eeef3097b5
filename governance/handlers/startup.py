"""Operator start and stop: settings, the ledger, reconciliation with the cluster."""

from __future__ import annotations

import gc
import logging
import os
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import kopf
import kubernetes

from .. import costapi, metrics, metricsauth
from ..api import MANAGED_BY_LABEL, OPERATOR_FINALIZER
from ..budget import db
from ..budget.batcher import ReservationBatcher
from ..budget.ledger import Ledger
from ..kubeconfig import client_configuration
from ..snapshot import ClusterSnapshot, publish, withdraw
from ..sessions.batching import Batcher
from ..providers.ibm.iam import iam_exchange
from ..sessions.tokens import TokenManager
from ..jobs.runnerreport import REPORT_LABEL
from .config import OperatorConfig, listen_address
from .budgets import Budgets
from .alarms import Alarms
from .expiry import delete_job
from .jobphases import JobPhases
from .jobs import Jobs
from .kube import Kube
from .podsweep import PodSweeper
from .sessions import Sessions
from .sessionview import SessionDirectory
from .retrying import run_retrying
from .context import KopfContext


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


@dataclass
class Operator:
    """The objects the handlers are given, one per concern, each with exactly what it uses."""

    kopf_context: KopfContext
    kube: Kube
    ledger: Ledger
    snapshot: ClusterSnapshot
    budgets: Budgets
    jobs: Jobs
    sessions: Sessions
    sweeper: PodSweeper


def assemble(config: OperatorConfig, ledger: Ledger, executor: Executor | None = None) -> Operator:
    """Build the handlers' objects over the ledger; nothing is started (see start)."""
    kopf_context, kube = KopfContext(), Kube()
    snapshot = ClusterSnapshot()  # backends, budgets, sessions as the watches see them: admission reads it
    job_phases = JobPhases()
    # the QiskitBudget handlers' (budgets.py), and through its notifier what jobs and sessions tell budgets
    budgets = Budgets(ledger, kube, job_phases, snapshot, config.status_interval_seconds,
                      config.provision_executor_identity, kopf_context)
    # which session a job runs in, automatic batches (sessionview.py)
    directory = SessionDirectory(kube, Batcher(window_s=config.batch_window_seconds, max_jobs=config.batch_max_jobs),
                                 config)
    expiry = Alarms(lambda key: delete_job(kube.custom, key), "qgov-job-expiry")
    jobs = Jobs(config, ledger, ReservationBatcher(ledger), kube, budgets.notifier, directory, kopf_context,
                job_phases, snapshot, expiry, executor)
    budgets.connect(jobs)
    # the QiskitSession handlers' (sessions.py); the pod sweep re-creates runners with it
    sessions = Sessions(ledger, kube, TokenManager(metrics.counted_exchange(iam_exchange)), config, snapshot,
                        jobs, budgets.notifier, directory, kopf_context)
    jobs.settlement.metering = sessions.credentials.metered_usage  # IBM's meter, read with the session's own credential
    sweeper = PodSweeper(config.pod_sweep_seconds, jobs, sessions, kopf_context)
    return Operator(kopf_context, kube, ledger, snapshot, budgets, jobs, sessions, sweeper)


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
    # a local session's runner reports each attempt in a ConfigMap of its own (jobattempts.py runner_report):
    # only those are sent, not every ConfigMap of the cluster
    settings.watching.label_selectors["v1", "configmaps"] = REPORT_LABEL
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
    operator = assemble(config, ledger, settings.execution.executor)
    # the kopf handlers find theirs in kopf's memo (budgets.py, jobwatch.py, sessions.py)
    memo.operator = operator
    memo.budgets, memo.jobs, memo.sessions = operator.budgets, operator.jobs, operator.sessions
    operator.kopf_context.running = True
    publish(operator.snapshot)  # the webhook in this process reads what the watches feed
    operator.budgets.status_writer.start()
    operator.jobs.expiry.start()
    # in the background if it fails
    run_retrying("start-up reconciliation of the ledger", operator.jobs.settlement.reconcile_ledger)
    operator.sweeper.start()
    if config.metrics_port:  # (already served by the replica: a no-op)
        metrics.serve(config.metrics_port, listen_address(), metricsauth.gate_for(config.metrics_auth))
    costapi.serve(config.cost_api_port, listen_address(), config.database_url, config.metrics_auth)  # (idem)
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
    operator: Operator = memo.operator
    withdraw(operator.snapshot)
    metrics.stop()
    operator.sweeper.stop()
    operator.budgets.status_writer.stop()
    operator.jobs.expiry.stop()
    operator.jobs.batcher.close()
    operator.ledger.close()
    operator.kopf_context.running = False
