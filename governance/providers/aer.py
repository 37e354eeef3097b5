"""`aer`: the local qiskit-aer simulator, noiseless; charged CPU-seconds (free by default)."""

from __future__ import annotations

from typing import ClassVar

from . import register
from .base import Provider


class AerProvider(Provider):
    """Everything is the base's default: a local, noiseless simulator without a device model."""

    name: ClassVar[str] = "aer"
    simulator: ClassVar[bool] = True


register(AerProvider())
