"""Nothing a test bed starts outlives it (qgov_dev/devcluster/bed.py), and two beds on one machine
never share a pod address.

The beds here are real: `qgov dev` processes (the emulator, and a real control plane with its
process node and the operator's Deployment), stopped the ways a harness stops them, by SIGTERM
and by SIGKILL, at random moments. What is checked is what the next bed on the machine would
trip over: a process of the bed still running (found by its working directory, command line or
environment naming the bed's directory), or a socket still listening on a pod address of a slot
that no bed holds."""

from __future__ import annotations

import fcntl
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from qgov_dev.devcluster.bed import Bed, beds_dir, cgroup_root

QGOV = str(Path(sys.executable).parent / "qgov")


# ---------------------------------------------------------------------- what a bed could leave


def processes_of(workdir: Path) -> list[str]:
    """Processes (other than this one) whose working directory, command line or environment names
    `workdir`: what a bed started and nothing else does."""
    mark, found = str(workdir), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # a zombie holds nothing: its parent (init, here) has not reaped it yet
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            named = mark in cmdline or mark.encode() in (entry / "environ").read_bytes()
            named = named or os.readlink(entry / "cwd").startswith(mark)
        except (OSError, IndexError):
            continue  # gone meanwhile, or a kernel thread
        if named:
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def _slot_is_held(slot: int) -> bool:
    path = beds_dir() / f"slot-{slot}.lock"
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # (closing drops a lock taken here)
    return False


def stray_listeners() -> list[str]:
    """Listening TCP sockets on a pod address (127.N.x.y, N >= 1) of a slot no bed holds."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state != "0A":  # LISTEN
            continue
        hex_ip, hex_port = local.split(":")
        octets = [int(hex_ip[i:i + 2], 16) for i in (6, 4, 2, 0)]  # little-endian
        if octets[0] == 127 and octets[1] >= 1 and not _slot_is_held(octets[1]):
            found.append(f"{'.'.join(map(str, octets))}:{int(hex_port, 16)}")
    return found


def assert_nothing_left(workdir: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        left, listening = processes_of(workdir), stray_listeners()
        if not left and not listening:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left behind by the bed in {workdir}: processes {left}, listening {listening}")
        time.sleep(0.2)


# ---------------------------------------------------------------------- the bed's parts


def test_beds_on_one_machine_hold_slots_of_their_own_and_free_them_when_done() -> None:
    first, second = Bed.claim(), Bed.claim()
    try:
        assert first.slot != second.slot and _slot_is_held(first.slot) and _slot_is_held(second.slot)
        assert first.address(2) != second.address(2) and first.owns(first.address(2))
        assert not second.owns(first.address(2)) and first.network == f"127.{first.slot}.0.0/16"
        with pytest.raises(ValueError):
            first.address(256)  # x.y.1.0 is not a host address
    finally:
        second.close()
    assert not _slot_is_held(second.slot)
    again = Bed.claim()
    try:
        assert again.slot == second.slot  # the lowest free slot, given back
    finally:
        again.close()
        first.close()


OWNER = textwrap.dedent("""
    import os, socket, subprocess, sys, time
    from qgov_dev.devcluster.bed import Bed

    bed = Bed.claim()
    # a "pod": its own process group, the bed's preexec; it starts a helper in its group and one that
    # leaves the group (setsid), and all three listen on pod addresses
    child = '''
    import os, socket, subprocess, sys, time
    listen = lambda ip: socket.create_server((ip, 0))
    a = listen(sys.argv[1])
    same = subprocess.Popen([sys.executable, "-c", "import socket,sys,time; s=socket.create_server((sys.argv[1], 0)); time.sleep(600)", sys.argv[2]])
    gone = subprocess.Popen([sys.executable, "-c", "import socket,sys,time; s=socket.create_server((sys.argv[1], 0)); time.sleep(600)", sys.argv[3]], start_new_session=True)
    print(same.pid, gone.pid, flush=True)
    time.sleep(600)
    '''
    pod = subprocess.Popen([sys.executable, "-c", child, bed.address(2), bed.address(3), bed.address(4)],
                           stdout=subprocess.PIPE, text=True, cwd=sys.argv[1], start_new_session=True,
                           preexec_fn=bed.preexec())
    bed.started(pod.pid)
    print(bed.slot, pod.pid, pod.stdout.readline().strip(), flush=True)
    time.sleep(600)
""")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_what_a_bed_started_ends_with_it_however_it_is_killed(tmp_path: Path, how: signal.Signals) -> None:
    """The bed's process dies without any cleanup of its own: its pod, the pod's helper in the pod's
    process group and, where the cgroup hierarchy is writable, even a helper that left the group,
    are all ended by the guardian, and the slot is free only once they are."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                             cwd=tmp_path, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    slot, pod, same, gone = (int(x) for x in owner.stdout.readline().split())  # type: ignore[union-attr]
    assert _slot_is_held(slot)
    owner.send_signal(how)  # SIGTERM's default action: the process ends at once, no cleanup
    owner.wait(10)
    survivors = {pod, same} | ({gone} if cgroup_root() is not None else set())
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and _running(pid) for pid in survivors) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in survivors if _running(pid)] == []
    assert_nothing_left(tmp_path)
    assert not _slot_is_held(slot)
    if cgroup_root() is None:  # (a helper that left its group is only found through the cgroup)
        _kill_quietly(gone)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------- whole beds


