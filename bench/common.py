"""What the operator benchmarks share: a real `qgov operator` process against a dev cluster, and
its CPU and memory read from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mib(pid: int) -> float:
    return _status_mib(pid, "VmRSS")


def peak_rss_mib(pid: int) -> float:
    return _status_mib(pid, "VmHWM")


def wait_until(check: Callable[[], Any], what: str, timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(every)
    return result


@contextmanager
def operator_process(kubeconfig: Path, workdir: Path, command: list[str] | None = None,
                     **settings: str) -> Iterator[subprocess.Popen[bytes]]:
    """`qgov operator` (or `command`) with a SQLite ledger in `workdir`, once it has started;
    terminated on exit. `settings` are extra QGOV_* environment variables."""
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "QGOV_DATABASE_URL": f"sqlite:///{workdir / 'ledger.db'}",
           **settings}
    log = workdir / "operator.log"
    op = subprocess.Popen(command or [str(Path(sys.executable).parent / "qgov"), "operator"], env=env,
                          stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: op.poll() is not None or "qgov operator started" in log.read_text(errors="replace"),
                   "the operator to start", 300, 0.1)
        if op.poll() is not None:
            raise RuntimeError(f"the operator did not start:\n{log.read_text(errors='replace')[-2000:]}")
        yield op
    finally:
        op.terminate()
        op.wait(60)
