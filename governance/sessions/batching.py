"""Automatic batching: jobs of one namespace, backend and credential that arrive within a short
window share one Runtime batch, up to a maximum number of jobs per batch.

Pure (the clock is passed in). Assignment is idempotent by job UID, and a batch is named from
its key and its first job's UID, so an operator that restarts and replays its jobs in the same
order rebuilds the same batches and creates no QiskitSession twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BatchKey:
    namespace: str
    backend: str
    credential: str  # the credential's fingerprint, never the key


@dataclass
class Batch:
    name: str
    key: BatchKey
    opened_at: float
    jobs: list[str] = field(default_factory=list)

    def accepts(self, now: float, window_s: float, max_jobs: int) -> bool:
        return now - self.opened_at < window_s and len(self.jobs) < max_jobs


def batch_name(key: BatchKey, first_job: str) -> str:
    digest = hashlib.sha256(f"{key.namespace}/{key.backend}/{key.credential}/{first_job}".encode()).hexdigest()
    return f"batch-{key.backend}-{digest[:10]}"[:63].lower().replace("_", "-")


class Batcher:
    def __init__(self, *, window_s: float = 5.0, max_jobs: int = 20) -> None:
        if window_s <= 0 or max_jobs < 1:
            raise ValueError("the batch window must be positive and a batch must take at least one job")
        self.window_s, self.max_jobs = window_s, max_jobs
        self._open: dict[BatchKey, Batch] = {}
        self._of_job: dict[str, Batch] = {}

    def assign(self, key: BatchKey, job_uid: str, now: float) -> Batch:
        """The batch a job runs in: the key's open batch if it still accepts jobs, else a new one."""
        if job_uid in self._of_job:
            return self._of_job[job_uid]
        batch = self._open.get(key)
        if batch is None or not batch.accepts(now, self.window_s, self.max_jobs):
            batch = Batch(batch_name(key, job_uid), key, now)
            self._open[key] = batch
        batch.jobs.append(job_uid)
        self._of_job[job_uid] = batch
        return batch

    def sealed(self, now: float) -> list[Batch]:
        """Batches that take no more jobs (window over or full): their sessions may stop accepting."""
        done = [b for b in self._open.values() if not b.accepts(now, self.window_s, self.max_jobs)]
        for batch in done:
            del self._open[batch.key]
        return done

    def forget(self, job_uid: str) -> None:
        self._of_job.pop(job_uid, None)
