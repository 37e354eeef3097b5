"""An upstream Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager
and kube-scheduler, built from source by `scripts/kube-binaries.sh`, started as child processes.

Why: the emulator is written by the same hands as the operator; the real API server is where
users run qgov. This runs the real one with the settings a production cluster has where qgov
depends on them: a secure port with client certificates, the Node and RBAC authorizers,
ServiceAccount token issuing, the default admission plugins plus
OwnerReferencesPermissionEnforcement, and the controllers that own what the operator creates
(garbage collector, namespaces, ServiceAccounts, Deployments, ReplicaSets). A node to run the
pods is `node.py`.

Each component runs as its own identity (a client certificate: CN = user, O = groups), so RBAC
judges the controllers as it would in a kubeadm cluster. Logs go to `<workdir>/logs/`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .bed import Bed
from .pki import Authority, KeyPair, service_account_keys

ROOT = Path(__file__).resolve().parents[2]
BINARIES_SCRIPT = ROOT / "scripts" / "kube-binaries.sh"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# The controllers a one-node cluster needs for what qgov creates and a user installs (the node
# lifecycle controller lifts the not-ready taint admission puts on a new Node).
CONTROLLERS = ("garbage-collector-controller", "namespace-controller", "serviceaccount-controller",
               "serviceaccount-token-controller", "root-ca-certificate-publisher-controller",
               "deployment-controller", "replicaset-controller", "clusterrole-aggregation-controller",
               "pod-garbage-collector-controller", "node-lifecycle-controller")
# What makes a Service route (kube-proxy reads EndpointSlices): a real node's control plane runs them.
ROUTING_CONTROLLERS = ("endpoints-controller", "endpointslice-controller", "endpointslice-mirroring-controller")


class ControlPlaneError(RuntimeError):
    """The control plane could not start (the message says which component and shows its log)."""


def binaries_dir() -> Path:
    """Where kube-apiserver & co. are: $QGOV_KUBE_BIN (a directory with all four), else the cache
    of scripts/kube-binaries.sh (never built from here: building takes minutes, say so instead)."""
    if os.environ.get("QGOV_KUBE_BIN"):
        return Path(os.environ["QGOV_KUBE_BIN"])
    result = subprocess.run(["bash", str(BINARIES_SCRIPT), "--print-path", "kubernetes", "etcd"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise ControlPlaneError(f"the upstream binaries are not built: run `bash {BINARIES_SCRIPT.relative_to(ROOT)} "
                                f"kubernetes etcd` first ({result.stderr.strip().splitlines()[-1:]})")
    dirs = result.stdout.strip().split(":")
    # one directory that links them all, so callers need one path
    merged = Path(dirs[0]).parent.parent / ".merged-bin"
    merged.mkdir(exist_ok=True)
    for directory in dirs:
        for binary in Path(directory).iterdir():
            link = merged / binary.name
            if not link.exists() or link.resolve() != binary.resolve():
                link.unlink(missing_ok=True)
                link.symlink_to(binary)
    return merged


def tool(name: str) -> Path:
    """An upstream tool built by scripts/kube-binaries.sh (`helm` or `promtool`): its
    path in the cache, or an error that says how to build it (never built from here)."""
    component = {"helm": "helm", "promtool": "promtool"}.get(name, "kubernetes")
    result = subprocess.run(["bash", str(BINARIES_SCRIPT), "--print-path", component],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise ControlPlaneError(f"{name} is not built: run `bash {BINARIES_SCRIPT.relative_to(ROOT)} {component}` "
                                f"first ({result.stderr.strip().splitlines()[-1:]})")
    return Path(result.stdout.strip().split(":")[0]) / name


WEBHOOK_CLIENT_NAME = "kube-apiserver-webhook-client"  # the CN of the API server's certificate for webhooks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kubeconfig_text(server: str, ca: Path, *, cert: Path | None = None, key: Path | None = None,
                    token: str | None = None, user: str = "qgov", namespace: str = "default") -> str:
    creds = (f"    client-certificate: {cert}\n    client-key: {key}\n" if cert and key else f"    token: {token}\n")
    return (f"apiVersion: v1\nkind: Config\nclusters:\n- name: qgov-upstream\n  cluster:\n"
            f"    server: {server}\n    certificate-authority: {ca}\n"
            f"contexts:\n- name: {user}@qgov-upstream\n  context:\n    cluster: qgov-upstream\n"
            f"    user: {user}\n    namespace: {namespace}\ncurrent-context: {user}@qgov-upstream\n"
            f"users:\n- name: {user}\n  user:\n{creds}")


@dataclass
class Component:
    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    bed: Bed | None = None  # the test bed whose guardian ends it with the bed (bed.py)
    env: dict[str, str] | None = None  # None: this process's environment

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True, env=self.env,
                                     preexec_fn=self.bed.preexec() if self.bed else _die_with_parent)
        if self.bed is not None:
            self.bed.started(self.proc.pid)

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ControlPlaneError(f"{self.name} exited with {self.proc.returncode}:\n{tail(self.log)}")

    def wait_ready(self, ready: Callable[[], bool], timeout: float, interval: float = 0.2) -> None:
        """Until `ready()` says so; a component that exits meanwhile, or the timeout, raises with its log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            if ready():
                return
            time.sleep(interval)
        raise ControlPlaneError(f"{self.name} was not ready within {timeout:.0f} s:\n{tail(self.log)}")

    def stop(self, grace: float = 10) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        if self.bed is not None:
            self.bed.ended(self.proc.pid)


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def _die_with_parent() -> None:
    """Linux: the component gets SIGKILL when the process that started it dies (a killed test run
    must not leave an API server behind)."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


@dataclass
class ControlPlane:
    """Start with `start()`; `kubeconfig` is a cluster-admin's; `stop()` ends every process."""

    workdir: Path
    bin: Path = field(default_factory=binaries_dir)
    components: list[Component] = field(default_factory=list)
    # more kube-apiserver flags, e.g. `--watch-cache-sizes=configmaps#0` so a watch of ConfigMaps
    # is served by etcd and `compact_etcd()` expires its history (the watch cache keeps its own)
    apiserver_args: tuple[str, ...] = ()
    bed: Bed | None = None  # whose guardian ends the components if this process dies (bed.py)
    # what kube-controller-manager runs; a node with kube-proxy adds ROUTING_CONTROLLERS
    controllers: tuple[str, ...] = CONTROLLERS

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        self.pki = Authority(self.workdir / "pki")
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.etcd_url = f"http://127.0.0.1:{free_port()}"
        self.kubeconfig = self.workdir / "kubeconfig"

    # ------------------------------------------------------------------ identities

    def client_kubeconfig(self, name: str, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig that authenticates as `user` in `groups` by client certificate."""
        pair = self.pki.issue(name, user, groups=groups, client=True)
        path = self.workdir / f"{name}.kubeconfig"
        path.write_text(kubeconfig_text(self.url, self.pki.pair.cert, cert=pair.cert, key=pair.key, user=user))
        return path

    def _admission_configuration(self) -> Path:
        """An AdmissionConfiguration whose WebhookAdmissionConfiguration kubeConfigFile gives the API
        server a client certificate (CN WEBHOOK_CLIENT_NAME, from the cluster's CA) for every webhook
        (`name: "*"`): what a cluster admin configures so that a webhook can require it."""
        client = self.pki.issue("apiserver-webhook-client", WEBHOOK_CLIENT_NAME, client=True)
        kubeconfig = self.workdir / "admission-webhooks.kubeconfig"
        kubeconfig.write_text(f'apiVersion: v1\nkind: Config\nusers:\n- name: "*"\n  user:\n'
                              f"    client-certificate: {client.cert}\n    client-key: {client.key}\n")
        webhooks = (f"    apiVersion: apiserver.config.k8s.io/v1\n    kind: WebhookAdmissionConfiguration\n"
                    f"    kubeConfigFile: {kubeconfig}\n")
        path = self.workdir / "admission.yaml"
        path.write_text("apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n"
                        f"- name: ValidatingAdmissionWebhook\n  configuration:\n{webhooks}"
                        f"- name: MutatingAdmissionWebhook\n  configuration:\n{webhooks}")
        return path

    @property
    def webhook_client_ca(self) -> Path:
        """The CA whose certificate (CN WEBHOOK_CLIENT_NAME) the API server shows admission webhooks."""
        return self.pki.pair.cert

    def serving_pair(self, name: str, hosts: tuple[str, ...]) -> KeyPair:
        return self.pki.issue(name, hosts[0], hosts=hosts, server=True)

    # ------------------------------------------------------------------ processes

    def start(self, timeout: float = 90, before_controllers: Callable[[ControlPlane], None] | None = None) -> None:
        """`before_controllers` runs once the API server is ready, before the controllers start:
        e.g. to install CRDs the garbage collector then watches from its start (it looks for new
        resource types only every 30 s)."""
        logs, pki, b = self.workdir / "logs", self.pki, self.bin
        serving = self.serving_pair("apiserver", ("127.0.0.1", "localhost", "kubernetes", "kubernetes.default",
                                                  "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
                                                  "10.96.0.1"))
        kubelet_client = pki.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                                   groups=("kubeadm:cluster-admins",), client=True)
        sa = service_account_keys(self.workdir / "pki")
        admission = self._admission_configuration()
        admin = pki.issue("admin", "qgov-admin", groups=("system:masters",), client=True)
        self.kubeconfig.write_text(kubeconfig_text(self.url, pki.pair.cert, cert=admin.cert, key=admin.key,
                                                   user="qgov-admin"))
        peer = free_port()
        etcd = Component("etcd", [
            str(b / "etcd"), "--name", "qgov", "--data-dir", str(self.workdir / "etcd"),
            "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer}", "--initial-cluster", f"qgov=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync",  # a test bed: nothing here outlives the machine
            "--log-level", "warn"], logs / "etcd.log", bed=self.bed)
        apiserver = Component("kube-apiserver", [
            str(b / "kube-apiserver"), "--etcd-servers", self.etcd_url,
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", str(self.port),
            "--tls-cert-file", str(serving.cert), "--tls-private-key-file", str(serving.key),
            "--client-ca-file", str(pki.pair.cert),
            "--authorization-mode", "Node,RBAC",
            "--enable-admission-plugins", "NodeRestriction,OwnerReferencesPermissionEnforcement",
            "--service-account-issuer", SERVICE_ACCOUNT_ISSUER,
            "--service-account-key-file", str(sa.cert), "--service-account-signing-key-file", str(sa.key),
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--kubelet-client-certificate", str(kubelet_client.cert),
            "--kubelet-client-key", str(kubelet_client.key),
            "--kubelet-preferred-address-types", "InternalIP",
            "--endpoint-reconciler-type", "none",  # no kube-proxy: the Service `kubernetes` is not routed
            # webhooks named by Service are called at the Service's Endpoints, not its ClusterIP (which
            # nothing routes here): with no Endpoints (the operator runs as a local process, or not at
            # all) the call fails at once and failurePolicy decides, instead of waiting out timeoutSeconds
            "--enable-aggregator-routing=true",
            # the API server presents a client certificate to every admission webhook it calls (a webhook
            # may then refuse anyone else: QGOV_WEBHOOK_CLIENT_CA, as docs/platform/webhook.md tells a cluster admin)
            "--admission-control-config-file", str(admission),
            "--allow-privileged=true", "--v=1", *self.apiserver_args], logs / "kube-apiserver.log", bed=self.bed)
        self.components = [etcd, apiserver]
        try:
            etcd.start()
            etcd.wait_ready(lambda: _http_ok(f"{self.etcd_url}/health"), timeout)
            apiserver.start()
            apiserver.wait_ready(lambda: self._api_ok("/readyz"), timeout)
            if before_controllers is not None:
                before_controllers(self)
            cm_kubeconfig = self.client_kubeconfig("controller-manager", "system:kube-controller-manager")
            scheduler_kubeconfig = self.client_kubeconfig("scheduler", "system:kube-scheduler")
            controllers = Component("kube-controller-manager", [
                str(b / "kube-controller-manager"), "--kubeconfig", str(cm_kubeconfig),
                "--authentication-kubeconfig", str(cm_kubeconfig), "--authorization-kubeconfig", str(cm_kubeconfig),
                "--controllers", ",".join(self.controllers), "--use-service-account-credentials=true",
                "--service-account-private-key-file", str(sa.key), "--root-ca-file", str(pki.pair.cert),
                "--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", str(free_port()),
                "--concurrent-gc-syncs", "5", "--v=1"], logs / "kube-controller-manager.log", bed=self.bed)
            scheduler = Component("kube-scheduler", [
                str(b / "kube-scheduler"), "--kubeconfig", str(scheduler_kubeconfig),
                "--authentication-kubeconfig", str(scheduler_kubeconfig),
                "--authorization-kubeconfig", str(scheduler_kubeconfig),
                "--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", str(free_port()),
                "--v=1"], logs / "kube-scheduler.log", bed=self.bed)
            self.components += [controllers, scheduler]
            controllers.start()
            scheduler.start()
            # the controllers are up once the ServiceAccount controller made `default` in `default`
            controllers.wait_ready(lambda: self._api_ok("/api/v1/namespaces/default/serviceaccounts/default"),
                                   timeout)
            controllers.wait_ready(lambda: self._api_ok("/api/v1/namespaces/default/configmaps/kube-root-ca.crt"),
                                   timeout)
            scheduler.check()
        except BaseException:
            self.stop()
            raise

    def _api_ok(self, path: str) -> bool:
        context = ssl.create_default_context(cafile=str(self.pki.pair.cert))
        admin = self.workdir / "pki"
        context.load_cert_chain(admin / "admin.crt", admin / "admin.key")
        return _http_ok(self.url + path, context)

    def compact_etcd(self) -> int:
        """Compact etcd's history up to now (what the API server does every 5 minutes), so a watch
        from an older resourceVersion gets 410 Gone; returns the compacted revision."""
        import json

        request = urllib.request.Request(f"{self.etcd_url}/v3/kv/range", data=json.dumps({"key": "AA=="}).encode(),
                                         method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            revision = int(json.load(answer)["header"]["revision"])
        request = urllib.request.Request(f"{self.etcd_url}/v3/kv/compaction", method="POST",
                                         data=json.dumps({"revision": revision, "physical": True}).encode())
        urllib.request.urlopen(request, timeout=30).read()
        return revision

    def stop(self) -> None:
        for component in reversed(self.components):
            component.stop()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as answer:
            return bool(200 <= answer.status < 300)
    except (OSError, ValueError):
        return False
