"""Chaos scenarios, as a platform team meets them: the ledger on PostgreSQL, a second operator
process during a rolling update, SIGKILLs at random points, the database stopped mid-burst.

Each scenario is a plain function that drives the cluster and returns what it counted
(`Findings`); tests/operator/test_chaos_e2e.py asserts on those counts, and bench/chaos.py runs the
same functions at larger sizes and prints them (it counts, it never asserts, so it has figures for
broken code too)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import kubernetes
from kubernetes.client.rest import ApiException
from sqlalchemy import create_engine, text

from governance.budget.types import OPEN_STATES, ReservationState
from qgov_dev.harness import BELL, JOB_LABEL_KEY, NS, TERMINAL, ChaosEnv, Operator, condition

G, V = "qgov.dev", "v1alpha1"
PRICE_MICRO = 300_000  # priced-aer: a one-circuit job costs 0.30 USD, estimated and actual
ARCHIVE_NS = "archive"  # where the finished jobs of a busy cluster live (the rolling update lists them)


def usd(jobs: int) -> str:
    """The limit of a budget that pays for exactly `jobs` one-circuit jobs."""
    return f"{Decimal(jobs * PRICE_MICRO) / 1_000_000:.2f}"


def micro(amount: str) -> int:
    return int(Decimal(amount) * 1_000_000)


# ---------------------------------------------------------------------- what a scenario counted


@dataclass
class Findings:
    """What a scenario left behind, counted from the cluster and the ledger (no assertion here)."""

    scenario: str
    jobs: int = 0  # jobs the scenario created
    pays_for: int = 0  # one-circuit jobs the budget's final limit pays for
    with_pods: int = 0  # jobs that ever got an executor pod
    limit_micro: int = 0
    spent_micro: int = 0  # the ledger's spent
    held_micro: int = 0  # the ledger's held, after everything ended
    status_charged_micro: int = 0  # what the jobs' statuses say they were charged, summed
    released_live: list[str] = field(default_factory=list)  # jobs whose reservation was released while they lived
    stranded: list[str] = field(default_factory=list)  # jobs not in a final phase when counted
    holding: list[str] = field(default_factory=list)  # final jobs whose reservation still holds money
    double_charged: list[str] = field(default_factory=list)  # reserved or charged more than once
    extra_entries: list[str] = field(default_factory=list)  # more than one settle/release/late entry
    unreserved_pods: list[str] = field(default_factory=list)  # a pod for a job the ledger does not pay for
    status_mismatch: list[str] = field(default_factory=list)  # status says a charge the ledger does not hold
    pods_per_job: dict[str, list[str]] = field(default_factory=dict)
    phases: dict[str, int] = field(default_factory=dict)
    verify: list[str] | None = None
    audit: list[str] | None = None  # None when the audit could not run (see notes)
    recovery_s: float | None = None  # from the last disruption to everything final (None: not within the wait)
    seed: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def overspend_micro(self) -> int:
        return max(0, self.spent_micro - self.limit_micro)

    @property
    def status_overspend_micro(self) -> int:
        return max(0, self.status_charged_micro - self.limit_micro)

    def summary(self) -> str:
        recovery = "-" if self.recovery_s is None else f"{self.recovery_s:.1f}"
        lines = [(f"{self.scenario}: {self.jobs} jobs, budget pays for {self.pays_for}, {self.with_pods} got pods, "
                  f"phases {self.phases}, spent {self.spent_micro / 1e6:.2f} of {self.limit_micro / 1e6:.2f} "
                  f"(statuses say {self.status_charged_micro / 1e6:.2f}), held {self.held_micro / 1e6:.2f}, "
                  f"recovery {recovery} s, seed {self.seed}")]
        for name in ("released_live", "stranded", "holding", "double_charged", "extra_entries", "unreserved_pods",
                     "status_mismatch", "verify", "audit"):
            value = getattr(self, name)
            if value:
                lines.append(f"  {name} ({len(value)}): {value[:12]}")
        for key, value in self.notes.items():
            lines.append(f"  {key}: {value}")
        return "\n".join(lines)


def ledger_rows(url: str, full: bool = False) -> tuple[dict[str, Any], dict[str, dict[str, int]],
                                                      tuple[int, int, int]]:
    """The ledger as stored, in plain SQL (so it reads a ledger written by any version of qgov):
    reservations by key, entry kinds counted by reservation key, and the budget's (spent, held,
    limit) summed over its periods."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            reservations = {r.key: r for r in conn.execute(text(
                "SELECT key, state, amount_micro, actual_micro, job, overrun_micro FROM reservations"
                + (" ORDER BY id" if full else "")))}
            entries: dict[str, dict[str, int]] = {}
            for key, kind, n in conn.execute(text(
                    "SELECT reservation_key, kind, count(*) FROM ledger_entries WHERE reservation_key IS NOT NULL "
                    "GROUP BY reservation_key, kind")):
                entries.setdefault(key, {})[kind] = n
            spent, held, limit = conn.execute(text(
                "SELECT coalesce(sum(p.spent_micro), 0), coalesce(sum(p.held_micro), 0), coalesce(max(b.limit_micro), 0) "
                "FROM budgets b LEFT JOIN budget_periods p ON p.budget_id = b.id "
                "WHERE b.namespace = :ns AND b.name = :name"), {"ns": NS, "name": NS}).one()
    finally:
        engine.dispose()
    return reservations, entries, (int(spent), int(held), int(limit))


