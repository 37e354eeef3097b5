"""qiskit-ibm-runtime's fake_provider device models, by name: what `fake` backends run on and what
`ibm` backends are estimated on (their twins)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .base import UnknownBackendModel


@lru_cache(maxsize=32)
def fake_backend(name: str) -> Any:
    """A qiskit-ibm-runtime fake_provider backend by name (fake_manila, fake_torino, ...)."""
    from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2

    try:
        return FakeProviderForBackendV2().backend(name)
    except Exception:  # noqa: BLE001 - the provider raises QiskitBackendNotFoundError
        raise UnknownBackendModel(f"no fake_provider backend named {name!r} (try fake_manila, fake_torino, ...)") \
            from None
