"""Bounded pricing on a running operator: a circuit whose nested gate definitions expand to millions
of operations is Failed at once, with the limit's name, nothing reserved, the operator's memory
far from its 1 GiB limit, and the other jobs admitted meanwhile; a circuit that passes the count
but cannot be transpiled in time is Failed when its worker is killed, and the next job is priced."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from .conftest import BELL, NS, Env

HEADER = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\ncreg c[1];\n'
MIB = 1 << 20


def nested(levels: int) -> str:
    """`gate g1 a { g0 a; g0 a; }` ... `levels` deep: 2**levels operations in a few hundred bytes."""
    lines = [HEADER, "gate g0 a { x a; }\n"]
    lines += [f"gate g{k} a {{ g{k - 1} a; g{k - 1} a; }}\n" for k in range(1, levels + 1)]
    return "".join(lines) + f"g{levels} q[0];\nmeasure q -> c;\n"


def tree_rss(pid: int) -> int:
    """Memory of `pid` and every process under it (its pricing workers and their forkserver),
    bytes: what a pod's memory limit counts. Proportional set sizes, so that the pages the
    workers share with their forkserver count once, as a cgroup counts them."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            total += int(rollup.split("\nPss:", 1)[1].split()[0]) * 1024
        except (OSError, IndexError, ValueError):
            pass
    return total


class PeakRss:
    """Samples tree_rss every 50 ms in a thread; `peak` is the largest seen."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.done = pid, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.thread.join()


def failed_condition(status: dict) -> dict:
    return next(c for c in status["conditions"] if c["type"] == "Failed")


@pytest.mark.no_pod_runner
def test_a_nested_definition_circuit_is_failed_at_once_while_other_jobs_are_admitted(env: Env) -> None:
    env.budget("100.00")
    env.backend("manila", provider="fake", device="fake_manila", pricing={"perQPUSecond": "1.60"})
    assert env.operator.proc is not None
    bells = [f"bell-{i}" for i in range(12)]
    with PeakRss(env.operator.proc.pid) as rss:
        before = rss.peak or tree_rss(env.operator.proc.pid)
        env.job("bell-0")
        started = time.monotonic()
        env.job("nested", backend="manila", circuits=[nested(22)])  # 4,194,305 operations, for a device
        for name in bells[1:]:
            env.job(name)
        statuses = env.wait(lambda: (lambda s: s if all(s[n].get("phase") == "Admitted" for n in bells)
                                     and s["nested"].get("phase") == "Failed" else None)(
                                         {n: env.status(n) for n in ["nested", *bells]}), "the jobs decided")
        decided = time.monotonic() - started
    failed = failed_condition(statuses["nested"])
    assert (failed["status"], failed["reason"]) == ("True", "TooManyOperations")
    assert failed["message"] == ("spec.circuits[0]: expands to 4194305 operations, above the limit of 1000000 "
                                 "(QGOV_MAX_EXPANDED_OPERATIONS)")
    assert statuses["nested"]["message"] == failed["message"]
    assert "estimatedCost" not in statuses["nested"]
    assert decided < 30, decided  # before: ~54 s of CPU and 4.1 GiB, then an OOM kill
    assert rss.peak < 600 * MIB, (before / MIB, rss.peak / MIB)  # the Deployment's limit is 1 GiB
    events = env.core.list_namespaced_event(NS, field_selector="involvedObject.name=nested").items
    assert any(e.reason == "TooManyOperations" and e.type == "Warning" for e in events)
    ledger = env.ledger()
    try:  # the twelve Bell jobs hold 0.30 each; the nested one nothing
        balance = ledger.balance(NS, NS)
        assert (balance.spent_micro, balance.held_micro) == (0, 12 * 300_000)
        assert set(ledger.open_reservations()) == {env.get("qiskitjobs", n)["metadata"]["uid"] for n in bells}
    finally:
        ledger.close()


@pytest.mark.no_pod_runner
@pytest.mark.operator_env(QGOV_MAX_EXPANDED_OPERATIONS="10000000", QGOV_PRICING_TIMEOUT_SECONDS="3")
def test_a_transpile_over_the_deadline_kills_its_worker_and_the_job_fails_naming_the_limit(env: Env) -> None:
    """18 levels (262,145 operations) pass the raised cap; transpiling them for fake_manila takes far
    more than 3 s: the worker is killed, the job Failed, nothing reserved, and pricing goes on."""
    env.budget("100.00")
    env.backend("manila", provider="fake", device="fake_manila", pricing={"perQPUSecond": "1.60"})
    env.job("slow", backend="manila", circuits=[nested(18)])
    slow = env.wait_terminal(["slow"], timeout=120)["slow"]
    failed = failed_condition(slow)
    assert (failed["reason"], failed["message"]) == (
        "PricingTimeout", "spec.circuits[0]: pricing took more than 3 s (QGOV_PRICING_TIMEOUT_SECONDS)")
    env.job("after", backend="manila", circuits=[BELL])  # a new text: priced by a new worker
    env.wait(lambda: env.status("after").get("phase") == "Admitted", "the next job admitted")
    env.job("again", backend="manila", circuits=[nested(18)])  # known: refused without a worker's time
    again = env.wait_terminal(["again"], timeout=30)["again"]
    assert failed_condition(again)["reason"] == "PricingTimeout"
    ledger = env.ledger()
    try:
        assert ledger.open_reservations() == [env.get("qiskitjobs", "after")["metadata"]["uid"]]
    finally:
        ledger.close()
