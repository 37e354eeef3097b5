"""What a replica should do with the operator's Lease, decided from the record, its identity and
its clock (pure: no API, no sleeping; the elector in `elector.py` acts on the answer).

The rules are client-go's leader election (k8s.io/client-go/tools/leaderelection):

- A standby never compares the holder's `renewTime` with its own wall clock (the two nodes' clocks
  may disagree). It remembers when *it* first saw the current record (`seen_at`, its monotonic
  clock), and takes the lease only once that record has stayed unchanged for `leaseDurationSeconds`.
  A record whose holder is empty was released on a graceful shutdown: it is taken at once.
- The holder renews every `renew_every_s`. If it has not managed to renew for `renew_deadline_s`
  (shorter than the lease duration), it has lost: it must stop acting before a standby can
  consider the lease expired. `renewed_at` is when the last successful write was *sent*, so
  the holder's deadline is never later than the standby's view of the expiry.
- Someone else's name in a record read while leading means the lease was taken: lost.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class LeaseRecord:
    """A coordination.k8s.io/v1 Lease, as far as election goes."""

    holder: str  # "" when nobody holds it (released)
    duration_s: float
    version: str  # metadata.resourceVersion: any write, renewals included, changes it
    transitions: int = 0


@dataclass(frozen=True)
class Timing:
    duration_s: float = 10.0  # leaseDurationSeconds written into the Lease
    renew_every_s: float = 2.0  # the holder's retry period
    renew_deadline_s: float = 7.0  # the holder gives up (and stops acting) this long after its last renewal
    retry_every_s: float = 2.0  # a standby looks at the lease this often

    def __post_init__(self) -> None:
        if not 0 < self.renew_every_s < self.renew_deadline_s < self.duration_s:
            raise ValueError("leader election needs 0 < renew period < renew deadline < lease duration "
                             f"(got {self.renew_every_s:g} s, {self.renew_deadline_s:g} s, {self.duration_s:g} s)")


@dataclass(frozen=True)
class Memory:
    """What an elector remembers between two looks at the lease."""

    seen_version: str | None = None  # the record last seen
    seen_at: float | None = None  # when that record was first seen (monotonic)
    renewed_at: float | None = None  # when the last successful write as holder was sent; None: not leading


class Action(str, enum.Enum):
    CREATE = "create"  # no Lease exists: create it, holding it
    ACQUIRE = "acquire"  # take it over (replace, naming the version read)
    RENEW = "renew"  # the holder writes a new renewTime
    WAIT = "wait"  # look again at `wake_at`
    LOST = "lost"  # was leading, is no more: stop acting now


@dataclass(frozen=True)
class LeaseStep:
    action: Action
    reason: str
    wake_at: float | None = None  # for WAIT (and RENEW not yet due): when to look again


def observe(memory: Memory, record: LeaseRecord | None, now: float) -> Memory:
    """Remember a record just read: a record not seen before starts its expiry clock now."""
    version = record.version if record is not None else None
    if version == memory.seen_version and memory.seen_at is not None:
        return memory
    return replace(memory, seen_version=version, seen_at=now)


def renew_deadline(memory: Memory, timing: Timing) -> float | None:
    """When the holder must have stopped acting unless it renews first (None: not leading)."""
    return None if memory.renewed_at is None else memory.renewed_at + timing.renew_deadline_s


def decide(record: LeaseRecord | None, me: str, memory: Memory, now: float, timing: Timing) -> LeaseStep:
    """`record` was just read (or written) and `observe`d into `memory`."""
    leading = memory.renewed_at is not None
    if leading and now >= memory.renewed_at + timing.renew_deadline_s:  # type: ignore[operator]
        return LeaseStep(Action.LOST, f"could not renew the lease for {now - memory.renewed_at:.1f} s "  # type: ignore[operator]
                                     f"(renew deadline {timing.renew_deadline_s:g} s)")
    if record is None:
        # nobody holds a lease that does not exist (deleted by hand, say): creating it fails if
        # another replica created it first
        return LeaseStep(Action.CREATE, "no lease exists")
    if record.holder == me:
        if not leading:  # a write of ours whose answer was lost: it is ours, renew to be sure
            return LeaseStep(Action.RENEW, "the lease names this replica")
        due = memory.renewed_at + timing.renew_every_s  # type: ignore[operator]
        if now >= due:
            return LeaseStep(Action.RENEW, "renewal due")
        return LeaseStep(Action.WAIT, "renewed recently", due)
    if leading:
        who = record.holder or "nobody"
        return LeaseStep(Action.LOST, f"the lease is held by {who} now")
    if not record.holder:
        return LeaseStep(Action.ACQUIRE, "the lease was released")
    assert memory.seen_at is not None, "observe() the record before deciding"
    expires = memory.seen_at + record.duration_s
    if now >= expires:
        return LeaseStep(Action.ACQUIRE, f"{record.holder} has not renewed the lease for {now - memory.seen_at:.1f} s "
                                        f"(lease duration {record.duration_s:g} s)")
    return LeaseStep(Action.WAIT, f"{record.holder} holds the lease", min(now + timing.retry_every_s, expires))
