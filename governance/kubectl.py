"""`kubectl qgov` (the `kubectl-qgov` executable): what a job will cost and what jobs cost, from a
kubeconfig alone. No database credentials: the budgets' balances are read from their status, as
`kubectl describe qiskitbudget` shows them.

`estimate` runs the admission webhook's own review (`webhook.review.review_job`, which drives the
controller's `decide_admission`) over what this user may read in the cluster, and creates nothing:
the price is the one the operator will reserve, to the micro-unit. Whether the budget has room is
judged on the balances the budget's status last showed (the operator decides under the ledger's
lock when the job is applied).

Every failure a user can cause (no such file, a manifest that is not a QiskitJob, no access) ends in
one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from .assessment import Problem, backend_from_object
from .api import GROUP, VERSION
from .api.specs import Backend, budgets_that_may_come
from .budget.costquery import BadQuery, check_aggregate
from .budget.money import AmountError, format_amount, parse_amount
from .budget.types import Balance
from .jobs import results
from .jobs.status import JobStatus
from .webhook.review import BudgetView, review_job
from .timestamps import parse_iso, parse_optional

EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 1, 2, 3


class PluginError(Exception):
    """A user-facing failure: one line on stderr, exit 1."""


class ClusterSources:
    """`webhook.review.Sources` over the cluster as one user sees it: backends, the namespace's
    QiskitBudgets (their spec and the balances their status shows) and a Secret's key names."""

    ibm_default_secret = "ibm-quantum"

    def __init__(self, api: Any, allow_unbudgeted: bool = False) -> None:
        import kubernetes

        self.allow_unbudgeted = allow_unbudgeted
        self._custom = kubernetes.client.CustomObjectsApi(api)
        self._core = kubernetes.client.CoreV1Api(api)
        self._budgets: dict[str, list[dict[str, Any]]] = {}

    def backend(self, name: str) -> Backend | Problem | None:
        obj = _get_or_none(lambda: self._custom.get_cluster_custom_object(GROUP, VERSION, "qiskitbackends", name))
        return None if obj is None else backend_from_object(name, obj)

    def _budget_objects(self, namespace: str) -> list[dict[str, Any]]:
        if namespace not in self._budgets:
            items = self._custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "qiskitbudgets")["items"]
            self._budgets[namespace] = [b for b in items if not b["metadata"].get("deletionTimestamp")]
        return self._budgets[namespace]

    def budgets(self, namespace: str) -> Mapping[str, BudgetView] | None:
        """The budgets the operator has taken into its ledger (their status has a period), each with
        the balance its status shows."""
        views = {}
        for b in self._budget_objects(namespace):
            spec, status = b.get("spec") or {}, b.get("status") or {}
            if not status.get("periodStart"):
                continue  # not in the ledger yet: budgets_in_cluster tells the review it is coming
            name = b["metadata"]["name"]
            views[name] = BudgetView(name, spec.get("unit", "USD"), spec.get("enforcement", "hard"),
                                     _balance(namespace, name, spec, status))
        return views

    def budgets_in_cluster(self, namespace: str) -> Mapping[str, str]:
        return budgets_that_may_come(self._budget_objects(namespace))

    def secret_keys(self, namespace: str, name: str) -> frozenset[str] | None:
        """Only the key names leave this function: values are neither kept nor printed."""
        secret = _get_or_none(lambda: self._core.read_namespaced_secret(name, namespace))
        return None if secret is None else frozenset(k for k, v in (secret.data or {}).items() if v)


def _balance(namespace: str, name: str, spec: Mapping[str, Any], status: Mapping[str, Any]) -> Balance | None:
    try:
        micro = {k: parse_amount(str(status.get(k) or "0"), field=k) for k in ("limit", "spent", "reserved")}
        start = parse_iso(str(status["periodStart"]))
        end = parse_optional(status.get("periodEnd"))
    except (AmountError, ValueError, KeyError):
        return None  # a status this version cannot read: price the job, the operator decides the rest
    queued = int(((status.get("jobs") or {}).get("queued")) or 0)
    return Balance(namespace, name, spec.get("unit", "USD"), micro["limit"], micro["spent"], micro["reserved"],
                   start, end, queued)


