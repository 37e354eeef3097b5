"""qgov: govern quantum-computing work on Kubernetes (budgets, admission, Runtime sessions)."""

__version__ = "0.1.0"  # the one place: pyproject.toml reads it (dynamic version), `qgov --version` prints it
