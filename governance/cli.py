"""`qgov` command line: database migrations, ledger reports and manual ledger operations.

Every failure a user can cause (bad URL, unknown namespace, bad amount, old schema) ends
in one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from sqlalchemy.exc import SQLAlchemyError

from . import __version__
from .budget import db
from .budget.errors import LedgerError
from .budget.money import AmountError, format_amount, parse_amount

EXIT_USAGE = 2
EXIT_FAILED = 1


class CliError(Exception):
    """A user-facing failure: printed as one line, then exit with `code`."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def _ledger(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .budget.ledger import Ledger

    return Ledger(args.database_url)


# ---------------------------------------------------------------------- db


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    reached = db.upgrade(args.database_url, args.revision)
    print(f"database {db.redact(db.normalise_url(args.database_url or db.default_database_url()))} is at {reached}")
    return 0


def cmd_db_downgrade(args: argparse.Namespace) -> int:
    db.downgrade(args.database_url, args.revision)
    print(f"downgraded to {args.revision}")
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    engine = db.make_engine(args.database_url)
    current, head = db.current_revision(engine), db.head_revision()
    print(f"current {current or 'none'}, head {head}" + ("" if current == head else " (run `qgov db upgrade`)"))
    return 0 if current == head else EXIT_FAILED


# ---------------------------------------------------------------------- ledger


def cmd_report(args: argparse.Namespace) -> int:
    from .budget.report import parse_window, render

    window = parse_window(args.period)
    ledger = _ledger(args)
    print(render(ledger.report(args.namespace, window), args.format))
    return 0


def cmd_chargeback(args: argparse.Namespace) -> int:
    from .budget.chargeback import render_chargeback
    from .budget.report import parse_window

    window = parse_window(args.period)
    ledger = _ledger(args)
    sys.stdout.write(render_chargeback(window, ledger.chargeback(window), args.format))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .budget import focus
    from .budget.costview import parse_cost_window

    window = parse_cost_window(args.window)
    charges = _ledger(args).charges(window, args.namespace or None)
    result = focus.export(charges, focus.Issuer(args.account, args.account, args.provider))
    if result.skipped:
        print(f"qgov: {result.skipped} job(s) charged in QPU-seconds budgets left out: FOCUS costs are in a currency",
              file=sys.stderr)
    sys.stdout.write(focus.render_csv(result.rows))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    problems = _ledger(args).verify()
    for line in problems:
        print(line)
    print("ledger consistent: every balance equals its recomputation" if not problems
          else f"{len(problems)} inconsistencies")
    return 0 if not problems else EXIT_FAILED


