"""qiskit-ibm-runtime's fake_provider device models, by name: what `fake` backends run on and what
`ibm` backends are estimated on (their twins)."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

from .types import UnknownBackendModel

_building = threading.Lock()


def fake_backend(name: str) -> Any:
    """A qiskit-ibm-runtime fake_provider backend by name (fake_manila, fake_torino, ...), with its
    Target built. One thread builds at a time: two threads building device models at once (a
    QiskitBackend validated while a job on it is priced) crashed the process in qiskit's Rust
    code (a segfault in _accelerate), and the Target is built lazily on first use."""
    with _building:
        return _fake_backend(name)


@lru_cache(maxsize=32)
def _fake_backend(name: str) -> Any:
    from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2

    try:
        backend = FakeProviderForBackendV2().backend(name)
    except Exception:  # noqa: BLE001 - the provider raises QiskitBackendNotFoundError
        raise UnknownBackendModel(f"no fake_provider backend named {name!r} (try fake_manila, fake_torino, ...)") \
            from None
    backend.target  # noqa: B018 - built now, under the lock
    return backend
