"""kopf handlers: thin adapters from Kubernetes events to the domain core.

Importing this package registers the handlers with kopf (`qgov operator` does).
"""

from . import budgets, jobwatch, observe, sessions, startup  # noqa: F401  (registration by import)