def _get_or_none(read: Any) -> Any:
    """kubeerrors.unless_gone, imported at the first call: loading the plugin loads no kubernetes client."""
    from .kubeerrors import unless_gone

    return unless_gone(read)


# ---------------------------------------------------------------------- commands


def _api(args: argparse.Namespace) -> Any:
    import kubernetes

    from .kubeconfig import client_configuration

    return kubernetes.client.ApiClient(client_configuration(args.kubeconfig))


def _namespace(args: argparse.Namespace, manifest: Mapping[str, Any] | None = None) -> str:
    if args.namespace:
        return str(args.namespace)
    if manifest and (manifest.get("metadata") or {}).get("namespace"):
        return str(manifest["metadata"]["namespace"])
    import kubernetes

    try:
        _, context = kubernetes.config.list_kube_config_contexts(config_file=args.kubeconfig)
        return str((context.get("context") or {}).get("namespace") or "default")
    except Exception:  # noqa: BLE001 - in a pod, or no kubeconfig: kubectl's default
        return "default"


def _read_manifest(path: str) -> dict[str, Any]:
    import yaml

    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as exc:
        raise PluginError(f"cannot read {path}: {exc.strerror}") from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as exc:
        raise PluginError(f"{path} is not YAML: {str(exc).splitlines()[0]}") from None
    jobs = [d for d in documents if isinstance(d, dict) and d.get("kind") == "QiskitJob"]
    if len(jobs) != 1:
        raise PluginError(f"{path} holds {len(jobs)} QiskitJob objects; estimate prices exactly one")
    return jobs[0]


def cmd_estimate(args: argparse.Namespace) -> int:
    manifest = _read_manifest(args.filename)
    namespace = _namespace(args, manifest)
    with _api(args) as api:
        verdict = review_job(namespace, manifest.get("spec") or {}, ClusterSources(api))
    name = (manifest.get("metadata") or {}).get("name", "")
    if not verdict.allowed:
        print(f"QiskitJob {namespace}/{name} would be refused ({verdict.reason}): {verdict.message}")
        return EXIT_REFUSED
    print(f"QiskitJob {namespace}/{name} would be admitted")
    for warning in verdict.warnings:
        print(f"  {warning}")
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    namespace = _namespace(args)
    with _api(args) as api:
        import kubernetes

        items = kubernetes.client.CustomObjectsApi(api).list_namespaced_custom_object(
            GROUP, VERSION, namespace, "qiskitjobs")["items"]
    rows: list[tuple[str, ...]] = [("NAME", "PHASE", "BACKEND", "ESTIMATE", "COST", "BUDGET")]
    for job in sorted(items, key=lambda j: j["metadata"]["name"]):
        status = JobStatus.of(job)
        unit = status.currency
        rows.append((job["metadata"]["name"], status.phase or "Pending", str((job.get("spec") or {}).get("backend", "")),
                     "-" if status.estimated_micro is None else format_amount(status.estimated_micro, unit),
                     format_amount(status.used_micro, unit) if status.counted_attempt else "-",
                     status.budget or "-"))
    _table(rows)
    return 0


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _budgets_shown(args: argparse.Namespace) -> tuple[str, list[dict[str, Any]]]:
    namespace = _namespace(args)
    with _api(args) as api:
        import kubernetes

        items = kubernetes.client.CustomObjectsApi(api).list_namespaced_custom_object(
            GROUP, VERSION, namespace, "qiskitbudgets")["items"]
    if not items:
        raise PluginError(f"namespace {namespace} has no QiskitBudget")
    return namespace, sorted(items, key=lambda b: b["metadata"]["name"])


