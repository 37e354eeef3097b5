"""Providers behind one interface (base.Provider), found by a QiskitBackend's spec.provider.

Adding a provider is one module and one registration: subclass Provider, override what differs
from a local noiseless simulator, and call `register(MyProvider())` at import. The built-in ones
(aer, fake, ibm) are registered when this package is imported; the operator, the webhook and the
executor all look providers up here.
"""

from __future__ import annotations

from .base import Provider
from .registry import get, names, of, register, unregister

__all__ = ["Provider", "get", "names", "of", "register", "unregister"]

from . import aer, fake, ibm  # noqa: E402,F401 - the built-in providers register themselves
