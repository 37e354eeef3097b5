"""The guardian of a test bed (see bed.py): `python -m qgov_dev.devcluster.guardian [CGROUP]`.

Reads `+PGID` / `-PGID` lines on stdin, the process groups the bed started and ended. When stdin
closes (the bed closed it, or died however it died), it kills the groups still listed and every
process in CGROUP, removes CGROUP, and exits; the slot lock it inherited is released with it.
It is in a session of its own and ignores the signals a harness sends a bed's process group.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def end(groups: set[int], cgroup: Path | None) -> None:
    from .bed import empty_cgroup

    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if cgroup is not None:
        empty_cgroup(cgroup)


def main(argv: list[str]) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    cgroup = Path(argv[0]) if argv and argv[0] else None
    groups: set[int] = set()
    for raw in sys.stdin.buffer:
        line = raw.strip()
        try:
            pgid = int(line[1:])
        except ValueError:
            continue
        if line.startswith(b"+"):
            groups.add(pgid)
        elif line.startswith(b"-"):
            groups.discard(pgid)
    end(groups, cgroup)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
