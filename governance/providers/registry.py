"""The providers by name (a QiskitBackend's spec.provider): what `register` fills and the operator,
the webhook and the executor look up (through the package, `governance.providers`)."""

from __future__ import annotations

from typing import TYPE_CHECKING


if TYPE_CHECKING:
    from ..api.specs import Backend
    from .base import Provider

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
