"""Chaos benchmark: the scenarios of qgov_dev/chaos.py (which tests/operator/test_chaos_e2e.py asserts on) at larger sizes, one table.

    python bench/chaos.py                                   # all four scenarios, default sizes
    python bench/chaos.py --only rolling --rolling-pays-for 600 --rolling-rate 20 --existing 3000
    python bench/chaos.py --operator-pythonpath /tmp/qgov-before   # the operators run another checkout

Everything is real except where a scenario needs hundreds of executor pods: the dev cluster, a
PostgreSQL server of its own per scenario (fsync off), `qgov operator` processes (SIGKILLed,
stopped, started again), executor processes (qiskit-aer) for the two-operator and outage
scenarios. The rolling update uses the tests' stand-in kubelet (pods go Running → Succeeded with
the executor's report for a one-circuit job) unless `--rolling-pods real`.

Scenarios:
- rolling: one operator admits a steady stream into a hard budget, a second operator process is
  started again and again (SIGKILL or SIGTERM after a moment); the cluster also holds `--existing`
  finished jobs.
- two-operators: two operators over a burst into a queue budget whose limit is raised twice,
  SIGKILLs at random points, once between the ledger admitting queued work and the job starting.
- outage-fast / outage-immediate: PostgreSQL stopped for `--outage-seconds` mid-burst with
  `pg_ctl stop -m fast` / `-m immediate`; no operator restart afterwards.

It counts and never asserts, so broken code gets figures too. `--operator-pythonpath DIR` puts
DIR first on the operators' PYTHONPATH (and runs that checkout's `qgov db upgrade`): how the
figures of the code before a fix are taken. This process (cluster, counting, audit) always runs
this checkout; the audit is `governance.audit` when this checkout has it.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qgov_dev import chaos  # noqa: E402
from qgov_dev.harness import chaos_environment  # noqa: E402

SCENARIOS = ("rolling", "two-operators", "outage-fast", "outage-immediate")


def operator_code(pythonpath: str | None) -> str:
    """Where the operator processes import governance from, asked with the same environment."""
    env = {**os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {})}
    out = subprocess.run([sys.executable, "-c", "import governance; print(governance.__file__)"], env=env,
                         cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True)
    return out.stdout.strip()


def run(name: str, args: argparse.Namespace, workdir: Path, operator_env: dict[str, str]) -> tuple[
        chaos.Findings | None, chaos.OutageSeen | None, str | None]:
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    try:
        if name == "rolling":
            with chaos_environment(workdir / name, pods=args.rolling_pods, operator_env=operator_env,
                                   start_operator=False) as env:
                total = int(args.rolling_rate * args.rolling_seconds)
                return chaos.rolling_update(env, pays_for=args.rolling_pays_for, rate=args.rolling_rate, total=total,
                                            existing=args.existing, seed=seed,
                                            final_timeout=args.final_timeout * 2), None, None
        if name == "two-operators":
            with chaos_environment(workdir / name, operator_env=operator_env) as env:
                return chaos.two_operators(env, burst=args.burst, first_room=args.first_room, seed=seed,
                                           kills=args.kills, final_timeout=args.final_timeout * 3), None, None
        mode = name.removeprefix("outage-")
        with chaos_environment(workdir / name, operator_env=operator_env) as env:
            found, seen = chaos.outage(env, mode=mode, pays_for=args.outage_pays_for, burst=args.outage_burst,
                                       during=args.outage_during, outage_s=args.outage_seconds,
                                       final_timeout=args.final_timeout, operators=args.outage_operators)
            return found, seen, None
    except Exception:  # noqa: BLE001 - a scenario that breaks is reported, and the others still run
        return None, None, traceback.format_exc(limit=6)


def cell(values: list[str] | None) -> str:
    return "n/a" if values is None else str(len(values))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated, from {', '.join(SCENARIOS)}")
    ap.add_argument("--seed", type=int, default=None, help="for the random kill points (printed when not given)")
    ap.add_argument("--rolling-pays-for", type=int, default=600, help="jobs the rolling update's budget pays for")
    ap.add_argument("--rolling-rate", type=float, default=20.0, help="jobs created per second")
    ap.add_argument("--rolling-seconds", type=float, default=40.0, help="how long the stream runs")
    ap.add_argument("--existing", type=int, default=3000, help="finished jobs already in the cluster")
    ap.add_argument("--rolling-pods", choices=("stand-in", "real"), default="stand-in")
    ap.add_argument("--burst", type=int, default=24, help="two-operators: jobs (real executor pods)")
    ap.add_argument("--first-room", type=int, default=8, help="two-operators: jobs the budget first pays for")
    ap.add_argument("--kills", type=int, default=6, help="two-operators: random SIGKILLs")
    ap.add_argument("--outage-pays-for", type=int, default=14)
    ap.add_argument("--outage-burst", type=int, default=12, help="jobs created before the database stops")
    ap.add_argument("--outage-during", type=int, default=4, help="jobs created while it is down")
    ap.add_argument("--outage-seconds", type=float, default=20.0)
    ap.add_argument("--outage-operators", type=int, choices=(1, 2), default=1, help="operators running side by side")
    ap.add_argument("--final-timeout", type=float, default=60.0,
                    help="a job not final this long after the database returns (x2 rolling, x3 two-operators) "
                         "is counted as stranded")
    ap.add_argument("--operator-pythonpath", default=None,
                    help="run the operators from this checkout (PYTHONPATH), e.g. a worktree of the code before a fix")
    args = ap.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenarios {sorted(unknown)}")
    operator_env = {"PYTHONPATH": args.operator_pythonpath} if args.operator_pythonpath else {}
    code = operator_code(args.operator_pythonpath)
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
          f"operators import {code}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="qgov-bench-chaos-"))
    rows = []
    for name in names:
        t0 = time.monotonic()
        found, seen, error = run(name, args, workdir, operator_env)
        took = time.monotonic() - t0
        print(f"\n--- {name} ({took:.0f} s)", flush=True)
        if error:
            print(error, flush=True)
        if found is not None:
            print(found.summary(), flush=True)
        if seen is not None:
            print(f"  during the outage: jobs with LedgerUnavailable=True {sorted(seen.jobs_unavailable)}, Warning "
                  f"Events {sorted(seen.warning_events)}, budget Ready seen {sorted(seen.budget_ready_reasons)}, "
                  f"new jobs without a status {sorted(seen.silent_new_jobs)}", flush=True)
        rows.append((name, found, seen, error, took))

    print(f"\noperators: {code}")
    head = ("scenario", "jobs", "budget pays for", "jobs with pods", "released while job lived",
            f"stranded ({args.final_timeout:g} s after)", "spent / limit (ledger)", "held at the end",
            "charged (job statuses)",
            "double charges", "audit problems", "told during outage (job/event/budget)", "recovery s", "wall s")
    table = [head]
    for name, f, seen, _error, took in rows:
        if f is None:
            table.append((name, "error", *["-"] * (len(head) - 3), f"{took:.0f}"))
            continue
        audit = cell(f.audit) if f.audit is not None else f"n/a (own count: {len(f.status_mismatch) + len(f.holding) + len(f.unreserved_pods)})"
        told = "-" if seen is None else "/".join("yes" if x else "no" for x in (
            seen.jobs_unavailable, seen.warning_events, seen.budget_not_ready))
        table.append((
            f.scenario, str(f.jobs), str(f.pays_for), str(f.with_pods), str(len(f.released_live)),
            str(len(f.stranded)), f"{f.spent_micro / 1e6:.2f} / {f.limit_micro / 1e6:.2f}", f"{f.held_micro / 1e6:.2f}",
            f"{f.status_charged_micro / 1e6:.2f}", str(len(f.double_charged)), audit, told,
            "-" if f.recovery_s is None else f"{f.recovery_s:.1f}", f"{took:.0f}"))
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in table[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    print("\nrecovery s: from the last disruption (stream end / last restart / database back) until every job is "
          "final (outage: and no LedgerUnavailable=True left, the budget Ready=True showing the ledger's balances); "
          "'-' = not within the wait. Overspend = spent (or what the statuses say was charged) above the limit.")


if __name__ == "__main__":
    main()
