"""Bounded pricing: the expanded size of a circuit counted from its text (governance/opcount.py),
the cap admission puts on it before qiskit parses anything, and the worker processes whose CPU
and memory limits stop what slips past the count (governance/pricing.py). Real qiskit, real
worker processes."""

from __future__ import annotations

import time

import pytest
from qiskit import qasm2, qasm3

from governance import pricing
from governance.assessment import Estimate, Problem, assess
from governance.api.specs import parse_backend, parse_job
from governance.opcount import SATURATED, Uncountable, count_operations
from governance.providers.estimate import expanded_operations

AER = parse_backend("aer", {"provider": "aer", "name": "aer_simulator", "pricing": {"perCPUSecond": "0.50"}})
MANILA = parse_backend("manila", {"provider": "fake", "name": "fake_manila", "pricing": {"perQPUSecond": "1.60"}})
QASM2 = 'OPENQASM 2.0;\ninclude "qelib1.inc";\n'
QASM3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'


def nested(levels: int, header: str = QASM2, measured: bool = True) -> str:
    """`gate g1 a { g0 a; g0 a; }` ... `levels` deep, applied once: 2**levels operations."""
    lines = [header, "qreg q[1];\ncreg c[1];\n" if header == QASM2 else "qubit[1] q;\nbit[1] c;\n",
             "gate g0 a { x a; }\n"]
    lines += [f"gate g{k} a {{ g{k - 1} a; g{k - 1} a; }}\n" for k in range(1, levels + 1)]
    lines.append(f"g{levels} q[0];\n")
    if measured:
        lines.append("measure q -> c;\n" if header == QASM2 else "c = measure q;\n")
    return "".join(lines)


def job(*texts: str, **spec: object) -> object:
    return parse_job({"backend": "x", "circuits": list(texts), "shots": 100, **spec})


@pytest.fixture(autouse=True)
def empty_caches() -> None:
    pricing.clear_caches()


# ------------------------------------------------------------------ the count


def test_nested_gate_definitions_are_counted_without_expanding_them() -> None:
    assert count_operations(nested(18)).operations == 2**18 + 1  # + the measurement
    assert count_operations(nested(22, QASM3)).operations == 2**22 + 1
    started = time.process_time()
    deep = count_operations(nested(200, measured=False))  # 2**200: saturates, and at once
    assert deep.operations == SATURATED
    assert time.process_time() - started < 1.0


