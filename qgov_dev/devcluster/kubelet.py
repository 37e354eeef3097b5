"""The pod runner: runs each Pod's container command as a local process, as a kubelet would.

Images are not pulled: the command runs in this project's Python environment (`python`
and `python3` mean this interpreter; a container without a command gets its image's entry
point from IMAGE_COMMANDS). ConfigMap, Secret and projected volumes are written to files under
the pod's directory, and the mount path is substituted in the command, args and environment;
the ServiceAccount volume (`/var/run/secrets/kubernetes.io/serviceaccount`) is bind-mounted at
its real path in a mount namespace of the pod's own, because in-cluster clients read it there.
Status moves Pending → Running → Succeeded/Failed with container statuses, exit code and
termination message; logs are kept per pod.

The runner reads and writes through a `PodSource`: the emulator's store (`StorePods`, here), or
a real API server as a node (`node.ApiPods`).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, Protocol

from .bed import Bed
from .store import ApiError, ResourceType, Store, WatchEvent, now_iso

NODE_NAME = "qgov-dev"
TERMINATION_LOG = "/dev/termination-log"
HOST_IP = "127.0.0.1"
DEFAULT_GRACE_S = 30  # the API server's default terminationGracePeriodSeconds
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# Paths a program reads at a fixed place (no substitution can reach them): bind-mounted for real.
REAL_MOUNTS = (SERVICE_ACCOUNT_DIR,)
# An image's entry point (its Dockerfile's ENTRYPOINT), for containers that give no command (as the
# operator's Deployment).
IMAGE_COMMANDS = {"ghcr.io/qgov/operator": ["qgov", "operator", "--liveness", "http://0.0.0.0:8080/healthz"],
                  "ghcr.io/qgov/executor": ["python", "-m", "executor"]}


class PodSource(Protocol):
    """What the runner needs from the cluster: objects a pod references, and its status."""

    def configmap(self, namespace: str, name: str) -> dict[str, Any]: ...

    def secret(self, namespace: str, name: str) -> dict[str, Any]: ...

    def set_status(self, pod: dict[str, Any], changes: dict[str, Any]) -> bool:
        """Merge `changes` into the pod's status; False when the pod (this uid) is gone."""

    def token(self, pod: dict[str, Any], audience: str | None, seconds: int) -> tuple[str, float]:
        """A ServiceAccount token bound to the pod: (token, seconds until it should be renewed)."""

    def terminated(self, pod: dict[str, Any]) -> None:
        """The pod's processes are gone after a graceful deletion (a kubelet then removes it)."""


