"""A test bed's claim on the machine: a slot of pod addresses of its own, and a guardian that
ends every process the bed started when the bed ends, however it ends.

Why: the pod runner starts pods as local processes in sessions of their own, so a test bed stopped
by SIGTERM to its process group (as a harness or CI stops it), or killed, used to leave them
running with init as their parent, still bound to their pod address: the next bed on the machine
gave its operator pod the same address and it crash-looped on "address already in use".

- **Slot.** A bed holds an exclusive `flock` on `<QGOV_BEDS_DIR>/slot-N.lock` for its life; slot N
  gives its pods the addresses 127.N.x.y (all of 127/8 is the loopback interface on Linux), so two
  beds on one machine never share one. The kernel drops the lock when its last holder dies.
- **Guardian.** A small process of its own session (`python -m qgov_dev.devcluster.guardian`)
  that holds the same lock and a pipe from the bed. The bed tells it each process group it
  starts; when the pipe closes (the bed stopped, or died: SIGKILL included) the guardian kills
  those groups and the bed's cgroup, then exits, and only then is the slot free again.
- **cgroup.** Where the cgroup v2 hierarchy is writable (as root), every process the bed starts
  joins `qgov-beds/slot-N` there, so even a grandchild that left its process group is found; a
  slot's cgroup left populated (its guardian killed too) is emptied when the slot is next claimed.
- **Parent death.** Each process also gets PR_SET_PDEATHSIG=SIGKILL, so it dies with the thread
  that started it even before the guardian acts.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

SLOTS = range(1, 255)  # 127.N.0.0/16 for N in 1..254; 127.0.0.0/16 stays the host's (127.0.0.1)
PR_SET_PDEATHSIG = 1


def beds_dir() -> Path:
    return Path(os.environ.get("QGOV_BEDS_DIR") or Path(tempfile.gettempdir()) / "qgov-beds")


def cgroup_root() -> Path | None:
    """The cgroup v2 hierarchy's mount point, if there is one this process may write."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in mounts:
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2" and os.access(fields[1], os.W_OK):
            return Path(fields[1])
    return None


def cgroup_processes(group: Path) -> list[int]:
    try:
        return [int(pid) for pid in (group / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def empty_cgroup(group: Path, wait: float = 5.0) -> None:
    """Kill every process in `group` and remove it (cgroup.kill where the kernel has it, 5.14+)."""
    import time

    if not group.is_dir():
        return
    deadline = time.monotonic() + wait
    while True:
        try:
            (group / "cgroup.kill").write_text("1")
        except OSError:
            for pid in cgroup_processes(group):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                return
        time.sleep(0.02)


class Bed:
    """Claim with `Bed.claim()`; `close()` ends what is left and frees the slot."""

    def __init__(self, slot: int, lock_fd: int, cgroup: Path | None) -> None:
        self.slot, self._lock_fd, self.cgroup = slot, lock_fd, cgroup
        self._cgroup_fd = os.open(cgroup / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC) if cgroup else -1
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._prctl = self._libc.prctl  # resolved now: the child must not look anything up after fork
        self._lock = threading.Lock()
        self._closed = False
        self._guardian = subprocess.Popen(
            [sys.executable, "-m", "qgov_dev.devcluster.guardian", str(cgroup or "")],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, pass_fds=(lock_fd,), start_new_session=True)
        assert self._guardian.stdin is not None
        self._pipe = self._guardian.stdin

    @classmethod
    def claim(cls) -> Bed:
        """The first free slot; a slot's leftovers (a bed whose guardian died too) are ended first."""
        directory = beds_dir()
        directory.mkdir(parents=True, exist_ok=True)
        root = cgroup_root()
        for slot in SLOTS:
            fd = os.open(directory / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            group = None
            if root is not None:
                group = root / "qgov-beds" / f"slot-{slot}"
                empty_cgroup(group)
                try:
                    group.mkdir(parents=True)
                except OSError:
                    group = None  # not writable after all: process groups and parent death still hold
            return cls(slot, fd, group)
        raise RuntimeError(f"all {len(SLOTS)} test bed slots of this machine are taken ({directory})")

    @property
    def network(self) -> str:
        """The bed's pod addresses, as a CIDR."""
        return f"127.{self.slot}.0.0/16"

    def address(self, n: int) -> str:
        """The n-th pod address of this bed (n from 2: 127.N.0.1 is left out as a host-like address)."""
        if not 2 <= n < (1 << 16) or n & 255 in (0, 255):
            raise ValueError(f"no pod address number {n}")
        return f"127.{self.slot}.{n >> 8}.{n & 255}"

    def owns(self, address: str) -> bool:
        return address.startswith(f"127.{self.slot}.")

    def preexec(self) -> Callable[[], None]:
        """For Popen(preexec_fn=...): the child joins the bed's cgroup and dies with its parent."""
        fd, prctl = self._cgroup_fd, self._prctl

        def child() -> None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if fd >= 0:
                try:
                    os.write(fd, b"0")  # "0": the writing process itself
                except OSError:
                    pass

        return child

    def started(self, pgid: int) -> None:
        """A process group the guardian must end with the bed."""
        self._say(f"+{pgid}")

    def ended(self, pgid: int) -> None:
        """That group is gone (its processes were killed and its leader reaped)."""
        self._say(f"-{pgid}")

    def _say(self, line: str) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._pipe.write(f"{line}\n".encode())
                self._pipe.flush()
            except (BrokenPipeError, ValueError):
                pass

    def close(self, timeout: float = 15.0) -> None:
        """End what is left (the guardian does it) and free the slot once it is done."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._cgroup_fd >= 0:  # (before the guardian removes the cgroup)
                os.close(self._cgroup_fd)
                self._cgroup_fd = -1
            try:
                self._pipe.close()
            except BrokenPipeError:
                pass
        try:
            self._guardian.wait(timeout)
        except subprocess.TimeoutExpired:
            self._guardian.kill()
            self._guardian.wait(5)
        os.close(self._lock_fd)

    def __enter__(self) -> Bed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
