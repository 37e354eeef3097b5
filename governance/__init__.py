"""qgov: govern quantum-computing work on Kubernetes (budgets, admission, Runtime sessions)."""

__version__ = "0.1.0"
