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


def model_name(backend: Backend) -> str | None:
    """The fake_provider model that stands for the device: itself for `fake`, its twin for `ibm`."""
    return {"fake": backend.backend_name, "ibm": backend.model}.get(backend.provider)


def max_qubits(backend: Backend) -> int:
    name = model_name(backend)
    if name:
        model = fake_backend(name).num_qubits
        return min(model, backend.limits.max_qubits or model)
    return backend.limits.max_qubits or AER_DEFAULT_MAX_QUBITS


def target(backend: Backend) -> Any:
    """The Target that durations are estimated on; None for a noiseless simulator."""
    name = model_name(backend)
    return fake_backend(name).target if name else None