def foreign_code(env: ChaosEnv) -> bool:
    """The operators run another checkout of qgov (bench/chaos.py --operator-pythonpath): its
    ledger schema may differ from this checkout's models, so ledger calls go through its code."""
    return bool((env.operator_env or {}).get("PYTHONPATH"))


def in_operator_code(env: ChaosEnv, script: str, *args: str) -> str:
    """Run a Python snippet with the operators' code (their PYTHONPATH) in a process of its own."""
    out = subprocess.run([sys.executable, "-c", script, *args], env={**os.environ, **(env.operator_env or {})},
                         cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def run_audit(env: ChaosEnv) -> tuple[list[str] | None, str | None]:
    """qgov's own audit (governance.audit, `qgov ledger audit`) of the cluster against the
    ledger; (None, why) when it is not there or cannot run. A ledger written by another checkout
    is audited by the same rules (`audit.audit`) over its reservations read in plain SQL."""
    try:
        from governance import audit
        from governance.budget.ledger import Ledger
    except ImportError as exc:
        return None, f"no audit module: {exc}"
    if foreign_code(env):
        rows = list(ledger_rows(env.database_url, full=True)[0].values())
        jobs = env.custom.list_cluster_custom_object(G, V, "qiskitjobs")["items"]
        sessions = env.custom.list_cluster_custom_object(G, V, "qiskitsessions")["items"]
        return audit.audit(jobs, sessions, rows), None
    ledger = Ledger(env.database_url, check=False)
    try:
        problems, _, _ = audit.audit_cluster(env.custom, ledger)
        return problems, None
    except Exception as exc:  # noqa: BLE001 - counted, not raised: the bench reports broken code too
        return None, f"audit failed: {type(exc).__name__}: {exc}"
    finally:
        ledger.close()


VERIFY = """import json, sys
from governance.budget.ledger import Ledger
print(json.dumps(Ledger(sys.argv[1], check=False).verify()))
"""


def run_verify(env: ChaosEnv) -> list[str]:
    if foreign_code(env):
        return json.loads(in_operator_code(env, VERIFY, env.database_url))
    from governance.budget.ledger import Ledger

    ledger = Ledger(env.database_url, check=False)
    try:
        return ledger.verify()
    finally:
        ledger.close()


ADMIT_BY_HAND = """import json, sys
from governance.api.specs import parse_budget
from governance.budget.ledger import Ledger
ledger = Ledger(sys.argv[1])
_, changes = ledger.upsert_budget(parse_budget(sys.argv[2], sys.argv[2], json.loads(sys.argv[3])))
print(len(changes))
"""


def admit_by_hand(env: ChaosEnv, spec: dict[str, Any]) -> int:
    """What an operator's transaction for the budget's new spec does in the ledger (funds freed, the
    queue admitted), done here for an operator that died right after it; returns how many queued
    reservations it admitted."""
    if foreign_code(env):
        return int(in_operator_code(env, ADMIT_BY_HAND, env.database_url, NS, json.dumps(spec)))
    from governance.api.specs import parse_budget
    from governance.budget.ledger import Ledger

    ledger = Ledger(env.database_url, check=False)
    try:
        return len(ledger.upsert_budget(parse_budget(NS, NS, spec))[1])
    finally:
        ledger.close()


def count(env: ChaosEnv, scenario: str, names: list[str], *, recovery_s: float | None, seed: int | None = None,
          **notes: Any) -> Findings:
    """Count what the scenario left: the cluster's jobs and pods against the ledger."""
    jobs = {j["metadata"]["name"]: j for j in env.jobs()}
    mine = {n: jobs[n] for n in names if n in jobs}
    uids = {j["metadata"]["uid"]: n for n, j in jobs.items()}
    reservations, entries, (spent, held, limit) = ledger_rows(env.database_url)
    pods = env.pods_of_jobs()
    found = Findings(scenario, jobs=len(names), pays_for=limit // PRICE_MICRO, limit_micro=limit, spent_micro=spent,
                     held_micro=held, recovery_s=recovery_s, seed=seed, notes=dict(notes))
    found.pods_per_job = {n: sorted(p) for n, p in pods.items() if n in mine}
    found.with_pods = len(found.pods_per_job)
    for name in names:
        job = mine.get(name)
        status = (job or {}).get("status") or {}
        phase = status.get("phase") or "(none)"
        found.phases[phase] = found.phases.get(phase, 0) + 1
        if job is None:
            found.stranded.append(f"{name}: gone")
            continue
        r = reservations.get(job["metadata"]["uid"])
        if phase not in TERMINAL:
            found.stranded.append(f"{name}: {phase}")
        elif r is not None and r.state in OPEN_STATES:
            found.holding.append(f"{name}: {phase}, reservation {r.state}")
        if name in found.pods_per_job and (r is None or r.state not in (ReservationState.HELD, ReservationState.SETTLED)):
            found.unreserved_pods.append(f"{name}: pods {found.pods_per_job[name]}, reservation "
                                         f"{r.state if r is not None else 'none'}")
        if status.get("actualCost") is not None:
            charged = micro(status["actualCost"])
            found.status_charged_micro += charged
            if status.get("budget") and (r is None or r.state != ReservationState.SETTLED or r.actual_micro != charged):
                found.status_mismatch.append(
                    f"{name}: status says charged {status['actualCost']}, ledger has "
                    + (f"{r.state} (actual {r.actual_micro})" if r is not None else "no reservation"))
    for key, kinds in entries.items():
        who = uids.get(key) or (reservations[key].job if key in reservations else key)
        if kinds.get("release") and key in uids:
            found.released_live.append(f"{who}: released while the job existed ({kinds})")
        if kinds.get("reserve", 0) > 1 or kinds.get("settle", 0) + kinds.get("late", 0) > 1:
            found.double_charged.append(f"{who}: {kinds}")
        if kinds.get("settle", 0) + kinds.get("release", 0) + kinds.get("late", 0) > 1:
            found.extra_entries.append(f"{who}: {kinds}")
    found.verify = run_verify(env)
    found.audit, why = run_audit(env)
    if why:
        found.notes["audit"] = why
    return found


# ---------------------------------------------------------------------- drivers


def job_body(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{G}/{V}", "kind": "QiskitJob", "metadata": {"name": name},
            "spec": {"backend": "priced-aer", "circuits": [BELL], "shots": 100}}


class JobStream(threading.Thread):
    """Creates one-circuit jobs at a steady rate, through a client of its own, until `total` exist."""

    def __init__(self, env: ChaosEnv, prefix: str, rate: float, total: int) -> None:
        super().__init__(name=f"stream-{prefix}", daemon=True)
        self.env, self.prefix, self.rate, self.total = env, prefix, rate, total
        self.names: list[str] = []
        self.errors: list[str] = []

    def run(self) -> None:
        api = kubernetes.config.new_client_from_config(config_file=str(self.env.cluster.kubeconfig))
        custom = kubernetes.client.CustomObjectsApi(api)
        t0 = time.monotonic()
        try:
            for i in range(self.total):
                delay = t0 + i / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                name = f"{self.prefix}-{i:04d}"
                for _ in range(5):
                    try:
                        custom.create_namespaced_custom_object(G, V, NS, "qiskitjobs", job_body(name))
                        break
                    except ApiException as exc:
                        if exc.status == 409:
                            break
                        self.errors.append(f"{name}: {exc.status}")
                        time.sleep(0.2)
                self.names.append(name)
        finally:
            api.close()


def wait_final(env: ChaosEnv, names: list[str], timeout: float) -> float | None:
    """Seconds until every job is in a final phase, or None after `timeout`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            phases = {j["metadata"]["name"]: (j.get("status") or {}).get("phase") for j in env.jobs()}
            if all(phases.get(n) in TERMINAL for n in names):
                return time.monotonic() - t0
        except ApiException:
            pass
        time.sleep(0.5)
    return None


def fill_archive(env: ChaosEnv, count_: int) -> None:
    """`count_` finished jobs in another namespace, as a busy cluster has (straight into the dev
    cluster's store, on its loop: thousands of creates through the API would take a minute). A
    start-up that lists every job takes longer the more there are."""
    if count_ <= 0:
        return
    env.core.create_namespace({"metadata": {"name": ARCHIVE_NS}})

    def fill(cluster: Any) -> None:
        store = cluster.store
        rtype = store.find_type(G, V, "qiskitjobs")
        for i in range(count_):
            obj = store.create(rtype, ARCHIVE_NS, job_body(f"done-{i:05d}"))
            store.replace(rtype, ARCHIVE_NS, obj["metadata"]["name"], {**obj, "status": {
                "phase": "Succeeded", "message": "succeeded on attempt 1; charged 0.30 USD", "estimatedCost": "0.30",
                "actualCost": "0.30", "currency": "USD", "attempts": 1, "completionTime": "2026-01-01T00:00:00Z",
                "conditions": [{"type": "Complete", "status": "True", "reason": "Completed",
                                "message": "succeeded on attempt 1", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}},
                subresource="status")

    assert env.holder is not None
    env.holder.call(fill, env.cluster)


def budget_obj(env: ChaosEnv) -> dict[str, Any] | None:
    try:
        return env.get("qiskitbudgets", NS)
    except ApiException:
        return None


def budget_caught_up(env: ChaosEnv) -> bool:
    """The budget says Ready=True and its status shows the ledger's spent and reserved."""
    body = budget_obj(env)
    ready = condition(body, "Ready")
    if not ready or ready.get("status") != "True":
        return False
    _, _, (spent, held, _) = ledger_rows(env.database_url)
    status = (body or {}).get("status") or {}
    return micro(status.get("spent") or "0") == spent and micro(status.get("reserved") or "0") == held


# ---------------------------------------------------------------------- scenario 1: a rolling update


def rolling_update(env: ChaosEnv, *, pays_for: int, rate: float, total: int, existing: int, seed: int,
                   final_timeout: float = 120) -> Findings:
    """One operator admits a steady stream of jobs into a hard budget that pays for `pays_for`, while
    a second operator process starts again and again (a rolling update that keeps failing over),
    each time SIGKILLed or stopped after a moment. The cluster holds `existing` finished jobs too."""
    rng = random.Random(seed)
    fill_archive(env, existing)
    if env.operator.proc is None:  # started after the archive is there: it lists it once, as at a restart
        env.operator.start()
    env.budget(usd(pays_for))
    second = env.new_operator("2")
    stream = JobStream(env, "r", rate, total)
    stream.start()
    starts = kills = 0
    at: list[int] = []  # how many jobs the stream had created at each start of the second operator
    while stream.is_alive():
        second.start()
        starts += 1
        at.append(len(stream.names))
        time.sleep(rng.uniform(0.05, 0.8))
        if rng.random() < 0.7:  # SIGTERM lets kopf shut down, which takes seconds: fewer of those
            second.kill()
            kills += 1
        else:
            second.stop()
        time.sleep(rng.uniform(0.0, 0.5))
    stream.join()
    recovery = wait_final(env, stream.names, final_timeout)
    vanished = sum(op.log.read_text(errors="replace").count("released the reservation of vanished job")
                   for op in env.operators or [] if op.log.exists())
    return count(env, "rolling update", stream.names, recovery_s=recovery, seed=seed, second_operator_starts=starts,
                 starts_while_admitting=sum(1 for n in at if n < pays_for), stream_position_at_starts=at,
                 sigkills=kills, logged_vanished_releases=vanished, existing_jobs=existing,
                 stream_errors=stream.errors[:5])


# ---------------------------------------------------------------------- scenario 2: two operators, kill -9


def two_operators(env: ChaosEnv, *, burst: int, first_room: int, seed: int, kills: int = 4,
                  final_timeout: float = 180) -> Findings:
    """Two operators side by side over a burst into a queue budget that first pays for `first_room`
    jobs; its limit is raised twice, until it pays for all. Meanwhile one operator or the other is
    SIGKILLed at random moments and started again; once, both are killed right after the ledger
    admitted queued work and before either started it (the ledger's transaction is done by hand,
    as the dead operator's last one), and once one is killed a random moment after a limit raise."""
    rng = random.Random(seed)
    env.budget(usd(first_room), enforcement="queue")
    ops: list[Operator] = [env.operator, env.new_operator("2")]
    ops[1].start()
    names = [f"b-{i:03d}" for i in range(burst)]
    for name in names:
        env.job(name, shots=100)
    events: list[str] = []

    def random_kills(n: int) -> None:
        for _ in range(n):
            time.sleep(rng.uniform(0.3, 3.0))
            victim = rng.randrange(len(ops))
            ops[victim].kill()
            events.append(f"kill -9 operator {victim + 1}")
            time.sleep(rng.uniform(0.2, 2.0))
            ops[victim].start()

    def raise_limit(jobs: int) -> dict[str, Any]:
        spec = dict(env.get("qiskitbudgets", NS)["spec"], limit=usd(jobs))
        env.custom.patch_namespaced_custom_object(G, V, NS, "qiskitbudgets", NS, {"spec": {"limit": usd(jobs)}})
        return spec

    random_kills(kills // 2)
    # the window between the ledger admitting queued work and a job starting: both operators die
    # right after the transaction that raised the limit and admitted the queue
    second_room = (first_room + burst) // 2
    for op in ops:
        op.kill()
    admitted = admit_by_hand(env, raise_limit(second_room))
    events.append(f"both killed after the ledger admitted {admitted} queued")
    time.sleep(rng.uniform(0.5, 2.0))
    for op in rng.sample(ops, len(ops)):
        op.start()
    random_kills(kills - kills // 2)
    # a limit raise, and one operator killed a random moment after it
    raise_limit(burst)
    time.sleep(rng.uniform(0.0, 0.4))
    victim = rng.randrange(len(ops))
    ops[victim].kill()
    events.append(f"kill -9 operator {victim + 1} after the last raise")
    time.sleep(rng.uniform(0.2, 1.5))
    ops[victim].start()
    recovery = wait_final(env, names, final_timeout)
    return count(env, "two operators, kill -9", names, recovery_s=recovery, seed=seed, events=events,
                 admitted_in_window=admitted)


# ---------------------------------------------------------------------- scenario 3: PostgreSQL stops


@dataclass
class OutageSeen:
    """What a user could see while the database was down, and after."""

    jobs_unavailable: set[str] = field(default_factory=set)  # showed LedgerUnavailable=True
    warning_events: set[str] = field(default_factory=set)  # got a Warning Event LedgerUnavailable
    budget_not_ready: bool = False  # the budget showed Ready=False, reason LedgerUnavailable
    budget_ready_reasons: set[str] = field(default_factory=set)  # Ready status/reason seen during the outage
    silent_new_jobs: set[str] = field(default_factory=set)  # created during the outage, no status at its end


def observe_outage(env: ChaosEnv, seen: OutageSeen) -> None:
    for job in env.jobs():
        c = condition(job, "LedgerUnavailable")
        if c and c.get("status") == "True":
            seen.jobs_unavailable.add(job["metadata"]["name"])
    ready = condition(budget_obj(env), "Ready")
    if ready:
        seen.budget_ready_reasons.add(f"{ready.get('status')}/{ready.get('reason')}")
        if ready.get("status") == "False" and ready.get("reason") == "LedgerUnavailable":
            seen.budget_not_ready = True
    for event in env.core.list_namespaced_event(NS).items:
        if event.reason == "LedgerUnavailable" and event.type == "Warning" and event.involved_object is not None:
            seen.warning_events.add(event.involved_object.name)


def outage(env: ChaosEnv, *, mode: str, pays_for: int, burst: int, during: int, outage_s: float = 20,
           final_timeout: float = 60, operators: int = 1) -> tuple[Findings, OutageSeen]:
    """A burst into a hard budget; once its first pod runs, PostgreSQL stops (`pg_ctl stop -m
    mode`) for `outage_s` seconds, while pods finish and `during` new jobs arrive. Then it starts
    again and nobody restarts an operator: counted `final_timeout` seconds later at the most.
    `operators=2`: a second operator runs side by side throughout."""
    assert env.pg is not None
    if operators == 2:
        env.new_operator("2").start()
    env.budget(usd(pays_for))
    names = [f"o-{i:03d}" for i in range(burst)]
    for name in names:  # a stream, so that pods finish one after the other, most during the outage
        env.job(name, shots=100)
        time.sleep(0.5)
    env.wait(lambda: any((env.status(n).get("phase") == "Succeeded") for n in names), "a job done", timeout=180)
    seen = OutageSeen()
    finished_before = sum(1 for p in env.core.list_namespaced_pod(NS, label_selector=JOB_LABEL_KEY).items
                          if p.status.phase in ("Succeeded", "Failed"))
    env.pg.halt(mode)
    down = time.monotonic()
    late = [f"d-{i:03d}" for i in range(during)]
    created = 0
    while time.monotonic() - down < outage_s:
        if created < during and time.monotonic() - down >= 2 + created * (outage_s - 8) / max(1, during):
            env.job(late[created], shots=100)
            created += 1
        try:
            observe_outage(env, seen)
        except ApiException:
            pass
        time.sleep(0.5)
    seen.silent_new_jobs = {n for n in late[:created] if not env.status(n)}
    still_running = [n for n in names if env.status(n).get("phase") in ("Admitted", "Running")]
    finished_pods = sum(1 for p in env.core.list_namespaced_pod(NS, label_selector=JOB_LABEL_KEY).items
                        if p.status.phase in ("Succeeded", "Failed")) - finished_before
    env.pg.resume()
    all_names = names + late[:created]
    recovered = recovery_marks(env, all_names, final_timeout)
    recovery = max(recovered.values()) if len(recovered) == len(RECOVERY_MARKS) else None
    found = count(env, f"PostgreSQL stopped {outage_s:g} s (-m {mode})" + (", 2 operators" if operators == 2 else ""),
                  all_names, recovery_s=recovery,
                  mode=mode, jobs_admitted_or_running_at_restart=len(still_running),
                  pods_finished_during_outage=finished_pods,
                  seconds_after_restart={k: round(v, 1) for k, v in recovered.items()})
    return found, seen


RECOVERY_MARKS = ("budget Ready", "jobs final", "LedgerUnavailable cleared", "budget status current")


def recovery_marks(env: ChaosEnv, names: list[str], timeout: float) -> dict[str, float]:
    """Seconds after the database returned until: the budget says Ready=True; every job is final;
    no job says LedgerUnavailable=True; the budget's status shows the ledger's balances. A mark
    missing from the answer was not reached within `timeout`."""
    t0 = time.monotonic()
    marks: dict[str, float] = {}
    while time.monotonic() - t0 < timeout and len(marks) < len(RECOVERY_MARKS):
        try:
            jobs = {j["metadata"]["name"]: j for j in env.jobs()}
            now = time.monotonic() - t0
            ready = condition(budget_obj(env), "Ready")
            if ready and ready.get("status") == "True":
                marks.setdefault("budget Ready", now)
            if all(((jobs.get(n) or {}).get("status") or {}).get("phase") in TERMINAL for n in names):
                marks.setdefault("jobs final", now)
            if not any((c := condition(j, "LedgerUnavailable")) and c.get("status") == "True" for j in jobs.values()):
                marks.setdefault("LedgerUnavailable cleared", now)
            if "jobs final" in marks and budget_caught_up(env):
                marks.setdefault("budget status current", now)
        except ApiException:
            pass
        time.sleep(0.5)
    return marks
