"""What runs in a pricing worker process: parse one circuit's text and transpile it, under limits.

The worker is started by a forkserver that imported qiskit once (pricingpreload.py), so a new
worker costs a fork, not qiskit's import. This module itself imports nothing heavy: the operator
imports it to name these functions to the pool. Its address space is limited to what it had when
it started plus the memory limit (RLIMIT_AS), and each task's CPU time to the timeout
(RLIMIT_CPU, which kills it with SIGXCPU); the parent's deadline kills it too (pebble).
Results are plain tuples: exceptions with their own constructors do not survive pickling.
"""

from __future__ import annotations

import os
import resource
from typing import Any

MIB = 1 << 20


def address_space() -> int:
    """This process's virtual memory size now (bytes)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def initialize(memory_mib: int) -> None:
    """Each worker, once: at most `memory_mib` more address space than it started with. The
    libraries' thread pools would reserve address space per thread: one thread is enough here."""
    os.environ["RAYON_NUM_THREADS"] = os.environ["QISKIT_NUM_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = "1"
    limit = address_space() + memory_mib * MIB
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _limit_cpu(seconds: float) -> None:
    """The soft CPU limit, `seconds` above what this worker used so far (a worker runs many tasks);
    the hard limit stays, so the next task can raise it again."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    soft = int(used + seconds) + 1
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def price(source: str, model: str | None, primitive: str, capacity: int, cpu_seconds: float,
          operations: int | None) -> tuple[Any, ...]:
    """("ok", qubits, clbits, shape or None, parameter names) — the shape is None when the circuit cannot run here
    anyway (more qubits than `capacity`, a sampler circuit without measurements) —
    ("invalid", message, line, column) or ("transpile", message)."""
    from .circuits import CircuitError, parse_circuit
    from .providers.estimate import shape_on_target

    _limit_cpu(cpu_seconds)
    try:
        circuit = parse_circuit(0, source)
    except CircuitError as exc:
        message = str(exc).split(": ", 1)[1] if ": " in str(exc) else str(exc)
        return ("invalid", message, exc.line, exc.column)
    qubits, clbits = circuit.num_qubits, circuit.num_clbits
    parameters = tuple(sorted(p.name for p in circuit.parameters))
    if qubits > capacity or (primitive == "sampler" and clbits == 0):
        return ("ok", qubits, clbits, None, parameters)
    try:
        measured = circuit.remove_final_measurements(inplace=False) if primitive == "estimator" else circuit
        target = None
        if model:
            from .providers.devices import fake_backend

            target = fake_backend(model).target
        shape = shape_on_target(measured, target, operations=operations)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - the transpiler's many error types
        return ("transpile", " ".join(str(exc).split()))
    return ("ok", qubits, clbits, shape, parameters)


def ready() -> bool:
    """A task that only says the worker runs (pricing.start waits for it)."""
    return True
