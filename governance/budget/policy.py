"""The budget policy: what budgets do with requests for money, decided over a snapshot of their
balances. Pure: no database, no Kubernetes; the same inputs always give the same decisions.

The ledger (ledger.py) locks a budget, loads its balances into a `Snapshot`, asks this module,
and writes what it decided; the admission webhook (governance/webhook/review.py) asks the same
question of balances read without a lock, so a refusal at `kubectl apply` carries the very
message the controller would write.

The rules:
- A request is admitted when nothing waits ahead of it and it fits: spent + held + amount <=
  limit. This is the ledger's invariant under hard enforcement (spent + held never exceeds
  the limit through an admission).
- Otherwise a budget with enforcement "queue" queues it (FIFO, behind the work already queued)
  unless it is larger than the whole limit; anything else is refused.
- Requests are decided one after another, each over the balances the previous ones left
  (`decide_all`): a batch decides exactly what the same requests made one at a time would.
- Queued work is admitted strictly in FIFO order while the head fits; a head that can never
  fit under the limit is refused rather than blocking the queue forever (`admit_queued`).
- A warning threshold (warnAt, percent of the limit) is crossed once per period: when
  admissions take the committed amount (spent + held) to or past it (`crossings`).

Every decision is made over a chain of budgets (`Sequence[Snapshot]`) that must all admit, so
hierarchical budgets (org -> team -> namespace) can be decided here; the ledger passes a chain
of one today.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from .money import format_amount
from .types import Decision, describe_amounts

HARD, QUEUE = "hard", "queue"
TOO_LARGE = " (the request is larger than the whole limit)"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One budget's balances in the current period, as the ledger read them (micro-units)."""

    label: str  # namespace/name, as messages name the budget
    unit: str
    limit: int
    spent: int
    held: int
    queued: int = 0  # requests already waiting in its queue, ahead of any new one
    enforcement: str = HARD  # hard | queue
    warn_at: tuple[int, ...] = ()  # warning thresholds, percent of the limit
    warned_pct: int = 0  # the highest threshold already crossed this period

    @property
    def committed(self) -> int:
        return self.spent + self.held

    def _with(self, held: int, queued: int) -> Snapshot:
        # dataclasses.replace, without its per-call introspection: this runs per request on the hot path
        return Snapshot(self.label, self.unit, self.limit, self.spent, held, queued, self.enforcement, self.warn_at,
                        self.warned_pct)


@dataclass(frozen=True, slots=True)
class Ruling:
    """What the chain does with one request, and the balances it leaves."""

    decision: Decision
    message: str  # "" when admitted
    position: int | None  # its place in the queue (1 = next), when queued
    after: tuple[Snapshot, ...]  # the chain's balances after this request


@dataclass(frozen=True)
class Rulings:
    """`decide_all`: a ruling per request, in order, and what the batch leaves."""

    rulings: tuple[Ruling, ...]
    after: tuple[Snapshot, ...]  # the chain's balances after the batch, warned_pct raised by `crossed`
    crossed: tuple[tuple[int, ...], ...]  # per budget: the thresholds the batch's admissions crossed

    @property
    def crossed_at(self) -> int | None:
        """The index of the ruling that reports the crossings: the batch's last admission."""
        if not any(self.crossed):
            return None
        return next(i for i in range(len(self.rulings) - 1, -1, -1)
                    if self.rulings[i].decision is Decision.ADMITTED)


@dataclass(frozen=True)
class QueueRuling:
    """What `admit_queued` did with one queued request (those after the first that still waits
    are not ruled on: they keep waiting)."""

    decision: Decision  # ADMITTED or REFUSED
    message: str


# ---------------------------------------------------------------------- one budget


def _rule(budget: Snapshot, amount: int) -> tuple[Decision, str]:
    if budget.queued == 0 and budget.spent + budget.held + amount <= budget.limit:
        return Decision.ADMITTED, ""
    if budget.enforcement == QUEUE and amount <= budget.limit:
        return Decision.QUEUED, (f"queued for budget {budget.label} (position {budget.queued + 1}): "
                                 f"{request_summary(budget, amount)}")
    return Decision.REFUSED, refusal_message(budget, amount)


def request_summary(budget: Snapshot, amount: int) -> str:
    """ResourceQuota's style: what was asked, what is used, what the limit is."""
    return (f"requested {format_amount(amount, budget.unit)}, "
            f"{describe_amounts(budget.spent, budget.held, budget.limit, budget.unit)}")