def _cost_token(args: argparse.Namespace) -> str:
    """--token, else the bearer token of the kubeconfig's user (a ServiceAccount's, an OIDC id token)."""
    if args.token:
        return str(args.token)
    from .kubeconfig import client_configuration

    try:
        header = client_configuration(args.kubeconfig).api_key.get("authorization") or ""
    except Exception:  # noqa: BLE001 - no kubeconfig: say what to give instead
        header = ""
    if not header.lower().startswith("bearer "):
        raise PluginError("--server needs a bearer token: give --token (e.g. $(kubectl create token NAME)); "
                          "the kubeconfig's user has none")
    return header.split(" ", 1)[1].strip()


def report_from_cost_api(args: argparse.Namespace) -> str:
    """GET the operator's cost API (docs/cost-api.md) with the caller's own token: it answers only
    the namespaces that token may get QiskitBudgets in."""
    import urllib.error
    import urllib.parse
    import urllib.request

    query = {"aggregate": args.by, "format": "csv" if args.output == "csv" else "json"}
    if args.window:
        query["window"] = args.window
    if args.namespace:
        query["namespace"] = args.namespace
    url = f"{args.server.rstrip('/')}/costs?{urllib.parse.urlencode(query)}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {_cost_token(args)}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return str(answer.read().decode())
    except urllib.error.HTTPError as exc:
        reason = exc.read().decode(errors="replace").strip().splitlines()
        raise PluginError(f"the cost API answered {exc.code}: {reason[0] if reason else exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise PluginError(f"cannot reach the cost API at {args.server}: {getattr(exc, 'reason', exc)}") from None


def _aggregate(text: str) -> str:
    """--by's value, checked as the cost API checks it (costview.check_aggregate)."""
    try:
        check_aggregate(text)
    except BadQuery as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def cmd_report(args: argparse.Namespace) -> int:
    """This period's spend of each budget of the namespace, as the operator last wrote it to the
    budget's status, by backend or by session; with --server, any window from the operator's cost API."""
    if args.server:
        body = report_from_cost_api(args)
        if args.output == "csv":
            sys.stdout.write(body)
            return 0
        answer = json.loads(body)
        print(f"costs from {answer['window']['start']} to {answer['window']['end']}, "
              f"namespaces: {', '.join(answer['namespaces']) or '-'}")
        table: list[tuple[str, ...]] = [(args.by.upper(), "UNIT", "JOBS", "COST", "ESTIMATE")]
        table += [(i["name"] or "-", i["unit"], str(i["jobs"]), i["cost"], i["estimate"]) for i in answer["items"]]
        table += [("TOTAL", t["unit"], str(t["jobs"]), t["cost"], "") for t in answer["totals"]]
        _table(table)
        return 0
    if args.window or args.by not in ("backend", "session") or args.output != "table":
        raise PluginError("--window, --by namespace|budget|label:KEY and -o csv need --server (the operator's cost API): "
                          "without it the report is this period's, from the budgets' status")
    namespace, budgets = _budgets_shown(args)
    for budget in budgets:
        status, name = budget.get("status") or {}, budget["metadata"]["name"]
        unit = status.get("unit") or (budget.get("spec") or {}).get("unit", "USD")
        print(f"budget {namespace}/{name}: {status.get('spent', '-')} {unit} spent, {status.get('reserved', '-')} "
              f"reserved, {status.get('remaining', '-')} left of {status.get('limit', '-')} "
              f"(period from {status.get('periodStart', '-')})")
        lines = status.get("spendByBackend" if args.by == "backend" else "spendBySession") or []
        rows: list[tuple[str, ...]] = [(args.by.upper(), "JOBS", f"AMOUNT ({unit})")]
        rows += [(str(s.get("name")), str(s.get("jobs", "")), str(s.get("amount"))) for s in lines]
        _table(rows)
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    """The most expensive jobs of this period, per budget (the budget's status.topJobs)."""
    namespace, budgets = _budgets_shown(args)
    rows: list[tuple[str, ...]] = [("BUDGET", "JOB", "STATE", "ESTIMATE", "ACTUAL")]
    for budget in budgets:
        for j in (budget.get("status") or {}).get("topJobs") or []:
            rows.append((budget["metadata"]["name"], str(j.get("job")), str(j.get("state")), str(j.get("estimate")),
                         str(j.get("actual") or "-")))
    _table(rows)
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    namespace = _namespace(args)
    with _api(args) as api:
        import kubernetes

        job = _get_or_none(lambda: kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "qiskitjobs", args.job))
        if job is None:
            raise PluginError(f"no QiskitJob {namespace}/{args.job}")
        status = job.get("status") or {}
        name = status.get("resultConfigMap")
        if not name:
            raise PluginError(f"QiskitJob {namespace}/{args.job} has no result (phase "
                              f"{status.get('phase') or 'Pending'}){': ' + status['message'] if status.get('message') else ''}")
        core = kubernetes.client.CoreV1Api(api)
        document = results.read_result(lambda part: core.read_namespaced_config_map(part, namespace), str(name))
    if args.output == "json":
        print(json.dumps(document, indent=2, sort_keys=True))
        return 0
    for i, circuit in enumerate(document.get("circuits") or []):
        if "bindings" in circuit:  # a sweep: one line per point, with its values
            for j, point in enumerate(circuit["bindings"]):
                values = ", ".join(f"{k}={v:g}" for k, v in sorted((point.get("parameters") or {}).items()))
                print(f"circuit {i} [{j}] ({values}): {_describe_result(point)}")
        else:
            print(f"circuit {i}: {_describe_result(circuit)}")
    return 0


