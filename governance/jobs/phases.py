"""A QiskitJob's phases, in one place."""

from __future__ import annotations

import enum


class Phase(str, enum.Enum):
    """What status.phase holds. Compare with `.value` (or the sets below, which hold the strings
    the API server returns)."""

    QUEUED = "Queued"  # the budget cannot pay yet; the ledger admits it when funds are freed
    ADMITTED = "Admitted"  # priced and paid for (or unbudgeted); an attempt waits, runs soon, or retries later
    RUNNING = "Running"  # its executor pod is running
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    REFUSED = "Refused"  # never ran: no budget, or the budget could not pay
    CANCELLED = "Cancelled"


TERMINAL: frozenset[str] = frozenset(p.value for p in (Phase.SUCCEEDED, Phase.FAILED, Phase.REFUSED, Phase.CANCELLED))
ACTIVE: frozenset[str] = frozenset((Phase.ADMITTED.value, Phase.RUNNING.value))  # an attempt is due or running
FAILURES: frozenset[str] = frozenset((Phase.FAILED.value, Phase.REFUSED.value))  # ended with Failed=True