class DevBed:
    """A `qgov dev` process, as a developer or a harness starts it."""

    def __init__(self, workdir: Path, cluster: str, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.out = workdir.with_name(workdir.name + ".out")
        self.proc = subprocess.Popen([QGOV, "dev", "--cluster", cluster, "--workdir", str(workdir)],
                                     stdout=open(self.out, "wb"), stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, start_new_session=True)

    def said(self, text: str) -> bool:
        return text in self.out.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.said(text):
            assert self.proc.poll() is None, f"qgov dev exited with {self.proc.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"qgov dev did not say {text!r} in {timeout:.0f} s:\n{self.output()}"
            time.sleep(0.2)

    def output(self) -> str:
        return self.out.read_text(errors="replace")[-3000:]

    def stop(self, how: signal.Signals) -> None:
        """As a harness does: the signal to the bed's whole process group."""
        try:
            os.killpg(self.proc.pid, how)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            raise AssertionError(f"qgov dev did not stop within 60 s of {how.name}:\n{self.output()}") from None

    def kubectl(self, *args: str) -> str:
        from qgov_dev.devcluster.upstream import kubectl_binary

        kubeconfig = self.workdir / ("control-plane/kubeconfig" if (self.workdir / "control-plane").exists()
                                     else "kubeconfig")
        result = subprocess.run([kubectl_binary(), "--kubeconfig", str(kubeconfig), *args], capture_output=True,
                                text=True, timeout=60)
        return result.stdout + result.stderr


def test_beds_stopped_at_random_moments_leave_nothing_behind(tmp_path: Path) -> None:
    """Twenty beds, each stopped by SIGTERM or SIGKILL at a random moment of its life: while the
    control plane starts, while the operator's pod starts, while it runs, while a crash-looping
    operator container is being restarted by the node; the emulator among them. After each, no
    process of the bed runs and no pod address is still bound. The seed is printed to replay."""
    seed = int(os.environ.get("QGOV_BED_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    print(f"seed {seed} (QGOV_BED_SEED replays it)")
    for round_ in range(20):
        how = rng.choice([signal.SIGTERM, signal.SIGKILL])
        kind = "emulator" if round_ % 5 == 4 else "upstream"
        crash_loop = kind == "upstream" and round_ % 3 == 2
        # the operator's container exits at once and the node restarts it with a back-off
        env = {"QGOV_DATABASE_URL": "nosuchdb://nowhere"} if crash_loop else {}
        bed = DevBed(tmp_path / f"bed-{round_}", kind, env)
        try:
            if crash_loop:
                bed.wait_for("operator: Deployment", 120)
                moment = rng.uniform(0.0, 6.0)  # within the first restarts' back-off and runs
            else:
                moment = rng.uniform(0.0, 14.0 if kind == "upstream" else 4.0)
            time.sleep(moment)
            print(f"round {round_}: {kind}{' (crash loop)' if crash_loop else ''}, {how.name} after {moment:.1f} s")
        finally:
            bed.stop(how)
        assert_nothing_left(bed.workdir)


def test_two_beds_side_by_side_both_run_their_operators(tmp_path: Path) -> None:
    """Two real control planes with their process nodes on one machine, each with qgov's operator
    Deployment: each pod gets an address of its own bed's slot, both operators start and answer
    their health check, and stopping both leaves nothing."""
    beds = [DevBed(tmp_path / name, "upstream") for name in ("left", "right")]
    try:
        for bed in beds:
            bed.wait_for("operator: Deployment", 180)
        ips = []
        for bed in beds:
            ip = bed.kubectl("get", "pods", "-n", "qgov-system", "-l", "app.kubernetes.io/name=qgov-operator",
                             "-o", "jsonpath={.items[0].status.podIP}").strip()
            ips.append(ip)
            deadline = time.monotonic() + 90
            while "qgov operator started" not in (logs := bed.kubectl(
                    "logs", "-n", "qgov-system", "deployment/qgov-operator")):
                assert time.monotonic() < deadline, f"the operator of {bed.workdir.name} did not start:\n{logs[-3000:]}"
                time.sleep(0.5)
            with urllib.request.urlopen(f"http://{ip}:8080/healthz", timeout=10) as answer:
                assert answer.status == 200
        assert len(set(ips)) == 2 and all(ip.startswith("127.") and not ip.startswith("127.0.") for ip in ips), ips
        restarts = [bed.kubectl("get", "pods", "-n", "qgov-system", "-l", "app.kubernetes.io/name=qgov-operator",
                                "-o", "jsonpath={.items[0].status.containerStatuses[0].restartCount}").strip()
                    for bed in beds]
        assert restarts == ["0", "0"], restarts  # no "address already in use" crash loop
    finally:
        for bed in beds:
            bed.stop(signal.SIGTERM)
    for bed in beds:
        assert_nothing_left(bed.workdir)