def _describe_result(result: dict[str, Any]) -> str:
    """One circuit's (or one point's) counts, most frequent first, or its expectation values."""
    if "counts" in result:
        return ", ".join(f"{k}: {v}" for k, v in sorted(result["counts"].items(), key=lambda kv: (-kv[1], kv[0])))
    return ", ".join(f"{v} ± {s}" for v, s in zip(result.get("expectationValues") or [], result.get("stds") or [], strict=False))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubectl qgov", description="What quantum jobs will cost and what they cost.")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG or ~/.kube/config)")
    p.add_argument("-n", "--namespace", help="namespace (default: the manifest's, then the context's)")
    sub = p.add_subparsers(dest="command", required=True)
    estimate = sub.add_parser("estimate", help="price a QiskitJob manifest against the cluster; creates nothing")
    estimate.add_argument("-f", "--filename", required=True, help="the manifest (- for stdin)")
    estimate.set_defaults(run=cmd_estimate)
    jobs = sub.add_parser("jobs", help="the namespace's QiskitJobs with their estimate and cost")
    jobs.set_defaults(run=cmd_jobs)
    report = sub.add_parser("report", help="this period's spend of the namespace's budgets, by backend or session")
    report.add_argument("--by", type=_aggregate, default="backend",
                        help="backend (default), session, namespace, budget or label:KEY (the jobs' label KEY when "
                             "they were admitted); namespace, budget and label:KEY need --server")
    report.add_argument("--window", help="with --server: start,end (RFC 3339), thismonth (default), lastmonth, 7d, 24h")
    report.add_argument("--server", help="the operator's cost API, e.g. http://qgov-operator-costs.qgov-system:9091 "
                                         "(default: none, read the budgets' status)")
    report.add_argument("--token", help="bearer token for --server (default: the kubeconfig user's)")
    report.add_argument("-o", "--output", choices=("table", "csv"), default="table", help="csv needs --server")
    report.set_defaults(run=cmd_report)
    top = sub.add_parser("top", help="the most expensive jobs of this period")
    top.set_defaults(run=cmd_top)
    result = sub.add_parser("results", help="a job's counts or expectation values (its result ConfigMaps, joined)")
    result.add_argument("job")
    result.add_argument("-o", "--output", choices=("text", "json"), default="text")
    result.set_defaults(run=cmd_results)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from kubernetes.client.rest import ApiException

    args = parser().parse_args(argv)
    try:
        code: int = args.run(args)
        return code
    except PluginError as exc:
        print(f"kubectl qgov: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ApiException as exc:
        print(f"kubectl qgov: the API server answered {exc.status} {exc.reason}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - a user sees one line, never a traceback
        print(f"kubectl qgov: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
