"""A throwaway PostgreSQL server on loopback, for tests and benchmarks.

Uses Debian's `postgresql` binaries. initdb and postgres refuse to run as root, so as
root the cluster runs as the `postgres` user (via runuser). Raises PostgresUnavailable with
the reason when it cannot start: callers fail loudly rather than skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    pass


def _bindir() -> Path:
    override = os.environ.get("QGOV_PG_BINDIR")
    candidates = [override] if override else sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        if c and (Path(c) / "initdb").exists():
            return Path(c)
    raise PostgresUnavailable("PostgreSQL server binaries not found: apt-get install -y postgresql")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    datadir: Path
    port: int
    bindir: Path
    user: str | None  # the OS user the server runs as (None: the current user)
    options: str = ""  # the server settings it was started with (`resume` starts it with the same)

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        full = ["runuser", "-u", self.user, "--", *cmd] if self.user else list(cmd)
        return subprocess.run(full, check=check, capture_output=True, text=True)

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.datadir.parent, ignore_errors=True)

    @property
    def logfile(self) -> Path:
        return self.datadir.parent / "log"

    def halt(self, mode: str = "fast", timeout: float = 60) -> None:
        """Stop the server as an outage would, keeping its data directory and port: `pg_ctl stop -m
        fast` (clients are disconnected, a clean shutdown) or `-m immediate` (every server process
        quits at once, with crash recovery on the next start), or `smart`. `resume` starts it again."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"pg_ctl stop mode must be smart, fast or immediate, not {mode!r}")
        result = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w",
                           "-t", str(int(timeout)), "stop", check=False)
        if result.returncode != 0:
            raise PostgresUnavailable(f"pg_ctl stop -m {mode} failed: {result.stderr.strip()[-500:]}")

    def resume(self, timeout: float = 60) -> None:
        """Start the server again after `halt`: same data directory, port and settings, so the
        database URLs handed out before stay valid."""
        result = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile),
                           "-o", self.options, "-w", "-t", str(int(timeout)), "start", check=False)
        if result.returncode != 0:
            log = self.logfile.read_text(errors="replace")[-800:] if self.logfile.exists() else ""
            raise PostgresUnavailable(f"postgres did not start again: {result.stderr.strip()} {log}".strip())
        if not self._accepting(timeout):
            raise PostgresUnavailable("postgres started again but does not accept connections on loopback")

    def running(self) -> bool:
        """Whether the server process is up (`pg_ctl status`)."""
        return self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "status", check=False).returncode == 0

    def _accepting(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                time.sleep(0.1)
        return False


def start(*, fsync: bool = True, max_connections: int = 200, synchronous_commit: bool | None = None) -> PostgresServer:
    """Start a throwaway server. `fsync=False` skips flushes to disk (and, unless
    `synchronous_commit=True`, acknowledges commits before their WAL is even written: a server
    stopped with `-m immediate` then loses the last acknowledged transactions, as a crash would
    with that setting). With `synchronous_commit=True` and `fsync=False` a commit survives the
    server's processes being killed, not the machine crashing."""
    bindir = _bindir()
    user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root and there is no `postgres` user to run the server") from None
        user = "postgres"
    base = Path(tempfile.mkdtemp(prefix="qgov-pg-"))
    datadir = base / "data"
    if user:
        shutil.chown(base, user)
    server = PostgresServer(datadir, _free_port(), bindir, user)
    try:
        server._run(str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust",
                    "--encoding=UTF8", "--locale=C.UTF-8")
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(base, ignore_errors=True)
        raise PostgresUnavailable(f"initdb failed: {exc.stderr.strip()[-500:]}") from None
    opts = (f"-c listen_addresses=127.0.0.1 -c port={server.port} -c unix_socket_directories={base} "
            f"-c max_connections={max_connections} -c fsync={'on' if fsync else 'off'} "
            f"-c synchronous_commit={'on' if (fsync if synchronous_commit is None else synchronous_commit) else 'off'} "
            f"-c full_page_writes={'on' if fsync else 'off'}")
    server.options = opts
    result = server._run(str(bindir / "pg_ctl"), "-D", str(datadir), "-l", str(base / "log"), "-o", opts,
                         "-w", "-t", "60", "start", check=False)
    if result.returncode != 0:
        log = (base / "log").read_text(errors="replace")[-800:] if (base / "log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise PostgresUnavailable(f"postgres did not start: {result.stderr.strip()} {log}".strip())
    if server._accepting(30):
        return server
    server.stop()
    raise PostgresUnavailable("postgres started but does not accept connections on loopback")


def create_database(server: PostgresServer, name: str, template: str | None = None) -> str:
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return server.url(name)
