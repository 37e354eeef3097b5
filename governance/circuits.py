"""OpenQASM 2 and 3 parsing with errors that name the circuit and the line/column.

CPU-bound (qiskit's parsers and transpiler): callers on an event loop use a thread.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass

from cachetools import LRUCache
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


CACHED_SOURCE_CHARS = 1_000_000  # of OpenQASM text whose parsed circuits stay cached (LRU; ~60 bytes each)
_parsed: LRUCache[bytes, tuple[int, QuantumCircuit]] = LRUCache(  # (text length, circuit)
    maxsize=CACHED_SOURCE_CHARS, getsizeof=lambda entry: max(1, entry[0]))
_parsed_lock = threading.Lock()


def shared_circuit(index: int, source: str, key: bytes | None = None) -> QuantumCircuit:
    """The parsed circuit of `source`, shared between callers that only read it: admission parses
    the same text again and again (a sweep, a resubmitted experiment, a restarted operator's
    replay). Errors are not cached and name `index`."""
    key = key or digest(source)
    with _parsed_lock:
        entry = _parsed.get(key)
    if entry is not None:
        return entry[1]
    circuit = parse_circuit(index, source)
    if len(source) <= CACHED_SOURCE_CHARS // 16:  # one huge circuit does not flush all the others
        with _parsed_lock:
            _parsed[key] = (len(source), circuit)
    return circuit
