"""The pod runner: Pods run as local processes, with status, exit codes, logs, mounts and kills."""

from __future__ import annotations

import os
import time


NS = "default"


def pod(name: str, code: str, **container) -> dict:
    return {"metadata": {"name": name}, "spec": {"restartPolicy": "Never", "containers": [
        {"name": "main", "image": "python:3.11", "command": ["python", "-c", code], **container}],
        **container.pop("spec", {})}}


def logs(core, name: str, **kw) -> str:
    """kubernetes 36's client returns repr(bytes) for text bodies (it skips decoding for `str`
    responses, against real clusters too), so read the raw body."""
    return core.read_namespaced_pod_log(name, NS, _preload_content=False, **kw).data.decode()


def gone(pid: int, timeout: float = 10) -> bool:
    """Whether the process exits within the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def wait_for(core, name: str, phases: tuple[str, ...], timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = core.read_namespaced_pod(name, NS)
        if p.status.phase in phases:
            return p
        time.sleep(0.1)
    raise AssertionError(f"pod {name} stayed {p.status.phase}")


def test_a_python_pod_succeeds_with_its_exit_code_and_logs(core) -> None:
    core.create_namespaced_pod(NS, pod("hello", "print('hello from the pod'); print('line 2')"))
    done = wait_for(core, "hello", ("Succeeded", "Failed"))
    assert done.status.phase == "Succeeded"
    term = done.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason) == (0, "Completed")
    assert logs(core, "hello") == "hello from the pod\nline 2\n"
    assert logs(core, "hello", tail_lines=1) == "line 2\n"


def test_a_failing_pod_reports_exit_code_and_termination_message(core) -> None:
    code = "import sys; open('/dev/termination-log', 'w').write('bad circuit at index 2'); sys.exit(3)"
    core.create_namespaced_pod(NS, pod("fails", code))
    done = wait_for(core, "fails", ("Succeeded", "Failed"))
    term = done.status.container_statuses[0].state.terminated
    assert (done.status.phase, term.exit_code, term.reason, term.message) == ("Failed", 3, "Error",
                                                                              "bad circuit at index 2")


def test_configmap_volumes_and_secret_env_reach_the_process(core) -> None:
    core.create_namespaced_config_map(NS, {"metadata": {"name": "circuits"}, "data": {"bell.qasm": "OPENQASM 2.0;"}})
    core.create_namespaced_secret(NS, {"metadata": {"name": "token"}, "stringData": {"token": "s3cr3t"}})
    code = ("import os; print(open('/etc/qgov/bell.qasm').read()); "
            "print(os.environ['TOKEN'] == 's3cr3t', os.environ['MODE'])")
    spec = pod("mounts", code, volumeMounts=[{"name": "c", "mountPath": "/etc/qgov"}],
               env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "token", "key": "token"}}},
                    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "circuits", "key": "bell.qasm"}}}])
    spec["spec"]["volumes"] = [{"name": "c", "configMap": {"name": "circuits"}}]
    core.create_namespaced_pod(NS, spec)
    assert wait_for(core, "mounts", ("Succeeded", "Failed")).status.phase == "Succeeded"
    assert logs(core, "mounts") == "OPENQASM 2.0;\nTrue OPENQASM 2.0;\n"


def test_deleting_a_running_pod_kills_its_process(core, tmp_path) -> None:
    pidfile = tmp_path / "pid"
    core.create_namespaced_pod(NS, pod("sleeper", f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid()));"
                                                  " time.sleep(300)"))
    wait_for(core, "sleeper", ("Running",))
    deadline = time.monotonic() + 10
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(pidfile.read_text())
    os.kill(pid, 0)  # alive
    core.delete_namespaced_pod("sleeper", NS)
    assert gone(pid), "the pod's process outlived the pod"


def test_a_deleted_pod_gets_sigterm_and_its_grace_period_then_sigkill(core, tmp_path) -> None:
    """As the kubelet does: a process that cleans up on SIGTERM may (cancel its remote work, say)."""
    marker, pidfile = tmp_path / "cleaned-up", tmp_path / "pid"
    code = (f"import os, signal, sys, time; open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
            f"def bye(*_): time.sleep(0.5); open({str(marker)!r}, 'w').write('yes'); sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, bye)\ntime.sleep(300)")
    body = pod("graceful", code)
    body["spec"]["terminationGracePeriodSeconds"] = 5
    core.create_namespaced_pod(NS, body)
    wait_for(core, "graceful", ("Running",))
    deadline = time.monotonic() + 10
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    core.delete_namespaced_pod("graceful", NS)
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == "yes"  # it had time to clean up
    stubborn = pod("stubborn", f"import os, signal, time; open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
                               "signal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(300)")
    stubborn["spec"]["terminationGracePeriodSeconds"] = 1
    pidfile.unlink()
    core.create_namespaced_pod(NS, stubborn)
    wait_for(core, "stubborn", ("Running",))
    while not pidfile.exists() and time.monotonic() < deadline + 10:
        time.sleep(0.05)
    pid = int(pidfile.read_text())
    core.delete_namespaced_pod("stubborn", NS)
    assert gone(pid), "a process that ignores SIGTERM outlived its grace period (1 s)"


def test_a_pod_without_a_command_fails_with_a_clear_reason(core) -> None:
    core.create_namespaced_pod(NS, {"metadata": {"name": "image-only"},
                                    "spec": {"containers": [{"name": "main", "image": "nginx"}]}})
    done = wait_for(core, "image-only", ("Failed",))
    assert "images are not pulled" in done.status.message


def test_the_termination_message_path_is_mapped_in_env_too(core) -> None:
    """A program told its termination-log path through env writes where the runner reads it."""
    code = "import os; open(os.environ['TERM_LOG'], 'w').write('usage: 1.5')"
    core.create_namespaced_pod(NS, pod("envpath", code, env=[{"name": "TERM_LOG", "value": "/dev/termination-log"}]))
    done = wait_for(core, "envpath", ("Succeeded", "Failed"))
    assert done.status.container_statuses[0].state.terminated.message == "usage: 1.5"


def test_an_empty_dir_at_tmp_leaves_the_termination_log_and_other_paths_alone(core) -> None:
    """Executor pods mount an emptyDir at /tmp (a read-only root filesystem): the runner's own
    directories, under /tmp too, are not substituted twice, nor /tmp inside another path."""
    code = ("import os; open(os.environ['TERM_LOG'], 'w').write(os.environ['OTHER'] + ' ' + "
            "str(os.path.isdir(os.environ['SCRATCH'])))")
    core.create_namespaced_pod(NS, pod("tmpdir", code, env=[
        {"name": "TERM_LOG", "value": "/dev/termination-log"}, {"name": "OTHER", "value": "/work/tmp/x"},
        {"name": "SCRATCH", "value": "/tmp"}], volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}],
        spec={"volumes": [{"name": "tmp", "emptyDir": {}}]}))
    done = wait_for(core, "tmpdir", ("Succeeded", "Failed"))
    assert done.status.container_statuses[0].state.terminated.message == "/work/tmp/x True", done.status


SERVE_ON_POD_IP = """
import os, socket, time
s = socket.create_server((os.environ["POD_IP"], 8080))  # the same port in both pods
print("listening on", os.environ["POD_IP"], flush=True)
time.sleep(60)
"""


def test_each_pod_has_its_own_address_given_by_the_downward_api(core) -> None:
    """All pods are processes of one host: each gets its own loopback address as status.podIP,
    passed in env by the downward API before it starts, so two replicas can listen on one port."""
    env = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    for name in ("replica-a", "replica-b"):
        core.create_namespaced_pod(NS, pod(name, SERVE_ON_POD_IP, env=env))
    running = {name: wait_for(core, name, ("Running",)) for name in ("replica-a", "replica-b")}
    ips = {name: p.status.pod_ip for name, p in running.items()}
    assert len(set(ips.values())) == 2 and all(ip.startswith("127.") and ip != "127.0.0.1" for ip in ips.values())
    for name, ip in ips.items():
        deadline = time.monotonic() + 20
        while f"listening on {ip}" not in logs(core, name) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert logs(core, name) == f"listening on {ip}\n"  # bound, not "address already in use"
    for name in ips:
        core.delete_namespaced_pod(name, NS, grace_period_seconds=0)
