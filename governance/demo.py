"""The ledger demo: real circuits priced on a real backend model, reserved, run, settled, reported.

Until the operator exists this is the README's main job: it shows every ledger step a
QiskitJob will go through, on a throwaway SQLite file unless a database URL is given.
"""

from __future__ import annotations

import tempfile
import uuid
from decimal import Decimal
from pathlib import Path

DEMO_NAMESPACE = "team-a"
DEMO_CIRCUITS = {
    "bell": 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; h q[0]; cx q[0],q[1]; measure q -> c;',
    "ghz3": 'OPENQASM 3.0; include "stdgates.inc"; qubit[3] q; bit[3] c; h q[0]; cx q[0], q[1]; cx q[1], q[2]; '
            "c = measure q;",
}
DEMO_JOBS = [("bell-1k", "bell", 1000), ("ghz-2k", "ghz3", 2000), ("bell-4k", "bell", 4000),
             ("ghz-4k", "ghz3", 4000), ("bell-8k", "bell", 8000)]


def run_ledger_demo(database_url: str | None = None) -> str:
    from qiskit import qasm2, qasm3
    from qiskit_aer import AerSimulator
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    from .budget import db
    from .budget.costmodel import amount_in_unit
    from .providers.estimate import estimate_usage, shape_on_target
    from .providers.ibm import IBM_PAY_AS_YOU_GO
    from .budget.ledger import Ledger
    from .budget.money import format_amount
    from .budget.report import parse_window, render
    from .budget.types import BudgetSpec, ReserveRequest

    url = database_url or f"sqlite:///{Path(tempfile.mkdtemp(prefix='qgov-demo-')) / 'ledger.db'}"
    db.upgrade(url)
    ledger = Ledger(url)
    lines = [f"ledger: {db.redact(db.normalise_url(url))}"]
    ledger.upsert_budget(BudgetSpec(DEMO_NAMESPACE, DEMO_NAMESPACE, 10_000_000, "USD", "monthly", "hard", (50, 80)))
    lines.append("budget team-a/team-a: limit 10.00 USD per month, hard enforcement, warnings at 50% and 80%")

    backend = FakeManilaV2()
    simulator = AerSimulator.from_backend(backend)
    parsed = {name: (qasm3.loads(text) if text.startswith("OPENQASM 3") else qasm2.loads(text))
              for name, text in DEMO_CIRCUITS.items()}
    for job, circuit_name, shots in DEMO_JOBS:
        shape = shape_on_target(parsed[circuit_name], backend.target)
        estimate = amount_in_unit(estimate_usage([shape], shots, simulator=False), IBM_PAY_AS_YOU_GO, "USD")
        key = str(uuid.uuid5(uuid.NAMESPACE_URL, f"qgov-demo/{job}"))
        outcome = ledger.reserve(ReserveRequest(key, DEMO_NAMESPACE, DEMO_NAMESPACE, estimate, job=job,
                                                backend="fake_manila"))
        if not outcome.admitted:
            lines.append(f"{job:8}  estimate {format_amount(estimate, 'USD'):>11}  REFUSED: {outcome.message}")
            continue
        from qiskit import transpile

        counts = simulator.run(transpile(parsed[circuit_name], simulator, seed_transpiler=0), shots=shots,
                               seed_simulator=7).result().get_counts()
        modelled = estimate_usage([shape], shots, simulator=False, safety=Decimal(1))
        settled = ledger.settle(key, amount_in_unit(modelled, IBM_PAY_AS_YOU_GO, "USD"))
        top = ", ".join(f"{k}:{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:2])
        warn = f"  (crossed {', '.join(f'{t}%' for t in outcome.thresholds_crossed)})" if outcome.thresholds_crossed else ""
        lines.append(f"{job:8}  estimate {format_amount(estimate, 'USD'):>11}  admitted, ran ({top}), "
                     f"settled {format_amount(settled.actual_micro, 'USD')}, released "
                     f"{format_amount(settled.released_micro, 'USD')}{warn}")
    problems = ledger.verify()
    lines += ["", render(ledger.report(DEMO_NAMESPACE, parse_window(None)), "table"), "",
              "ledger check: " + ("every balance equals its recomputation from the entry log" if not problems
                                  else "; ".join(problems))]
    ledger.close()
    return "\n".join(lines)
