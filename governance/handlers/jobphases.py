"""How many QiskitJobs each budget has in each phase, kept from the job watch.

A budget's status shows these counts and is rewritten up to once a second during a burst;
listing (and parsing) every job of the namespace for each rewrite cost O(jobs) per second.
The watch already brings every job's every change to the operator, so the counts follow it
in O(1) per event. After a restart, kopf's initial listing fills them again.
"""

from __future__ import annotations

import threading
from collections import Counter

BudgetKey = tuple[str, str]  # (namespace, budget name)


class JobPhases:
    def __init__(self) -> None:
        self._jobs: dict[str, tuple[BudgetKey, str]] = {}  # uid -> (budget, phase)
        self._counts: dict[BudgetKey, Counter[str]] = {}
        self._lock = threading.Lock()  # updated on the event loop, read by the budgets' timers

    def observe(self, uid: str, budget: BudgetKey | None, phase: str | None) -> tuple[BudgetKey, ...]:
        """A job's event: it is in `phase`, paid by `budget` (None while it has neither). Returns the
        budgets whose counts changed (their status shows them)."""
        with self._lock:
            before = self._jobs.get(uid)
            now = (budget, phase) if budget and phase else None
            if before == now:
                return ()
            if before is not None:
                self._counts[before[0]][before[1]] -= 1
            if now is None:
                self._jobs.pop(uid, None)
            else:
                self._jobs[uid] = now
                self._counts.setdefault(now[0], Counter())[now[1]] += 1
            return tuple({b[0] for b in (before, now) if b is not None})

    def forget(self, uid: str) -> tuple[BudgetKey, ...]:
        """The job is gone."""
        return self.observe(uid, None, None)

    def counts(self, namespace: str, budget: str) -> Counter[str]:
        with self._lock:
            return Counter(self._counts.get((namespace, budget), Counter()))
