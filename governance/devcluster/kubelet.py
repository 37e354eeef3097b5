"""The dev cluster's pod runner: runs each Pod's container command as a local process.

Images are not pulled: the command runs in this project's Python environment (`python`
and `python3` mean this interpreter). ConfigMap and Secret volumes are written to files
under the pod's directory, and the mount path is substituted in the command, args and
environment. Status moves Pending → Running → Succeeded/Failed with container statuses,
exit code and termination message; logs are kept per pod and served by the API.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from .store import ApiError, ResourceType, Store, WatchEvent, now_iso

NODE_NAME = "qgov-dev"
TERMINATION_LOG = "/dev/termination-log"
DEFAULT_GRACE_S = 30  # the API server's default terminationGracePeriodSeconds


class PodRunner:
    def __init__(self, store: Store, *, workdir: Path | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.store = store
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="qgov-pods-"))
        self.extra_env = extra_env or {}
        self.processes: dict[str, asyncio.subprocess.Process] = {}  # pod uid -> process
        # (namespace, secret name) -> directories where running pods have it mounted
        self.secret_mounts: dict[tuple[str, str], set[Path]] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        store.listeners.append(self._on_event)

    @property
    def pods(self) -> ResourceType:
        return self.store.types[("", "pods")]

    def _on_event(self, rtype: ResourceType, event: WatchEvent) -> None:
        if rtype.key == ("", "secrets") and event.type == "MODIFIED":
            self._refresh_secret_volumes(event.obj)
            return
        if rtype.key != ("", "pods"):
            return
        meta = event.obj["metadata"]
        uid = meta["uid"]
        if event.type == "DELETED" or meta.get("deletionTimestamp"):
            grace = (event.obj.get("spec") or {}).get("terminationGracePeriodSeconds", DEFAULT_GRACE_S)
            asyncio.get_running_loop().create_task(self._terminate(uid, float(grace), event.type == "DELETED"))
            return
        if uid not in self.tasks and (event.obj.get("status") or {}).get("phase", "Pending") == "Pending":
            node = (event.obj.get("spec") or {}).get("nodeName")
            if node in (None, "", NODE_NAME):
                self.tasks[uid] = asyncio.get_running_loop().create_task(self._run(copy.deepcopy(event.obj)))

    async def _terminate(self, uid: str, grace: float, remove: bool) -> None:
        """As the kubelet does: SIGTERM, then SIGKILL once the grace period is over; the pod's files
        (mounted Secrets, its termination log) stay until the process is gone."""
        proc = self.processes.get(uid)
        if proc is not None and proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), timeout=grace)
            except (ProcessLookupError, asyncio.TimeoutError):
                pass
        self._kill(uid)
        if remove:
            shutil.rmtree(self.workdir / uid, ignore_errors=True)

    def _kill(self, uid: str) -> None:
        proc = self.processes.pop(uid, None)
        if proc is not None and proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def close(self) -> None:
        for uid in list(self.processes):
            self._kill(uid)
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        if self._on_event in self.store.listeners:
            self.store.listeners.remove(self._on_event)

    # ------------------------------------------------------------------ status

    def _set_status(self, pod: dict[str, Any], **changes: Any) -> bool:
        meta = pod["metadata"]
        try:
            current = self.store.get(self.pods, meta["namespace"], meta["name"])
        except ApiError:
            return False
        if current["metadata"]["uid"] != meta["uid"]:
            return False
        status = copy.deepcopy(current.get("status") or {})
        status.update(changes)
        self.store.replace(self.pods, meta["namespace"], meta["name"], {**current, "status": status},
                           subresource="status")
        return True

    # ------------------------------------------------------------------ running

    def log_path(self, uid: str) -> Path:
        return self.workdir / uid / "log"

    async def logs(self, namespace: str, name: str, query: dict[str, str]) -> str:
        pod = self.store.get(self.pods, namespace, name)
        path = self.log_path(pod["metadata"]["uid"])
        text = path.read_text(errors="replace") if path.exists() else ""
        if query.get("tailLines"):
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(query["tailLines"]):])
        return text

    def _mounts(self, pod: dict[str, Any], container: dict[str, Any], root: Path) -> dict[str, str]:
        """Write ConfigMap/Secret volumes to files; returns mountPath -> local directory."""
        volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
        namespace = pod["metadata"]["namespace"]
        mapping: dict[str, str] = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"]) or {}
            local = root / "volumes" / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                cm = self.store.get(self.store.types[("", "configmaps")], namespace, volume["configMap"]["name"])
                for key, value in (cm.get("data") or {}).items():
                    (local / key).write_text(value)
            elif "secret" in volume:
                secret = self.store.get(self.store.types[("", "secrets")], namespace, volume["secret"]["secretName"])
                _write_secret(local, secret)
                self.secret_mounts.setdefault((namespace, volume["secret"]["secretName"]), set()).add(local)
            mapping[mount["mountPath"]] = str(local)
        return mapping

    def _refresh_secret_volumes(self, secret: dict[str, Any]) -> None:
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
                    cm = self.store.get(self.store.types[("", "configmaps")], namespace, ref["configMapKeyRef"]["name"])
                    env[item["name"]] = (cm.get("data") or {})[ref["configMapKeyRef"]["key"]]
                elif "secretKeyRef" in ref:
                    s = self.store.get(self.store.types[("", "secrets")], namespace, ref["secretKeyRef"]["name"])
                    env[item["name"]] = base64.b64decode((s.get("data") or {})[ref["secretKeyRef"]["key"]]).decode()
                elif "fieldRef" in ref:
                    from .selectors import get_path

                    env[item["name"]] = str(get_path(pod, ref["fieldRef"]["fieldPath"]) or "")
        return env

    async def _run(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        root = self.workdir / uid
        root.mkdir(parents=True, exist_ok=True)
        containers = (pod.get("spec") or {}).get("containers") or []
        restart_policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
        if len(containers) != 1 or not containers[0].get("command"):
            reason = ("qgov dev runs one container per pod from its command (images are not pulled): "
                      "set spec.containers[0].command")
            self._set_status(pod, phase="Failed", reason="Unsupported", message=reason)
            return
        container = containers[0]
        term_log = root / "termination-log"
        try:
            mounts = self._mounts(pod, container, root)
            # the termination message path maps like a mount, before env and args are rewritten
            mounts[container.get("terminationMessagePath", TERMINATION_LOG)] = str(term_log)
            env = self._env(pod, container, mounts)
        except (ApiError, KeyError) as exc:
            message = exc.message if isinstance(exc, ApiError) else f"missing key {exc}"
            self._set_status(pod, phase="Pending", reason="CreateContainerConfigError", message=message)
            return
        argv = [_substitute(str(a), mounts) for a in container["command"] + (container.get("args") or [])]
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        restarts = 0
        while True:
            started = now_iso()
            with open(self.log_path(uid), "ab") as log:
                try:
                    proc = await asyncio.create_subprocess_exec(
                        *argv, stdout=log, stderr=asyncio.subprocess.STDOUT, env=env, cwd=root,
                        start_new_session=True)
                except OSError as exc:
                    self._set_status(pod, phase="Failed", containerStatuses=[_status(
                        container, restarts, {"terminated": {"exitCode": 128, "reason": "StartError",
                                                             "message": str(exc), "startedAt": started,
                                                             "finishedAt": now_iso()}})])
                    return
            self.processes[uid] = proc
            if not self._set_status(pod, phase="Running", hostIP="127.0.0.1", podIP="127.0.0.1", startTime=started,
                                    containerStatuses=[_status(container, restarts, {"running": {"startedAt": started}},
                                                               ready=True)],
                                    conditions=[{"type": "Ready", "status": "True", "lastTransitionTime": started}]):
                self._kill(uid)
                return
            code = await proc.wait()
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
                self._set_status(pod, containerStatuses=[_status(container, restarts, {"waiting": {
                    "reason": "CrashLoopBackOff"}}, last={"terminated": terminated})])
                await asyncio.sleep(min(10.0, 0.5 * 2 ** restarts))
                continue
            self._set_status(pod, phase="Succeeded" if code == 0 else "Failed",
                             containerStatuses=[_status(container, restarts, {"terminated": terminated})],
                             conditions=[{"type": "Ready", "status": "False", "lastTransitionTime": now_iso(),
                                          "reason": "PodCompleted"}])
            return


def _status(container: dict[str, Any], restarts: int, state: dict[str, Any], *, ready: bool = False,
            last: dict[str, Any] | None = None) -> dict[str, Any]:
    status = {"name": container["name"], "image": container.get("image", ""), "imageID": "",
              "ready": ready, "started": "running" in state, "restartCount": restarts, "state": state}
    if last:
        status["lastState"] = last
    return status


def _substitute(text: str, mounts: dict[str, str]) -> str:
    for mount_path in sorted(mounts, key=len, reverse=True):
        text = text.replace(mount_path, mounts[mount_path])
    return text


def _write_secret(directory: Path, secret: dict[str, Any]) -> None:
    for key, value in (secret.get("data") or {}).items():
        staged = directory / f".{key}.tmp"
        staged.write_bytes(base64.b64decode(value))
        os.replace(staged, directory / key)
