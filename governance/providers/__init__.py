"""Providers behind one interface (base.Provider), found by a QiskitBackend's spec.provider.

Adding a provider is one module and one registration: subclass Provider, override what differs
from a local noiseless simulator, and call `register(MyProvider())` at import. The built-in ones
(aer, fake, ibm) are registered when this package is imported; the operator, the webhook and the
executor all look providers up here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Provider

if TYPE_CHECKING:
    from ..api.specs import Backend

_registry: dict[str, Provider] = {}


def register(provider: Provider) -> Provider:
    """Make `provider` the implementation of spec.provider `provider.name` (replacing any before)."""
    _registry[provider.name] = provider
    return provider


def unregister(name: str) -> None:
    _registry.pop(name, None)


def names() -> tuple[str, ...]:
    """The registered providers' names, sorted (what a spec.provider error lists)."""
    return tuple(sorted(_registry))


def get(name: str) -> Provider:
    """The provider called `name`; KeyError when none is registered."""
    return _registry[name]


def of(backend: Backend) -> Provider:
    """The provider of a parsed backend."""
    return _registry[backend.provider]


from . import aer, fake, ibm  # noqa: E402,F401 - the built-in providers register themselves