def refusal_message(budget: Snapshot, amount: int) -> str:
    return f"exceeded budget {budget.label}: {request_summary(budget, amount)}"


# ---------------------------------------------------------------------- requests


def decide(chain: Sequence[Snapshot], amount: int) -> Ruling:
    """One request of `amount` against a chain of budgets that must all admit it. The first
    budget that refuses refuses it (with its message); else the first that queues queues it;
    else every budget holds `amount`."""
    if amount < 0:
        raise ValueError("a request's amount must be zero or more")
    if len(chain) == 1:  # the common case, without the chain's bookkeeping
        [budget] = chain
        decision, message = _rule(budget, amount)
        if decision is Decision.ADMITTED:
            return Ruling(decision, "", None, (budget._with(budget.held + amount, budget.queued),))
        if decision is Decision.QUEUED:
            return Ruling(decision, message, budget.queued + 1, (budget._with(budget.held, budget.queued + 1),))
        return Ruling(decision, message, None, (budget,))
    if not chain:
        raise ValueError("a request needs at least one budget")
    ruled = [_rule(budget, amount) for budget in chain]
    refused = next((r for r in ruled if r[0] is Decision.REFUSED), None)
    if refused is not None:
        return Ruling(Decision.REFUSED, refused[1], None, tuple(chain))
    waiting = [i for i, r in enumerate(ruled) if r[0] is Decision.QUEUED]
    if waiting:
        after = tuple(b._with(b.held, b.queued + 1) if i in waiting else b for i, b in enumerate(chain))
        return Ruling(Decision.QUEUED, ruled[waiting[0]][1], after[waiting[0]].queued, after)
    return Ruling(Decision.ADMITTED, "", None, tuple(b._with(b.held + amount, b.queued) for b in chain))


def decide_all(chain: Sequence[Snapshot], amounts: Sequence[int]) -> Rulings:
    """Requests decided in order, each over the balances the previous ones left: the batched
    and the one-at-a-time reservation are one path (a single request is a batch of one). The
    thresholds the batch's admissions cross are reported once, for the batch (`crossings`)."""
    before = after = tuple(chain)
    rulings = []
    for amount in amounts:
        ruling = decide(after, amount)
        rulings.append(ruling)
        after = ruling.after
    crossed = tuple(crossings(b) if b.held != a.held else () for a, b in zip(before, after, strict=True))
    after = tuple(replace(b, warned_pct=max(c)) if c else b for b, c in zip(after, crossed, strict=True))
    return Rulings(tuple(rulings), after, crossed)


def crossings(budget: Snapshot) -> tuple[int, ...]:
    """The thresholds `budget`'s committed amount has reached that were not crossed before
    (above `warned_pct`), in percent; exact (hundredths of a percent in integers)."""
    if not budget.warn_at or budget.limit <= 0:
        return ()
    pct_x100 = budget.committed * 10_000 // budget.limit
    return tuple(t for t in budget.warn_at if budget.warned_pct < t and t * 100 <= pct_x100)


def admit_queued(budget: Snapshot, amounts: Sequence[int]) -> tuple[tuple[QueueRuling, ...], Snapshot, tuple[int, ...]]:
    """The queue's requests (`amounts`, head first) after funds were freed or the limit changed:
    admitted in FIFO order while the head fits (head-of-line blocking), refused when larger than
    the whole limit. Returns a ruling per request ruled on (a prefix of the queue), the balances
    after (queued and warned_pct updated) and the thresholds crossed (when anything changed)."""
    spent, held = budget.spent, budget.held
    rulings: list[QueueRuling] = []
    for amount in amounts:
        if amount > budget.limit:  # can never fit under this limit: refuse rather than block forever
            now = replace(budget, spent=spent, held=held)
            rulings.append(QueueRuling(Decision.REFUSED, refusal_message(now, amount) + TOO_LARGE))
            continue
        if spent + held + amount > budget.limit:
            break
        held += amount
        rulings.append(QueueRuling(Decision.ADMITTED, ""))
    after = replace(budget, held=held, queued=budget.queued - len(rulings))
    crossed = crossings(after) if rulings else ()
    if crossed:
        after = replace(after, warned_pct=max(crossed))
    return tuple(rulings), after, crossed


def parse_warn_at(text: str) -> tuple[int, ...]:
    """The ledger's stored thresholds ("50,80") as numbers."""
    return tuple(int(x) for x in text.split(",")) if text else ()
