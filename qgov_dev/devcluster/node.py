"""A node for a real API server: registers a Node, runs the pods the scheduler binds to it as
local processes (the pod runner of the emulator, `kubelet.PodRunner`), and serves their logs on
a kubelet port, as a kubelet does for `kubectl logs`.

It authenticates as `system:node:<name>` (group `system:nodes`), so the API server's Node
authorizer and NodeRestriction admission judge it as they judge a kubelet: it reads only the
Secrets and ConfigMaps of pods bound to it, and asks the TokenRequest API for each pod's
ServiceAccount token (bound to the pod), so the process talks to the API server as that
ServiceAccount and RBAC applies to it.

Not a kubelet: no images, no cgroups, no probes, no securityContext (every process runs as the
node's user), and the Service `kubernetes` reaches the API server's real address (there is no
kube-proxy); see the list of differences in docs/testbed.md.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import platform
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any

import kubernetes
from aiohttp import web
from kubernetes.client.rest import ApiException

from governance.api.errors import describe_error
from governance.loopthread import stop_loop_thread
from .bed import Bed
from .kubelet import PodRunner
from .pki import Authority

log = logging.getLogger("qgov.node")
LEASE_SECONDS = 40
RENEW_SECONDS = 10
SECRET_SYNC_SECONDS = 1.0


class ApiPods:
    """A real API server as the pod runner's PodSource, with the node's own credentials."""

    blocking = True

    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        self.core = kubernetes.client.CoreV1Api(api)

    def configmap(self, namespace: str, name: str) -> dict[str, Any]:
        return self.core.api_client.sanitize_for_serialization(self.core.read_namespaced_config_map(name, namespace))

    def secret(self, namespace: str, name: str) -> dict[str, Any]:
        return self.core.api_client.sanitize_for_serialization(self.core.read_namespaced_secret(name, namespace))

    def set_status(self, pod: dict[str, Any], changes: dict[str, Any]) -> bool:
        meta = pod["metadata"]
        # a strategic merge: conditions and container statuses merge by type and name
        try:
            current = self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], {
                "metadata": {"uid": meta["uid"]}, "status": changes})
        except ApiException as exc:
            if exc.status in (404, 409, 422):  # gone, or another pod under this name now
                return False
            raise
        return bool(current.metadata.uid == meta["uid"])

    def token(self, pod: dict[str, Any], audience: str | None, seconds: int) -> tuple[str, float]:
        spec = pod.get("spec") or {}
        answer = self.core.create_namespaced_service_account_token(
            spec.get("serviceAccountName") or "default", pod["metadata"]["namespace"], {
                "spec": {"audiences": [audience] if audience else None, "expirationSeconds": seconds,
                         "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"],
                                            "uid": pod["metadata"]["uid"]}}})
        expires = answer.status.expiration_timestamp
        life = (expires - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
        return answer.status.token, max(1.0, 0.8 * life)  # the kubelet renews at 80% of the life

    def terminated(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        try:
            self.core.delete_namespaced_pod(meta["name"], meta["namespace"], body={
                "gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}})
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise


class Node:
    """Start with `start()` (in its own thread and event loop), stop with `stop()`."""

    def __init__(self, kubeconfig: Path, authority: Authority, *, name: str = "qgov-node",
                 workdir: Path | None = None, api_server: str = "", cpu: str = "32", memory: str = "64Gi",
                 pods: int = 500, extra_env: dict[str, str] | None = None, bed: Bed | None = None) -> None:
        """`bed`: the test bed the pods belong to (bed.py); without one the node claims its own."""
        self.name, self.kubeconfig, self.authority = name, kubeconfig, authority
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="qgov-node-"))
        self.capacity = {"cpu": cpu, "memory": memory, "pods": str(pods), "ephemeral-storage": "100Gi"}
        host, _, port = api_server.removeprefix("https://").partition(":")
        # the in-cluster address every pod is told (a kubelet gives the Service `kubernetes`)
        env = {"KUBERNETES_SERVICE_HOST": host or "127.0.0.1", "KUBERNETES_SERVICE_PORT": port or "443",
               "KUBERNETES_SERVICE_PORT_HTTPS": port or "443", **(extra_env or {})}
        self.api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.leases = kubernetes.client.CoordinationV1Api(self.api)
        self.runner = PodRunner(ApiPods(self.api), workdir=self.workdir / "pods", extra_env=env, node_name=name,
                                bed=bed)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=f"node-{name}", daemon=True)
        self._stopping = threading.Event()
        self._site: web.AppRunner | None = None
        self.kubelet_port = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(30)
        self._register()
        for target in (self._watch_pods, self._heartbeat, self._sync_secrets):
            threading.Thread(target=target, name=f"node-{self.name}-{target.__name__}", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        asyncio.run_coroutine_threadsafe(self.runner.close(), self.loop).result(30)
        if self._site is not None:
            asyncio.run_coroutine_threadsafe(self._site.cleanup(), self.loop).result(30)
        stop_loop_thread(self.loop, self._thread)
        self.api.close()

    # ------------------------------------------------------------------ the Node object

    def _node_status(self) -> dict[str, Any]:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "capacity": self.capacity, "allocatable": self.capacity,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": {"architecture": "amd64" if platform.machine() == "x86_64" else platform.machine(),
                         "operatingSystem": "linux", "osImage": "qgov node (local processes)",
                         "kernelVersion": platform.release(), "kubeletVersion": "qgov-node",
                         "kubeProxyVersion": "", "containerRuntimeVersion": "qgov://processes",
                         "machineID": "", "systemUUID": "", "bootID": ""},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "qgov node is posting ready status", "lastHeartbeatTime": now,
                            "lastTransitionTime": now}],
        }

    def _register(self) -> None:
        """Create the Node (NodeRestriction lets a node create only itself), its status and Lease."""
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.name, "labels": {
            "kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": self._node_status()["nodeInfo"]["architecture"]}}}
        try:
            self.core.create_node(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
        self.core.patch_node_status(self.name, {"status": self._node_status()})
        self._renew()

    def _heartbeat(self) -> None:
        """Renew the node's Lease (what the node lifecycle controller reads) and its Ready condition;
        a node that stops is marked unreachable and tainted, as a kubelet's would be."""
        while not self._stopping.wait(RENEW_SECONDS):
            try:
                self._renew()
            except Exception as exc:  # noqa: BLE001 - a missed heartbeat is retried at the next one
                if not self._stopping.is_set():
                    log.warning(f"node {self.name}: heartbeat failed: {describe_error(exc)}")

    def _renew(self) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        try:  # a patch needs no resourceVersion (a Lease allows no unconditional update)
            self.leases.patch_namespaced_lease(self.name, "kube-node-lease", {"spec": {"renewTime": now}})
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.leases.create_namespaced_lease("kube-node-lease", {
                "metadata": {"name": self.name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now}})
        self.core.patch_node_status(self.name, {"status": {"conditions": self._node_status()["conditions"]}})

    def _sync_secrets(self) -> None:
        """Mounted Secrets that change are rewritten in running pods (a kubelet re-reads them on its
        sync period, about a minute; here every SECRET_SYNC_SECONDS, as a test bed wants it)."""
        seen: dict[tuple[str, str], str] = {}
        while not self._stopping.wait(SECRET_SYNC_SECONDS):
            for key in list(self.runner.secret_mounts):
                if not self.runner.secret_mounts.get(key):
                    continue
                try:
                    secret = self.core.read_namespaced_secret(key[1], key[0])
                except Exception:  # noqa: BLE001 - gone, or not readable now: tried at the next sync
                    continue
                version = secret.metadata.resource_version
                if seen.get(key) != version:  # (first sight too: it may have changed since it was mounted)
                    seen[key] = version
                    body = self.api.sanitize_for_serialization(secret)
                    self.loop.call_soon_threadsafe(self.runner.secret_changed, body)

    # ------------------------------------------------------------------ pods

    def _watch_pods(self) -> None:
        """List then watch the pods bound here; relist on 410 Gone (etcd compacted) or a break."""
        selector = f"spec.nodeName={self.name}"
        while not self._stopping.is_set():
            try:
                listed = self.core.list_pod_for_all_namespaces(field_selector=selector, _preload_content=False)
                import json

                body = json.loads(listed.data)
                for pod in body["items"]:
                    self._deliver("ADDED", pod)
                version = body["metadata"]["resourceVersion"]
                watch = kubernetes.watch.Watch()
                for event in watch.stream(self.core.list_pod_for_all_namespaces, field_selector=selector,
                                          resource_version=version, timeout_seconds=300,
                                          allow_watch_bookmarks=True, _preload_content=False):
                    if self._stopping.is_set():
                        watch.stop()
                        return
                    kind, obj = event["type"], event["raw_object"]
                    if kind == "ERROR":
                        break  # 410 Gone: relist
                    if kind != "BOOKMARK":
                        self._deliver(kind, obj)
            except Exception:  # noqa: BLE001 - the API server restarting, say: list again shortly
                if self._stopping.wait(1.0):
                    return

    def _deliver(self, kind: str, pod: dict[str, Any]) -> None:
        self.loop.call_soon_threadsafe(self.runner.pod_event, kind, pod)

    # ------------------------------------------------------------------ the kubelet port

    async def _serve(self) -> None:
        """HTTPS for the API server's `pods/log` proxy: GET /containerLogs/{ns}/{pod}/{container}.
        Only a client with a certificate from the cluster's CA (the API server's) gets in."""
        pair = self.authority.issue(f"kubelet-{self.name}", self.name, hosts=("127.0.0.1", self.name), server=True)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.authority.pair.cert))
        context.load_cert_chain(pair.cert, pair.key)
        context.verify_mode = ssl.CERT_REQUIRED
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._logs)
        app.router.add_get("/healthz", self._healthz)
        self._site = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await self._site.setup()
        site = web.TCPSite(self._site, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.kubelet_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _logs(self, request: web.Request) -> web.Response:
        info = request.match_info
        text = await self.runner.logs(info["namespace"], info["pod"], dict(request.query))
        return web.Response(text=text, content_type="text/plain")


def node_kubeconfig(control_plane: Any, name: str = "qgov-node") -> Path:
    """A kubelet's identity on `control_plane` (a controlplane.ControlPlane)."""
    return control_plane.client_kubeconfig(f"node-{name}", f"system:node:{name}", groups=("system:nodes",))

