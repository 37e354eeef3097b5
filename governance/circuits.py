"""OpenQASM 2 and 3 parsing with errors that name the circuit and the line/column.

CPU-bound (qiskit's parsers and transpiler): admission parses in a worker process
(governance/pricing.py), the executor in its pod.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from qiskit import QuantumCircuit


class CircuitError(ValueError):
    def __init__(self, index: int, message: str, line: int | None = None, column: int | None = None) -> None:
        where = f"spec.circuits[{index}]" + (f" line {line}" if line else "") + (f" column {column}" if column is not None else "")
        super().__init__(f"{where}: {message}")
        self.index, self.line, self.column = index, line, column


@dataclass(frozen=True)
class ParsedCircuit:
    index: int
    circuit: QuantumCircuit


def _position(text: str) -> tuple[int | None, int | None]:
    for pattern in (r"line (\d+)[,:]? col(?:umn)? (\d+)", r"(\d+),(\d+)", r"line (\d+)"):
        if m := re.search(pattern, text):
            groups = [int(g) for g in m.groups()]
            return groups[0], (groups[1] if len(groups) > 1 else None)
    return None, None


def parse_circuit(index: int, source: str) -> QuantumCircuit:
    from qiskit import qasm2, qasm3

    header = source.lstrip()[:40]
    try:
        if re.match(r"OPENQASM\s+3", header):
            circuit = qasm3.loads(source)
        elif re.match(r"OPENQASM\s+2", header):
            circuit = qasm2.loads(source, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
        else:
            raise CircuitError(index, "must start with an OPENQASM 2.0 or OPENQASM 3.0 header", 1, 1)
    except CircuitError:
        raise
    except Exception as exc:  # noqa: BLE001 - qiskit raises several parser error types
        message = " ".join(str(exc).split())
        line, column = _position(message)
        raise CircuitError(index, f"invalid OpenQASM: {message}", line, column) from None
    if circuit.num_qubits == 0:
        raise CircuitError(index, "the circuit has no qubits")
    return circuit


def parse_circuits(sources: tuple[str, ...] | list[str]) -> list[QuantumCircuit]:
    """Fresh circuits, for a caller that runs (and may change) them."""
    return [parse_circuit(i, s) for i, s in enumerate(sources)]


def digest(source: str) -> bytes:
    """What caches key a circuit's text by, so that they do not keep the text itself."""
    return hashlib.blake2b(source.encode(), digest_size=16).digest()
