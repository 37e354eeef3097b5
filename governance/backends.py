"""Resolve a QiskitBackend to what qiskit needs, through its provider (governance/providers).

Kept for callers that predate the providers (the webhook, tests): each function asks the
backend's registered provider.
"""

from __future__ import annotations

from typing import Any

from . import providers
from .api.specs import Backend
from .providers.base import AER_DEFAULT_MAX_QUBITS, UnknownBackendModel
from .providers.devices import fake_backend

__all__ = ["AER_DEFAULT_MAX_QUBITS", "UnknownBackendModel", "fake_backend", "max_qubits", "model_name", "target"]


def model_name(backend: Backend) -> str | None:
    """The fake_provider model that stands for the device: itself for `fake`, its twin for `ibm`."""
    return providers.of(backend).device_model(backend)


def max_qubits(backend: Backend) -> int:
    return providers.of(backend).max_qubits(backend)


def target(backend: Backend) -> Any:
    """The Target that durations are estimated on; None for a noiseless simulator."""
    return providers.of(backend).target(backend)
