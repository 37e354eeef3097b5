"""`aer`: the local qiskit-aer simulator, noiseless; charged CPU-seconds (free by default)."""

from __future__ import annotations

from typing import ClassVar

from .registry import register
from .base import Provider


class AerProvider(Provider):
    """Everything is the base's default: a local, noiseless simulator without a device model."""

    name: ClassVar[str] = "aer"
    simulator: ClassVar[bool] = True
    usage_source: ClassVar[str] = ("the CPU-time model of the admitted circuits without its safety margin, computed "
                                   "by the operator (a bounded estimate; the pod's own figure is shown, not charged)")


register(AerProvider())
