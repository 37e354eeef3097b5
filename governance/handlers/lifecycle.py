"""Operator start and stop: settings, the ledger, reconciliation with the cluster."""

from __future__ import annotations

import logging
from typing import Any

import kopf
import kubernetes

from ..api import OPERATOR_FINALIZER
from ..budget import db
from ..budget.batcher import ReservationBatcher
from ..budget.ledger import Ledger
from ..sessions.batching import Batcher
from .config import OperatorConfig
from .runtime import Runtime, rt, set_runtime


class _QuietTimers(logging.Filter):
    """kopf logs every timer run ("Timer 'budget_tick' succeeded.") at INFO: one line per budget per
    second buries everything that matters in the operator's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.INFO and record.getMessage().startswith("Timer ")
                    and record.getMessage().endswith(" succeeded."))


@kopf.on.startup()
def start(settings: kopf.OperatorSettings, logger: Any, **_: Any) -> None:
    # kopf's own finalizer (budgets: it stops their timers) must not be the one qgov puts on jobs:
    # kopf removes its finalizer from objects that no longer need it
    settings.persistence.finalizer = OPERATOR_FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="qgov.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="qgov.dev", key="last-handled")
    # kopf's own log lines become Events only from WARNING up ("Handler succeeded" at INFO would be
    # one more API call per job); the Events qgov means to post are posted explicitly with kopf.event
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 60
    logging.getLogger("kopf.objects").addFilter(_QuietTimers())
    logging.getLogger("qiskit").setLevel(logging.WARNING)  # a line per transpiler pass per estimate otherwise
    settings.execution.max_workers = 32
    config = OperatorConfig.from_env()
    db.upgrade(config.database_url)  # idempotent; a fresh SQLite ledger needs its schema
    ledger = Ledger(config.database_url)
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    set_runtime(Runtime(config, ledger, ReservationBatcher(ledger),
                        batches=Batcher(window_s=config.batch_window_seconds, max_jobs=config.batch_max_jobs)))
    from .jobs import reconcile_ledger

    reconcile_ledger(logger)
    logger.info(f"qgov operator started; ledger {db.redact(str(ledger.engine.url))}")


@kopf.on.cleanup()
def stop(**_: Any) -> None:
    runtime = rt()
    runtime.batcher.close()
    runtime.ledger.close()
    set_runtime(None)
