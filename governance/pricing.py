"""Pricing one circuit's text without letting it exhaust the operator.

Two guards, in this order:

1. **The expanded size, from the text** (governance/opcount.py): a program that expands to more
   operations (or declares more qubits and bits) than QGOV_MAX_EXPANDED_OPERATIONS is refused
   before qiskit parses it. Counting is a pass over the tokens, milliseconds for a large circuit.
2. **A worker process with limits**: qiskit's parser and transpiler run in a pool of pre-started
   processes, each limited to QGOV_PRICING_MEMORY_MIB of address space more than it started
   with, and each circuit to QGOV_PRICING_TIMEOUT_SECONDS of CPU and of wall-clock time. A worker
   over a limit is killed (SIGXCPU, or pebble at the deadline) or fails its allocation, the pool
   starts another, and the circuit is refused with the limit's name. So nothing that slips past
   the count can take the operator's memory or a core for long.

What a circuit's text gives is kept in the parent, by a digest of the text: its count, its
qubits and clbits, its shape per device model and primitive, and a refusal by a limit. Repeats
(a sweep, a resubmitted experiment, a restarted operator's replay) never leave the parent, and
the same text arriving from several threads at once is sent to a worker once.

Callers block on the worker: they are threads (kopf's pool, the webhook's), never an event loop.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import logging
import multiprocessing
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache

from .circuits import CircuitError, digest
from .opcount import Count, Uncountable, count_operations
from .providers.estimate import CircuitShape

log = logging.getLogger("qgov.pricing")

DEFAULT_MAX_OPERATIONS = 1_000_000
DEFAULT_TIMEOUT_S = 20.0
DEFAULT_MEMORY_MIB = 256
DEFAULT_WORKERS = 2


@dataclass(frozen=True)
class Limits:
    max_operations: int = DEFAULT_MAX_OPERATIONS  # QGOV_MAX_EXPANDED_OPERATIONS, per circuit and per job
    timeout_s: float = DEFAULT_TIMEOUT_S  # QGOV_PRICING_TIMEOUT_SECONDS, per circuit: CPU and wall clock
    memory_mib: int = DEFAULT_MEMORY_MIB  # QGOV_PRICING_MEMORY_MIB, per worker, above its start
    workers: int = DEFAULT_WORKERS  # QGOV_PRICING_WORKERS

    @classmethod
    def from_env(cls) -> Limits:
        env = os.environ
        return cls(max_operations=int(env.get("QGOV_MAX_EXPANDED_OPERATIONS", "1000000") or DEFAULT_MAX_OPERATIONS),
                   timeout_s=float(env.get("QGOV_PRICING_TIMEOUT_SECONDS", "20") or DEFAULT_TIMEOUT_S),
                   memory_mib=int(env.get("QGOV_PRICING_MEMORY_MIB", "256") or DEFAULT_MEMORY_MIB),
                   workers=max(1, int(env.get("QGOV_PRICING_WORKERS", "2") or DEFAULT_WORKERS)))


class OverLimit(Exception):
    """A circuit refused by a pricing limit; `reason` is CamelCase, the message names the limit."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


class TranspileError(Exception):
    """The transpiler could not compile the circuit for the device model."""


@dataclass(frozen=True)
class Facts:
    """What admission needs to know about one circuit."""

    qubits: int
    clbits: int
    shape: CircuitShape | None  # None: not transpiled (it cannot run there anyway)
    parameters: tuple[str, ...] = ()  # the names of its unbound parameters (spec.parameterValues binds them)


# ------------------------------------------------------------------ the count


_counts: LRUCache[bytes, Count | Uncountable] = LRUCache(maxsize=65536)
_counts_lock = threading.Lock()


def count(index: int, source: str, key: bytes) -> Count:
    """The circuit's expanded size (cached by text); OverLimit when it cannot be known."""
    with _counts_lock:
        found = _counts.get(key)
    if found is None:
        try:
            found = count_operations(source)
        except Uncountable as exc:
            found = exc
        except Exception:  # noqa: BLE001 - a fault of the counter's: refused (not priced blind), and logged
            log.exception("counting a circuit's operations failed")
            found = Uncountable("its size could not be counted (a fault in qgov: see the operator's log)")
        with _counts_lock:
            _counts[key] = found
    if isinstance(found, Uncountable):
        raise OverLimit("CannotPrice", str(CircuitError(index, found.message, found.line)))
    return found


def check_size(index: int, counted: Count, limits: Limits) -> None:
    """OverLimit when one circuit alone is over the limit."""
    if counted.operations > limits.max_operations:
        raise OverLimit("TooManyOperations", f"spec.circuits[{index}]: expands to {_many(counted.operations)} "
                                             f"operations, above the limit of {limits.max_operations} "
                                             "(QGOV_MAX_EXPANDED_OPERATIONS)")
    if counted.bits > limits.max_operations:
        raise OverLimit("TooManyOperations", f"spec.circuits[{index}]: declares {_many(counted.bits)} qubits "
                                             f"and bits, above the limit of {limits.max_operations} "
                                             "(QGOV_MAX_EXPANDED_OPERATIONS)")


def _many(n: int) -> str:
    from .opcount import SATURATED

    return f"more than {SATURATED - 1}" if n >= SATURATED else str(n)


# ------------------------------------------------------------------ the worker pool