@pytest.mark.parametrize("text", [
    QASM2 + "qreg q[5];\ncreg c[5];\nh q;\ncx q[0],q[1];\nbarrier q;\nmeasure q -> c;\n",
    QASM2 + "qreg a[3];\nqreg b[4];\ncreg c[3];\ngate pair x, y { h x; cx x, y; }\npair a[0], b;\npair a, b[1];\n"
            "measure a -> c;\nif (c==1) x a;\nreset b;\n",
    QASM2 + "qreg q[2];\ngate three(t) a { rz(t) a; rx(t) a; ry(t) a; }\ngate six a, b { three(pi) a; three(pi/2) b; }\n"
            "six q[0], q[1];\nu3(0.1,0.2,0.3) q;\n",
    QASM3 + "qubit[4] q;\nbit[4] c;\ngate g a { h a; x a; }\ng q;\nc = measure q;\n",
    QASM3 + "qubit[3] q;\nbit[3] c;\nfor int i in [0:9] { h q[0]; cx q[0], q[1]; }\nfor int i in [0:2:8] { x q; }\n"
            "for int i in {1, 5, 7} { z q[2]; }\nc = measure q;\n",
    QASM3 + "qubit[2] q;\nbit[2] c;\nc[0] = measure q[0];\nif (c[0]) { x q; } else { h q[1]; h q[0]; }\n",
    QASM3 + "qubit[3] q;\nlet a = q[0:1];\nh a;\nctrl @ x q[0], q[1];\n",
])
def test_the_count_is_what_qiskit_builds_once_every_definition_and_loop_is_expanded(text: str) -> None:
    circuit = qasm3.loads(text) if text.startswith("OPENQASM 3") else qasm2.loads(
        text, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
    counted = count_operations(text)
    assert counted.operations == expanded_operations(circuit)
    assert counted.bits == circuit.num_qubits + circuit.num_clbits


def test_broadcasting_counts_one_operation_per_qubit_of_the_widest_register() -> None:
    assert count_operations(QASM2 + "qreg q[1000];\nh q;\n").operations == 1000
    assert count_operations(QASM3 + "qubit[50] q;\nqubit[70] r;\ncx q, r[3];\ncx q[1], r;\n").operations == 120
    assert count_operations(QASM3 + "qubit[10] q;\nh q[2:7];\n").operations == 6
    assert count_operations(QASM2 + "qreg q[100000000];\n").bits == 100_000_000


def test_loops_multiply_their_body_by_their_bounds() -> None:
    assert count_operations(QASM3 + "const int n = 100;\nqubit[4] q;\nfor int i in [0:n-1] { h q; }\n"
                            ).operations == 400
    loops = QASM3 + "qubit[1] q;\nfor int i in [1:1000] { for int j in [1:1000] { for int k in [1:1000] { x q; } } }\n"
    assert count_operations(loops).operations == 10**9
    gates = QASM3 + "qubit[2] q;\ngate g a { x a; x a; x a; }\nfor int i in [0:9] { g q; }\n"
    assert count_operations(gates).operations == 60
    assert count_operations(QASM3 + "qubit[1] q;\nfor int i in [5:1] { x q; }\n").operations == 0


def test_subroutines_cost_their_body_per_call() -> None:
    text = QASM3 + "qubit[8] q;\nbit c;\ndef layer(qubit[8] r) { h r; cx r[0], r[1]; }\nlayer(q);\nlayer(q);\n" \
                   "def m(qubit a) -> bit { h a; return measure a; }\nc = m(q[0]);\n"
    assert count_operations(text).operations == 2 * 9 + 2


def test_a_loop_without_a_known_bound_is_refused_with_its_line() -> None:
    with pytest.raises(Uncountable, match="while loop cannot be priced") as caught:
        count_operations(QASM3 + "qubit[1] q;\nbit c;\n// a comment\nwhile (c) {\n  x q;\n}\n")
    assert caught.value.line == 6
    with pytest.raises(Uncountable, match="bounds must be integers written in the program") as caught:
        count_operations(QASM3 + "qubit[1] q;\ninput int n;\nfor int i in [0:n] { x q; }\n")
    assert caught.value.line == 5


@pytest.mark.parametrize("junk", ["", "}}}", "{" * 10, "gate", "OPENQASM 3.0; for", "((((", "qreg q[", "let",
                                  "measure ->", "x q[0:;", "def f(", "gate g a { g a; }\ng q;", "pow(", '"abc'])
def test_malformed_text_is_counted_and_left_to_qiskit_s_parser(junk: str) -> None:
    assert count_operations(junk).operations <= 1


@pytest.mark.parametrize("body", ["if (true) {" * 100 + "x q;" + "}" * 100, "if (true) " * 5000 + "x q;",
                                  "for int i in [0:1] " * 5000 + "x q;", "{" * 5000 + "x q;" + "}" * 5000])
def test_blocks_nested_too_deep_are_refused(body: str) -> None:
    with pytest.raises(Uncountable, match="nest more than 64 deep"):
        count_operations(QASM3 + "qubit q;\n" + body)


# ------------------------------------------------------------------ admission


def test_a_circuit_expanding_to_four_million_operations_is_refused_before_qiskit_sees_it() -> None:
    tasks = pricing.worker_tasks
    started = time.monotonic()
    refused = assess(job(nested(22)), MANILA, "USD")
    assert refused == Problem("TooManyOperations", "spec.circuits[0]: expands to 4194305 operations, above the "
                                                   "limit of 1000000 (QGOV_MAX_EXPANDED_OPERATIONS)")
    assert time.monotonic() - started < 10
    assert pricing.worker_tasks == tasks  # nothing was parsed
    ok = assess(job(nested(10)), MANILA, "USD")
    assert isinstance(ok, Estimate)


def test_the_cap_is_per_job_too_and_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    wide = QASM2 + "qreg q[2];\ncreg c[2];\n" + "h q;\n" * 3000 + "measure q -> c;\n"  # 6002 operations
    assert isinstance(assess(job(wide), AER, "USD"), Estimate)
    many = assess(job(*([wide] * 200)), AER, "USD")
    assert many == Problem("TooManyOperations", "spec.circuits: the 200 circuits expand to 1200400 operations, "
                                                "above the limit of 1000000 (QGOV_MAX_EXPANDED_OPERATIONS)")
    monkeypatch.setenv("QGOV_MAX_EXPANDED_OPERATIONS", "5000")
    assert assess(job(wide), AER, "USD") == Problem(
        "TooManyOperations", "spec.circuits[0]: expands to 6002 operations, above the limit of 5000 "
                             "(QGOV_MAX_EXPANDED_OPERATIONS)")
    huge = assess(job(QASM2 + "qreg q[1];\nqreg r[100000000];\ncreg c[1];\nmeasure q -> c;\n"), AER, "USD")
    assert huge == Problem("TooManyOperations", "spec.circuits[0]: declares 100000002 qubits and bits, above the "
                                                "limit of 5000 (QGOV_MAX_EXPANDED_OPERATIONS)")


def test_an_unbounded_loop_is_refused_naming_the_circuit_and_line() -> None:
    text = QASM3 + "qubit[1] q;\nbit[1] c;\nc[0] = measure q[0];\nwhile (c[0]) { x q[0]; c[0] = measure q[0]; }\n"
    refused = assess(job(nested(2), text), AER, "USD")
    assert isinstance(refused, Problem) and refused.reason == "CannotPrice"
    assert refused.message.startswith("spec.circuits[1] line 6: a while loop cannot be priced")


def test_the_aer_estimate_counts_a_custom_gate_s_operations() -> None:
    """A custom gate of 64 x's costs what 64 x's written out cost (before, it counted 1)."""
    defined = QASM2 + "qreg q[1];\ncreg c[1];\ngate g a { " + "x a; " * 64 + "}\ng q[0];\nmeasure q -> c;\n"
    written = QASM2 + "qreg q[1];\ncreg c[1];\n" + "x q[0];\n" * 64 + "measure q -> c;\n"
    custom, inline = assess(job(defined, shots=100_000), AER, "USD"), assess(job(written, shots=100_000), AER, "USD")
    assert isinstance(custom, Estimate) and isinstance(inline, Estimate)
    assert custom.usage.cpu_seconds == inline.usage.cpu_seconds
    single = assess(job(QASM2 + "qreg q[1];\ncreg c[1];\nx q[0];\nmeasure q -> c;\n", shots=100_000), AER, "USD")
    assert isinstance(single, Estimate) and custom.usage.cpu_seconds > single.usage.cpu_seconds


def test_a_slow_transpile_is_killed_at_the_deadline_and_the_pool_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """18 levels (262,145 operations) pass a raised cap, but transpiling them for a device takes far
    more than 2 s of CPU: the worker is killed, the job refused naming the limit, the next priced."""
    monkeypatch.setenv("QGOV_MAX_EXPANDED_OPERATIONS", "10000000")
    monkeypatch.setenv("QGOV_PRICING_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("QGOV_PRICING_MEMORY_MIB", "4096")
    assert isinstance(assess(job(nested(1)), MANILA, "USD"), Estimate)  # the pool runs with these limits
    slow = assess(job(nested(1), nested(18)), MANILA, "USD")
    assert slow == Problem("PricingTimeout", "spec.circuits[1]: pricing took more than 2 s "
                                             "(QGOV_PRICING_TIMEOUT_SECONDS)")
    again = assess(job(nested(18)), MANILA, "USD")  # known now: refused without another worker's time
    assert again == Problem("PricingTimeout", "spec.circuits[0]: pricing took more than 2 s "
                                              "(QGOV_PRICING_TIMEOUT_SECONDS)")
    assert isinstance(assess(job(nested(3)), MANILA, "USD"), Estimate)


def test_a_transpile_needing_too_much_memory_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QGOV_MAX_EXPANDED_OPERATIONS", "10000000")
    monkeypatch.setenv("QGOV_PRICING_TIMEOUT_SECONDS", "120")
    monkeypatch.setenv("QGOV_PRICING_MEMORY_MIB", "200")
    huge = assess(job(nested(19)), MANILA, "USD")
    assert huge == Problem("PricingMemoryExceeded", "spec.circuits[0]: pricing needed more than 200 MiB "
                                                    "(QGOV_PRICING_MEMORY_MIB)")
    assert isinstance(assess(job(nested(3)), MANILA, "USD"), Estimate)