class StorePods:
    """The emulator's store as a PodSource (it deletes pods at once: nothing to confirm)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def configmap(self, namespace: str, name: str) -> dict[str, Any]:
        return self.store.get(self.store.types[("", "configmaps")], namespace, name)

    def secret(self, namespace: str, name: str) -> dict[str, Any]:
        return self.store.get(self.store.types[("", "secrets")], namespace, name)

    def set_status(self, pod: dict[str, Any], changes: dict[str, Any]) -> bool:
        meta, pods = pod["metadata"], self.store.types[("", "pods")]
        try:
            current = self.store.get(pods, meta["namespace"], meta["name"])
        except ApiError:
            return False
        if current["metadata"]["uid"] != meta["uid"]:
            return False
        status = copy.deepcopy(current.get("status") or {})
        status.update(changes)
        self.store.replace(pods, meta["namespace"], meta["name"], {**current, "status": status},
                           subresource="status")
        return True

    def token(self, pod: dict[str, Any], audience: str | None, seconds: int) -> tuple[str, float]:
        raise ApiError(400, "BadRequest", "the dev cluster issues no ServiceAccount tokens")

    def terminated(self, pod: dict[str, Any]) -> None:
        return None


class PodRunner:
    def __init__(self, source: PodSource | Store, *, workdir: Path | None = None,
                 extra_env: dict[str, str] | None = None, node_name: str = NODE_NAME,
                 bed: Bed | None = None) -> None:
        """`bed`: the test bed whose pod addresses and guardian the pods get (bed.py); without one
        the runner claims its own and frees it in `close()`."""
        self.bed = bed or Bed.claim()
        self._own_bed = bed is None
        self.store = source if isinstance(source, Store) else None
        self.source: PodSource = StorePods(source) if isinstance(source, Store) else source
        self.node_name = node_name
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="qgov-pods-"))
        self.extra_env = extra_env or {}
        self.processes: dict[str, asyncio.subprocess.Process] = {}  # pod uid -> process
        self.loop: asyncio.AbstractEventLoop | None = None
        self.terminating: set[str] = set()
        # (namespace, secret name) -> directories where running pods have it mounted
        self.secret_mounts: dict[tuple[str, str], set[Path]] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.names: dict[tuple[str, str], str] = {}  # (namespace, name) -> uid of the pod run under it
        self.ips: dict[str, str] = {}  # pod uid -> its address (_allocate_ip)
        if self.store is not None:
            self.store.listeners.append(self._on_event)

    def _on_event(self, rtype: ResourceType, event: WatchEvent) -> None:
        if rtype.key == ("", "secrets") and event.type == "MODIFIED":
            self.secret_changed(event.obj)
        elif rtype.key == ("", "pods"):
            self.pod_event(event.type, event.obj)

    def pod_event(self, type_: str, pod: dict[str, Any]) -> None:
        """A watch event of a pod (on the runner's loop): run it, or stop it when it is deleted."""
        meta = pod["metadata"]
        uid = meta["uid"]
        if type_ == "DELETED" or meta.get("deletionTimestamp"):
            grace = meta.get("deletionGracePeriodSeconds")
            if grace is None:
                grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", DEFAULT_GRACE_S)
            if (uid in self.tasks or type_ != "DELETED") and uid not in self.terminating:
                self.terminating.add(uid)
                asyncio.get_running_loop().create_task(self._terminate(uid, float(grace), pod, type_ == "DELETED"))
            return
        if uid not in self.tasks and (pod.get("status") or {}).get("phase", "Pending") == "Pending":
            node = (pod.get("spec") or {}).get("nodeName")
            if node in (None, "", self.node_name) if self.store is not None else node == self.node_name:
                self.names[(meta["namespace"], meta["name"])] = uid
                self.loop = asyncio.get_running_loop()
                self.tasks[uid] = self.loop.create_task(self._run(copy.deepcopy(pod)))

    async def _terminate(self, uid: str, grace: float, pod: dict[str, Any], removed: bool) -> None:
        """As the kubelet does: SIGTERM, then SIGKILL once the grace period is over; the pod's files
        (mounted Secrets, its termination log) stay until the process is gone. A pod that is only
        marked for deletion is then removed (the API server waits for its node to say so)."""
        proc = self.processes.get(uid)
        if proc is not None and proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), timeout=grace)
            except (ProcessLookupError, asyncio.TimeoutError):
                pass
        self._kill(uid)
        task = self.tasks.get(uid)
        if task is not None and not task.done() and proc is None:
            task.cancel()  # not started yet (mounting, or waiting to restart)
        if not removed:
            await self._call(self.source.terminated, pod)
        shutil.rmtree(self.workdir / uid, ignore_errors=True)
        self.tasks.pop(uid, None)

    def _kill(self, uid: str) -> None:
        proc = self.processes.pop(uid, None)
        if proc is not None and proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.bed.ended(proc.pid)  # killed: its pid cannot be reused before it is reaped

    def _end_group(self, proc: asyncio.subprocess.Process) -> None:
        """The container's main process is gone: what it left in its group goes too, as a kubelet
        ends every process of a container's cgroup."""
        if proc.returncode is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.bed.ended(proc.pid)

    async def close(self) -> None:
        """Stop every pod at once (SIGKILL, as a node that goes away); a process started while this
        runs, or missed by it, is ended by the bed's guardian."""
        for uid in list(self.processes):
            self._kill(uid)
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        for uid in list(self.processes):  # started between the kill and a task's cancellation
            self._kill(uid)
        if self.store is not None and self._on_event in self.store.listeners:
            self.store.listeners.remove(self._on_event)
        if self._own_bed:
            await asyncio.to_thread(self.bed.close)

    # ------------------------------------------------------------------ status

    async def _call(self, fn, *args):  # type: ignore[no-untyped-def]
        """Call into the source: on this loop for the emulator's store (not thread-safe), in a
        thread for an API client (blocking HTTP must not stall every other pod)."""
        if getattr(self.source, "blocking", False):
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    async def _set_status(self, pod: dict[str, Any], **changes: Any) -> bool:
        return bool(await self._call(self.source.set_status, pod, changes))

    # ------------------------------------------------------------------ running

    def log_path(self, uid: str) -> Path:
        return self.workdir / uid / "log"

    async def logs(self, namespace: str, name: str, query: dict[str, str]) -> str:
        uid = self.names.get((namespace, name))
        if uid is None and self.store is not None:
            uid = self.store.get(self.pods, namespace, name)["metadata"]["uid"]
        path = self.log_path(uid) if uid else None
        text = path.read_text(errors="replace") if path is not None and path.exists() else ""
        if query.get("tailLines"):
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(query["tailLines"]):])
        return text

    def _mounts(self, pod: dict[str, Any], container: dict[str, Any], root: Path) -> dict[str, str]:
        """Write ConfigMap, Secret and projected volumes to files; returns mountPath -> local directory."""
        volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
        namespace = pod["metadata"]["namespace"]
        mapping: dict[str, str] = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"]) or {}
            local = root / "volumes" / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                cm = self.source.configmap(namespace, volume["configMap"]["name"])
                for key, value in (cm.get("data") or {}).items():
                    (local / key).write_text(value)
            elif "secret" in volume:
                secret = self.source.secret(namespace, volume["secret"]["secretName"])
                _write_secret(local, secret)
                self.secret_mounts.setdefault((namespace, volume["secret"]["secretName"]), set()).add(local)
            elif "projected" in volume:
                self._project(pod, volume["projected"], local)
            mapping[mount["mountPath"]] = str(local)
        return mapping

    def _project(self, pod: dict[str, Any], projected: dict[str, Any], local: Path) -> None:
        """A projected volume, as the ServiceAccount admission plugin adds to every pod: a token
        bound to the pod (renewed at 80% of its life, as the kubelet does), the cluster's CA
        (ConfigMap kube-root-ca.crt) and the namespace (downward API)."""
        from .selectors import get_path

        namespace = pod["metadata"]["namespace"]
        for source in projected.get("sources") or []:
            if "serviceAccountToken" in source:
                self._write_token(pod, source["serviceAccountToken"], local)
            elif "configMap" in source:
                data = self.source.configmap(namespace, source["configMap"]["name"]).get("data") or {}
                items = source["configMap"].get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    _write_atomic(local / item["path"], data[item["key"]].encode())
            elif "secret" in source:
                secret = self.source.secret(namespace, source["secret"]["name"])
                _write_secret(local, secret)
            elif "downwardAPI" in source:
                for item in source["downwardAPI"].get("items") or []:
                    value = get_path(pod, item["fieldRef"]["fieldPath"]) if "fieldRef" in item else ""
                    _write_atomic(local / item["path"], str(value or "").encode())

    def _write_token(self, pod: dict[str, Any], spec: dict[str, Any], local: Path) -> None:
        token, renew_in = self.source.token(pod, spec.get("audience"), int(spec.get("expirationSeconds") or 3607))
        _write_atomic(local / spec["path"], token.encode())
        uid, loop = pod["metadata"]["uid"], self.loop

        def renew() -> None:
            if uid in self.tasks and not self.tasks[uid].done() and local.exists():
                loop.create_task(self._call(self._write_token, pod, spec, local))

        loop.call_soon_threadsafe(loop.call_later, renew_in, renew)

    def secret_changed(self, secret: dict[str, Any]) -> None:
        """A mounted Secret that changes is rewritten in place, as the kubelet does (atomically: a
        reader sees the old file or the new one, never half of one)."""
        key = (secret["metadata"]["namespace"], secret["metadata"]["name"])
        for local in list(self.secret_mounts.get(key, ())):
            if local.exists():
                _write_secret(local, secret)
            else:
                self.secret_mounts[key].discard(local)

    def _env(self, pod: dict[str, Any], container: dict[str, Any], mounts: dict[str, str]) -> dict[str, str]:
        namespace = pod["metadata"]["namespace"]
        env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"),
               "HOSTNAME": pod["metadata"]["name"], "PYTHONUNBUFFERED": "1", **self.extra_env}
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = _substitute(str(item["value"]), mounts)
            elif "valueFrom" in item:
                ref = item["valueFrom"]
                if "configMapKeyRef" in ref:
                    cm = self.source.configmap(namespace, ref["configMapKeyRef"]["name"])
                    env[item["name"]] = (cm.get("data") or {})[ref["configMapKeyRef"]["key"]]
                elif "secretKeyRef" in ref:
                    s = self.source.secret(namespace, ref["secretKeyRef"]["name"])
                    env[item["name"]] = base64.b64decode((s.get("data") or {})[ref["secretKeyRef"]["key"]]).decode()
                elif "fieldRef" in ref:
                    from .selectors import get_path

                    env[item["name"]] = str(get_path(pod, ref["fieldRef"]["fieldPath"]) or "")
        return env

    def _allocate_ip(self, uid: str, pod: dict[str, Any]) -> str:
        """The pod's own address: every process here shares the host's network, so each pod gets a
        loopback address of its own (all of 127/8 is the loopback interface on Linux) from its test
        bed's slot (127.N.0.2, 127.N.0.3, ...: bed.py), and two replicas of one Deployment can
        listen on the same port, as pods on a real node can, and two beds on one machine never
        share an address. A hostNetwork pod has the host's address, as on a real node."""
        if (pod.get("spec") or {}).get("hostNetwork"):
            return HOST_IP
        taken = set(self.ips.values())
        for n in range(2, 1 << 16):
            if n & 255 not in (0, 255) and (ip := self.bed.address(n)) not in taken:
                self.ips[uid] = ip
                return ip
        raise RuntimeError("no free loopback address for another pod")

    async def _run(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        ip = self._allocate_ip(uid, pod)
        # known before the container starts, as a kubelet knows the sandbox's IP: the downward API
        # (status.podIP in env) reads it
        pod["status"] = {**(pod.get("status") or {}), "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": HOST_IP}
        try:
            await self._run_pod(pod, ip)
        finally:
            self.ips.pop(uid, None)

    async def _run_pod(self, pod: dict[str, Any], ip: str) -> None:
        uid = pod["metadata"]["uid"]
        root = self.workdir / uid
        root.mkdir(parents=True, exist_ok=True)
        containers = (pod.get("spec") or {}).get("containers") or []
        restart_policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
        command = _command(containers[0]) if len(containers) == 1 else None
        if command is None:
            reason = ("qgov's pod runner runs one container per pod from its command (images are not pulled): "
                      "set spec.containers[0].command, or use an image it knows: " + ", ".join(IMAGE_COMMANDS))
            await self._set_status(pod, phase="Failed", reason="Unsupported", message=reason)
            return
        container = containers[0]
        term_log = root / "termination-log"
        delay, said = 0.5, ""
        while True:  # as a kubelet: a missing ConfigMap or Secret (or a refusal) is retried, not final
            try:
                mounts = await self._call(self._mounts, pod, container, root)
                binds = {path: mounts.pop(path) for path in REAL_MOUNTS if path in mounts}
                # the termination message path maps like a mount, before env and args are rewritten
                mounts[container.get("terminationMessagePath", TERMINATION_LOG)] = str(term_log)
                env = await self._call(self._env, pod, container, mounts)
                break
            except Exception as exc:  # noqa: BLE001 - whatever the cause, the pod says it, as a kubelet does
                message = str(getattr(exc, "message", None) or getattr(exc, "reason", None)
                              or f"{type(exc).__name__}: {exc}")
                if message != said:
                    said = message
                    if not await self._set_status(pod, phase="Pending", reason="CreateContainerConfigError",
                                                  message=message, containerStatuses=[_status(container, 0, {
                                                      "waiting": {"reason": "CreateContainerConfigError",
                                                                  "message": message}})]):
                        return  # the pod is gone
                await asyncio.sleep(delay)
                delay = min(10.0, delay * 2)
        argv = [_substitute(str(a), mounts) for a in command]
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        elif argv[0] == "qgov":
            argv[0] = str(Path(sys.executable).parent / "qgov")
        argv = _in_mount_namespace(argv, binds)
        restarts = 0
        while True:
            if uid in self.terminating or not root.exists():
                return  # deleted meanwhile (while it waited to restart, say): nothing more to run
            started = now_iso()
            with open(self.log_path(uid), "ab") as log:
                try:
                    # its own process group (what is killed when it ends, as a container's cgroup is),
                    # in the bed's cgroup, dying with this node (bed.py)
                    proc = await asyncio.create_subprocess_exec(
                        *argv, stdout=log, stderr=asyncio.subprocess.STDOUT, env=env, cwd=root,
                        start_new_session=True, preexec_fn=self.bed.preexec())
                except OSError as exc:
                    await self._set_status(pod, phase="Failed", containerStatuses=[_status(
                        container, restarts, {"terminated": {"exitCode": 128, "reason": "StartError",
                                                             "message": str(exc), "startedAt": started,
                                                             "finishedAt": now_iso()}})])
                    return
            self.processes[uid] = proc
            self.bed.started(proc.pid)
            if not await self._set_status(pod, phase="Running", hostIP=HOST_IP, podIP=ip, podIPs=[{"ip": ip}],
                                          startTime=started,
                                    containerStatuses=[_status(container, restarts, {"running": {"startedAt": started}},
                                                               ready=True)],
                                    conditions=_conditions(True, started)):
                self._kill(uid)
                return
            try:
                code = await proc.wait()
            finally:
                self._end_group(proc)
            self.processes.pop(uid, None)
            message = term_log.read_text(errors="replace")[-4096:] if term_log.exists() else ""
            if not message and code and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
                lines = self.log_path(uid).read_text(errors="replace").splitlines()[-80:]
                message = "\n".join(lines)[-4096:]
            terminated = {"exitCode": code if code >= 0 else 128 - code, "reason": "Completed" if code == 0 else "Error",
                          "startedAt": started, "finishedAt": now_iso()}
            if code < 0:
                terminated["signal"] = -code
            if message:
                terminated["message"] = message
            if code != 0 and restart_policy in ("OnFailure", "Always") and restarts < 5:
                restarts += 1
                await self._set_status(pod, containerStatuses=[_status(container, restarts, {"waiting": {
                    "reason": "CrashLoopBackOff"}}, last={"terminated": terminated})])
                await asyncio.sleep(min(10.0, 0.5 * 2 ** restarts))
                continue
            await self._set_status(pod, phase="Succeeded" if code == 0 else "Failed",
                             containerStatuses=[_status(container, restarts, {"terminated": terminated})],
                             conditions=_conditions(False, now_iso(), "PodCompleted"))
            return


def _status(container: dict[str, Any], restarts: int, state: dict[str, Any], *, ready: bool = False,
            last: dict[str, Any] | None = None) -> dict[str, Any]:
    status = {"name": container["name"], "image": container.get("image", ""), "imageID": "",
              "ready": ready, "started": "running" in state, "restartCount": restarts, "state": state}
    if last:
        status["lastState"] = last
    return status


def _command(container: dict[str, Any]) -> list[str] | None:
    """The container's command and args; an image's entry point when it gives no command."""
    command = container.get("command")
    if not command:
        image = str(container.get("image", "")).split("@")[0].rsplit(":", 1)[0]
        command = IMAGE_COMMANDS.get(image)
        if command is None:
            return None
    return [*command, *(container.get("args") or [])]


def _conditions(ready: bool, when: str, reason: str | None = None) -> list[dict[str, Any]]:
    """The pod conditions a kubelet keeps (PodScheduled is the scheduler's)."""
    out = []
    for type_, status in (("PodReadyToStartContainers", True), ("Initialized", True), ("ContainersReady", ready),
                          ("Ready", ready)):
        condition = {"type": type_, "status": "True" if status else "False", "lastProbeTime": None,
                     "lastTransitionTime": when}
        if reason and not status:
            condition["reason"] = reason
        out.append(condition)
    return out


def _in_mount_namespace(argv: list[str], binds: dict[str, str]) -> list[str]:
    """Run argv where each `binds` path (a directory that must be at its real place, as the
    ServiceAccount's) shows the pod's own files: a private mount namespace (needs root, as a
    kubelet does), so no other process sees them."""
    if not binds:
        return argv
    script = "".join(f'mkdir -p "{target}" && mount --bind "{source}" "{target}" && '
                     for target, source in binds.items())
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script + 'exec "$@"', "sh", *argv]


def _substitute(text: str, mounts: dict[str, str]) -> str:
    """Each mount path where it starts a path (not inside another: `/tmp` is not in `/work/tmp`),
    in one pass, longest first (a substituted local directory, itself often under /tmp, is never
    substituted again)."""
    if not mounts:
        return text
    pattern = "|".join(re.escape(p) for p in sorted(mounts, key=len, reverse=True))
    return re.sub(rf"(?<![\w.-])(?:{pattern})", lambda m: mounts[m.group(0)], text)


def _write_secret(directory: Path, secret: dict[str, Any]) -> None:
    for key, value in (secret.get("data") or {}).items():
        _write_atomic(directory / key, base64.b64decode(value))


def _write_atomic(path: Path, data: bytes) -> None:
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_bytes(data)
    os.replace(staged, path)