class _Pool:
    """pebble's ProcessPool over a forkserver that preloads qiskit; started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: Any = None
        self._limits: Limits | None = None

    def get(self, limits: Limits) -> Any:
        with self._lock:
            if self._pool is not None and (self._limits != limits or not self._pool.active):
                self._pool.stop()
                self._pool = None
            if self._pool is None:
                from pebble import ProcessPool

                from . import pricingworker

                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload([f"{__package__}.pricingpreload"])
                self._pool = ProcessPool(max_workers=limits.workers, initializer=pricingworker.initialize,
                                         initargs=(limits.memory_mib,), context=context)
                self._limits = limits
            return self._pool

    def stop(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.stop()
                self._pool.join(timeout=5)
                self._pool = None


_pool = _Pool()
atexit.register(_pool.stop)
worker_tasks = 0  # circuits sent to a worker since start (what the caches saved shows here)

_facts: LRUCache[tuple[bytes, str, str], Facts] = LRUCache(maxsize=65536)  # (text, model, primitive)
_refused: LRUCache[tuple[bytes, str, str], tuple[Limits, OverLimit]] = LRUCache(maxsize=4096)  # killed
_inflight: dict[tuple[bytes, str, str, int], concurrent.futures.Future[Facts]] = {}
_lock = threading.Lock()


def start(limits: Limits | None = None) -> None:
    """Start the workers now (the operator does at start-up, in a thread), not at the first new
    circuit: the forkserver's imports take seconds, which a burst's first job would wait out."""
    from . import pricingworker

    limits = limits or Limits.from_env()
    _pool.get(limits).schedule(pricingworker.ready, timeout=max(60.0, limits.timeout_s)).result()


def circuit_facts(index: int, source: str, key: bytes, model: str | None, primitive: str, capacity: int,
                  operations: int, limits: Limits) -> Facts:
    """Qubits, clbits and (when it can run: at most `capacity` qubits, measurements for a sampler)
    the shape on `model` (None: a noiseless simulator) of one circuit. Raises CircuitError,
    TranspileError or OverLimit."""
    cache_key = (key, model or "", primitive)
    with _lock:
        facts = _facts.get(cache_key)
        refused = _refused.get(cache_key)
    if facts is not None and (facts.shape is not None or facts.qubits > capacity or
                              (primitive == "sampler" and facts.clbits == 0)):
        return facts
    if refused is not None and refused[0] == limits:  # the same limits would kill it again
        reason, message = refused[1].reason, refused[1].message
        raise OverLimit(reason, message.replace("spec.circuits[?]", f"spec.circuits[{index}]"))
    flight = (*cache_key, capacity)
    with _lock:
        waiting = _inflight.get(flight)
        if waiting is None:
            waiting = _inflight[flight] = concurrent.futures.Future()
            mine = True
        else:
            mine = False
    if not mine:
        return _relabel(waiting, index)
    try:
        result = _in_worker(source, model, primitive, capacity, operations, limits)
    except BaseException as exc:
        waiting.set_exception(exc)
        with _lock:
            del _inflight[flight]
        if isinstance(exc, OverLimit):
            with _lock:
                _refused[cache_key] = (limits, exc)
        return _relabel(waiting, index)
    waiting.set_result(result)
    with _lock:
        del _inflight[flight]
        if result.shape is not None or cache_key not in _facts:
            _facts[cache_key] = result
    return result


def _relabel(future: concurrent.futures.Future[Facts], index: int) -> Facts:
    """The outcome of a pricing, errors naming this caller's circuit `index`."""
    try:
        return future.result()
    except OverLimit as exc:
        raise OverLimit(exc.reason, exc.message.replace("spec.circuits[?]", f"spec.circuits[{index}]")) from None
    except _Invalid as exc:
        raise CircuitError(index, exc.message, exc.line, exc.column) from None


class _Invalid(Exception):
    def __init__(self, message: str, line: int | None, column: int | None) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


def _in_worker(source: str, model: str | None, primitive: str, capacity: int, operations: int,
               limits: Limits) -> Facts:
    from concurrent.futures.process import BrokenProcessPool

    from pebble import ProcessExpired

    from . import pricingworker

    global worker_tasks
    worker_tasks += 1
    pool = _pool.get(limits)
    # the wall-clock deadline leaves the CPU limit the first word on an idle machine
    future = pool.schedule(pricingworker.price, (source, model, primitive, capacity, limits.timeout_s,
                                                 operations), timeout=limits.timeout_s + 1)
    timeout = OverLimit("PricingTimeout", f"spec.circuits[?]: pricing took more than {limits.timeout_s:g} s "
                                          "(QGOV_PRICING_TIMEOUT_SECONDS)")
    memory = OverLimit("PricingMemoryExceeded", f"spec.circuits[?]: pricing needed more than "
                                                f"{limits.memory_mib} MiB (QGOV_PRICING_MEMORY_MIB)")
    try:
        result = future.result()
    except BrokenProcessPool:  # every worker died at start: try a new pool next time, decide later
        _pool.stop()
        raise RuntimeError("the pricing workers could not start") from None
    except concurrent.futures.TimeoutError:
        raise timeout from None
    except MemoryError:
        raise memory from None
    except ProcessExpired as exc:
        log.warning(f"a pricing worker died ({exc}); the pool starts another")
        if exc.exitcode == -signal.SIGXCPU:
            raise timeout from None
        raise memory from None
    if result[0] == "invalid":
        raise _Invalid(*result[1:])
    if result[0] == "transpile":
        raise TranspileError(result[1])
    _, qubits, clbits, shape, parameters = result
    return Facts(qubits, clbits, shape, tuple(parameters))


def clear_caches() -> None:
    """Forget every circuit (tests)."""
    with _counts_lock:
        _counts.clear()
    with _lock:
        _facts.clear()
        _refused.clear()


__all__ = ["Facts", "Limits", "OverLimit", "TranspileError", "check_size", "circuit_facts", "count", "digest",
           "start"]