def cmd_compact(args: argparse.Namespace) -> int:
    from .budget.report import parse_window

    before = parse_window(args.before).start
    result = _ledger(args).compact(before, args.namespace)
    print(f"compacted {result.reservations} finished reservations of periods that ended by "
          f"{result.horizon.isoformat()}; {result.entries} ledger entries folded into {result.periods} "
          "period entries (reports, balances and replays of their keys are unchanged)")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Cross the cluster's QiskitJobs with the ledger's reservations, then verify the balances.
    Exit 1 on any mismatch, 2 when the cluster or the database cannot be read (distinct, so a
    cron job or a test can tell "the books are wrong" from "the audit could not run")."""
    from kubernetes.client.rest import ApiException
    from kubernetes.config import ConfigException
    from urllib3.exceptions import HTTPError

    from .audit import audit_cluster

    where = db.redact(db.normalise_url(args.database_url or db.default_database_url()))
    try:
        ledger = _ledger(args)
    except LedgerError as exc:  # its message already names the (redacted) database
        raise CliError(str(exc), EXIT_USAGE) from None
    except SQLAlchemyError as exc:
        raise CliError(f"database {where}: {db.first_line(exc)}", EXIT_USAGE) from None
    try:
        custom = _custom_api(args.kubeconfig)
        problems, jobs, reservations = audit_cluster(custom, ledger)
        balances = ledger.verify()
    except LedgerError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except SQLAlchemyError as exc:
        raise CliError(f"database {where}: {db.first_line(exc)}", EXIT_USAGE) from None
    except (ApiException, ConfigException, HTTPError, OSError) as exc:
        raise CliError(f"cluster: {_kube_error(exc)}", EXIT_USAGE) from None
    finally:
        ledger.close()
    for line in problems + balances:
        print(line)
    if problems or balances:
        print(f"audit failed: {len(problems)} mismatches between {jobs} jobs and {reservations} reservations, "
              f"{len(balances)} balance inconsistencies")
        return EXIT_FAILED
    print(f"audit clean: {jobs} jobs and {reservations} reservations agree; "
          "every balance equals its recomputation")
    return 0


def _custom_api(kubeconfig: str | None):  # type: ignore[no-untyped-def]
    """A CustomObjectsApi: --kubeconfig, else in-cluster, else $KUBECONFIG / ~/.kube/config (as kubectl)."""
    import kubernetes

    from .kubeconfig import client_configuration

    # one retry: an unreachable cluster fails in seconds, not after urllib3's 3 retries
    configuration = client_configuration(kubeconfig, retries=1)
    return kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(configuration))


def _kube_error(exc: Exception) -> str:
    """One line for a kubernetes client failure (an ApiException's str is a multi-line dump)."""
    from kubernetes.config import ConfigException

    if isinstance(exc, ConfigException):
        return f"no usable kube config (in-cluster, --kubeconfig, $KUBECONFIG or ~/.kube/config): {exc}"
    status, reason = getattr(exc, "status", None), getattr(exc, "reason", None)
    if status is not None and reason is not None:
        return f"the API server answered {status} {reason}" + (
            " (are qgov's CRDs installed?)" if status == 404 else "")
    cause = " ".join(str(reason or exc).split())[:300]  # urllib3's MaxRetryError: the connection error
    return f"cannot reach the API server: {cause or type(exc).__name__}"


def cmd_budget_set(args: argparse.Namespace) -> int:
    from .budget.types import BudgetSpec

    warn = tuple(_parse_percent(x) for x in args.warn_at.split(",") if x.strip()) if args.warn_at else ()
    spec = BudgetSpec(args.namespace, args.name, parse_amount(args.limit, field="--limit"), args.unit, args.period,
                      args.enforcement, warn)
    balance, changes = _ledger(args).upsert_budget(spec)
    print(f"budget {args.namespace}/{args.name}: limit {format_amount(balance.limit_micro, balance.unit)}, "
          f"{balance.describe()}")
    for change in changes:
        print(f"  queued reservation {change.key}: {change.decision.value}")
    return 0


def cmd_reserve(args: argparse.Namespace) -> int:
    from .budget.types import ReserveRequest

    req = ReserveRequest(args.key, args.namespace, args.budget, parse_amount(args.amount, field="--amount"),
                         job=args.job, backend=args.backend, session=args.session)
    outcome = _ledger(args).reserve(req)
    print(f"{outcome.key}: {outcome.decision.value}" + (f": {outcome.message}" if outcome.message else "")
          + (" (replayed: nothing changed)" if outcome.replayed else ""))
    return 0 if outcome.admitted else EXIT_FAILED


def cmd_settle(args: argparse.Namespace) -> int:
    outcome = _ledger(args).settle(args.key, parse_amount(args.actual, field="--actual"))
    print(f"{outcome.key}: settled {format_amount(outcome.actual_micro)}, released {format_amount(outcome.released_micro)}"
          + (f", OVERRUN {format_amount(outcome.overrun_micro)}" if outcome.overrun else "")
          + (" (replayed: nothing changed)" if outcome.replayed else ""))
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    outcome = _ledger(args).release(args.key)
    print(f"{outcome.key}: {outcome.state}, released {format_amount(outcome.released_micro)}"
          + (" (replayed: nothing changed)" if outcome.replayed else ""))
    return 0


def cmd_adjust(args: argparse.Namespace) -> int:
    amount = parse_amount(args.amount, field="--amount", allow_negative=True)
    balance = _ledger(args).adjust(args.namespace, args.budget, amount, key=args.key, reason=args.reason)
    print(f"budget {args.namespace}/{args.budget}: {balance.describe()}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_ledger_demo

    print(run_ledger_demo(args.database_url))
    return 0


DEV_TOOLS_MISSING = "qgov dev needs the dev tools: pip install 'qgov[dev]'"
# what the extra brings (PyYAML) and the package itself, absent from an image built without it
DEV_MODULES = {"qgov_dev", "yaml"}


def cmd_dev(args: argparse.Namespace) -> int:
    try:  # the dev tools are a separate top-level package, with their own extra: imported only here
        from qgov_dev.devcluster.devmain import main as dev_main
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in DEV_MODULES:
            raise
        raise CliError(f"{DEV_TOOLS_MISSING} (missing: {exc.name})", EXIT_USAGE) from None

    return int(dev_main(args.port, args.workdir, not args.no_operator, args.demo, args.cluster))


def cmd_operator(args: argparse.Namespace) -> int:
    import logging

    from .leader import replica

    election = replica.Election.from_env()  # a wrong setting fails here, before anything starts
    import threading

    from . import pricing  # noqa: F401 - qiskit is imported here, on the main thread: never by two threads at once

    # the pricing workers (governance/pricing.py) start beside the imports below, and are running
    # before the first job is priced: a job is never priced in the operator's own process
    workers = threading.Thread(target=_start_pricing, name="qgov-pricing-start", daemon=True)
    workers.start()
    from . import handlers  # noqa: F401  (registers the handlers)
    from .handlers import rawevents

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rawevents.install()  # QiskitJob events past kopf's per-event machinery
    from .webhook import start_from_env as start_webhook

    start_webhook()  # QGOV_WEBHOOK_PORT: the admission webhook, served by every replica (standbys too), in its own thread
    workers.join(120)
    # kopf runs standalone (no kopf peering): in a pod, a Lease decides which replica runs it
    # (governance/leader/replica.py); the ledger keeps money exact even if two ever overlap
    return replica.run(args.liveness, election)


def _start_pricing() -> None:
    import logging

    from . import pricing

    try:
        pricing.start()
    except Exception as exc:  # noqa: BLE001 - the first circuit to price tries again
        logging.getLogger("qgov.pricing").warning(f"the pricing workers did not start: {exc}")


def _parse_percent(text: str) -> int:
    try:
        value = int(text.strip().rstrip("%"))
    except ValueError:
        raise CliError(f"--warn-at: {text!r} is not a whole percentage") from None
    return value


# ---------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qgov", description="Govern quantum-computing spend on Kubernetes.")
    parser.add_argument("--version", action="version", version=f"qgov {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_db(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--database-url", default=None,
                       help="ledger database (default: $QGOV_DATABASE_URL, else a SQLite file under ~/.local/share/qgov)")
        return p

    def add(parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str, func: Callable[[argparse.Namespace], int], help: str
            ) -> argparse.ArgumentParser:
        p = with_db(parent.add_parser(name, help=help, description=help))
        p.set_defaults(func=func)
        return p

    dbp = sub.add_parser("db", help="ledger database schema").add_subparsers(dest="db_command", required=True)
    p = add(dbp, "upgrade", cmd_db_upgrade, "create or migrate the ledger schema")
    p.add_argument("revision", nargs="?", default="head")
    p = add(dbp, "downgrade", cmd_db_downgrade, "migrate the ledger schema down")
    p.add_argument("revision", nargs="?", default="base")
    add(dbp, "current", cmd_db_current, "show the schema revision")

    lp = sub.add_parser("ledger", help="budget ledger").add_subparsers(dest="ledger_command", required=True)
    p = add(lp, "report", cmd_report, "cost report for a namespace")
    p.add_argument("--namespace", "-n", required=True)
    p.add_argument("--period", help="2026-11 (month), 2026-W48 (ISO week) or 2026-11-24 (day); default this month")
    p.add_argument("--format", "-o", choices=("table", "json", "csv", "markdown"), default="table")
    p = add(lp, "chargeback", cmd_chargeback, "what every budget of every namespace was charged in a month "
                                              "(or week, or day): one CSV row per budget")
    p.add_argument("--period", help="2026-11 (month), 2026-W48 (ISO week) or 2026-11-24 (day); default this month")
    p.add_argument("--format", "-o", choices=("csv", "markdown"), default="csv")
    p = add(lp, "export", cmd_export, "every settled job charged in a window, as FOCUS 1.1 CSV rows for FinOps tools")
    p.add_argument("--format", "-o", choices=("focus",), default="focus")
    p.add_argument("--window", "-w", default=None,
                   help="start,end (RFC 3339), thismonth (default), lastmonth, 7d, 24h, or 2026-11 / 2026-W48 / 2026-11-24")
    p.add_argument("--namespace", "-n", action="append", help="only this namespace (repeatable; default: all)")
    p.add_argument("--provider", default="qgov", help="ProviderName, PublisherName and InvoiceIssuerName (default qgov)")
    p.add_argument("--account", default="qgov", help="BillingAccountId and BillingAccountName (default qgov)")
    add(lp, "verify", cmd_verify, "recompute every balance from the entry log and compare")
    p = add(lp, "compact", cmd_compact,
            "remove the settled, released and refused reservations of periods that ended before PERIOD; "
            "reports stay exact and their keys are never admitted again")
    p.add_argument("--before", required=True, metavar="PERIOD",
                   help="2026-11 (month), 2026-W48 (ISO week) or 2026-11-24 (day): periods ended by its start")
    p.add_argument("--namespace", "-n", default=None, help="only this namespace's budgets (default: all)")
    p = add(lp, "audit", cmd_audit, "check every QiskitJob in the cluster against its ledger reservation, "
                                    "and every balance; exit 1 on any mismatch")
    p.add_argument("--kubeconfig", default=None,
                   help="kubeconfig file (default: in-cluster config, else $KUBECONFIG or ~/.kube/config)")
    p = add(lp, "budget", cmd_budget_set, "create or update a budget")
    p.add_argument("--namespace", "-n", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--limit", required=True, help="decimal, e.g. 10.00")
    p.add_argument("--unit", choices=("USD", "QPU-seconds"), default="USD")
    p.add_argument("--period", choices=("none", "daily", "weekly", "monthly"), default="monthly",
                   help="default monthly, as a QiskitBudget's spec.period")
    p.add_argument("--enforcement", choices=("hard", "queue"), default="hard")
    p.add_argument("--warn-at", default="", help="comma-separated percentages, e.g. 50,80,100")
    p = add(lp, "reserve", cmd_reserve, "reserve an amount for a key (normally the operator does this)")
    p.add_argument("--namespace", "-n", required=True)
    p.add_argument("--budget", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--amount", required=True)
    p.add_argument("--job", default="")
    p.add_argument("--backend", default="")
    p.add_argument("--session", default="")
    p = add(lp, "settle", cmd_settle, "settle a reservation with its actual usage")
    p.add_argument("--key", required=True)
    p.add_argument("--actual", required=True)
    p = add(lp, "release", cmd_release, "release a reservation")
    p.add_argument("--key", required=True)
    p = add(lp, "adjust", cmd_adjust, "debit (positive) or credit (negative) a budget's current period")
    p.add_argument("--namespace", "-n", required=True)
    p.add_argument("--budget", required=True)
    p.add_argument("--amount", required=True)
    p.add_argument("--key", required=True, help="idempotency key: the same key never adjusts twice")
    p.add_argument("--reason", default="")
    p = sub.add_parser("dev", help="run a local Kubernetes API emulator and pod runner",
                       description="run a local Kubernetes API emulator and pod runner on 127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: any free port)")
    p.add_argument("--workdir", default=None, help="where the kubeconfig and pod files go (default: a temp dir)")
    p.add_argument("--no-operator", action="store_true", help="only the API and the pod runner")
    p.add_argument("--cluster", choices=("emulator", "upstream"), default="emulator",
                   help="emulator (default: fast, no binaries) or upstream: real etcd, kube-apiserver, "
                        "controller-manager and scheduler (built by scripts/kube-binaries.sh) and a node, "
                        "qgov installed from operator/manifests")
    p.add_argument("--demo", action="store_true",
                   help="apply the samples, wait for the jobs, print kubectl get/describe, and exit")
    p.set_defaults(func=cmd_dev)
    p = sub.add_parser("operator", help="run the qgov operator against the current kubeconfig or in-cluster",
                       description="run the qgov operator (kopf) against $KUBECONFIG or the in-cluster config")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--liveness", default=None, help="e.g. http://0.0.0.0:8080/healthz")
    p.set_defaults(func=cmd_operator)
    add(sub, "demo", cmd_demo, "price real circuits, reserve and settle them on a demo ledger, print the report")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"qgov: error: {exc}", file=sys.stderr)
        return exc.code
    except (LedgerError, AmountError, ValueError) as exc:
        print(f"qgov: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except SQLAlchemyError as exc:
        print(f"qgov: error: database: {db.first_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"qgov: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
