"""Resolve a QiskitBackend to what qiskit needs: a Target for transpiling, a simulator to run on."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .api.specs import Backend

AER_DEFAULT_MAX_QUBITS = 28  # a statevector of 2^28 amplitudes is 4 GiB: the most a dev box should try


class UnknownBackendModel(LookupError):
    pass


@lru_cache(maxsize=32)
def fake_backend(name: str) -> Any:
    """A qiskit-ibm-runtime fake_provider backend by name (fake_manila, fake_torino, ...)."""
    from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2

    try:
        return FakeProviderForBackendV2().backend(name)
    except Exception:  # noqa: BLE001 - the provider raises QiskitBackendNotFoundError
        raise UnknownBackendModel(f"no fake_provider backend named {name!r} (try fake_manila, fake_torino, ...)") \
            from None


def max_qubits(backend: Backend) -> int:
    if backend.provider == "fake":
        model = fake_backend(backend.backend_name).num_qubits
        return min(model, backend.limits.max_qubits or model)
    return backend.limits.max_qubits or AER_DEFAULT_MAX_QUBITS


def target(backend: Backend) -> Any:
    """The Target that durations are estimated on; None for a noiseless simulator."""
    if backend.provider == "fake":
        return fake_backend(backend.backend_name).target
    return None
