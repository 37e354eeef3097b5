"""A real node for the upstream control plane: containerd (with runc and the CNI plugins), the
kubelet and kube-proxy, built by `scripts/kube-binaries.sh kubelet containerd runc cni`.

Why: the process node (node.py) runs each pod as a local process: no images, cgroups, probes,
securityContext or Service routing. This node runs pods as containers from images imported into
containerd, so what a kubelet enforces is what the tests see.

Everything it starts or changes ends with `stop()` (and, if this process dies, its processes
with the test bed's guardian): its containers and pod sandboxes (the kubelet tears them down,
so the CNI plugins take their addresses and iptables rules back), then the processes, kube-proxy's
iptables chains (`kube-proxy --cleanup`), the CNI bridge, leftover mounts under its directories,
its cgroups and net.ipv4.ip_forward (put back as it was). Needs root, Linux, overlayfs.
One kubelet node per machine at a time (a lock says so): kube-proxy's rules and the chains
taken away at the end are the machine's, not the bed slot's.

The sandbox ("pause") image cannot be pulled here: it is built locally (a static C binary, the
same job as upstream's build/pause) into an OCI archive and imported like qgov's images.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .bed import Bed
from .controlplane import BINARIES_SCRIPT, ROOT, Component, ControlPlane, ControlPlaneError, free_port
from .node import node_kubeconfig

NODE_COMPONENTS = ("kubelet", "containerd", "runc", "cni")
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
MACHINE_LOCK = "/run/qgov-kubelet-node.lock"
K8S_NAMESPACE = "k8s.io"  # containerd's namespace for the CRI's images and containers
PAUSE_C = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void die(int sig) { _exit(0); }
static void reap(int sig) { while (waitpid(-1, NULL, WNOHANG) > 0) ; }
int main(void) {
  struct sigaction a = {.sa_handler = die}, r = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  sigaction(SIGINT, &a, NULL); sigaction(SIGTERM, &a, NULL); sigaction(SIGCHLD, &r, NULL);
  for (;;) pause();
}
"""


def apiserver_args() -> tuple[str, ...]:
    """kube-apiserver flags for a control plane with this node (ControlPlane(apiserver_args=...)):
    it listens on every address and advertises the host's, so the Service `kubernetes` has an
    endpoint a container can reach (127.0.0.1 is the container's own) and in-cluster clients work."""
    return ("--bind-address", "0.0.0.0", "--advertise-address", _primary_address(),
            "--endpoint-reconciler-type", "lease")


def node_binaries() -> dict[str, Path]:
    """binary name -> path, for everything a node needs (an error naming the build command if not built)."""
    result = subprocess.run(["bash", str(BINARIES_SCRIPT), "--print-path", *NODE_COMPONENTS],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise ControlPlaneError(f"the node's binaries are not built: run `bash {BINARIES_SCRIPT.relative_to(ROOT)} "
                                f"{' '.join(NODE_COMPONENTS)}` first ({result.stderr.strip().splitlines()[-1:]})")
    found: dict[str, Path] = {}
    for directory in result.stdout.strip().split(":"):
        for binary in Path(directory).iterdir():
            found[binary.name] = binary
    return found


def pause_archive(cache: Path) -> Path:
    """An OCI archive of the sandbox image (a static pause binary), built once into `cache`."""
    out = cache / "pause" / "pause.tar"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    source = out.parent / "pause.c"
    source.write_text(PAUSE_C)
    binary = out.parent / "pause"
    subprocess.run(["gcc", "-Os", "-static", "-o", str(binary), str(source)], check=True)
    subprocess.run(["strip", str(binary)], check=False)
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tar.gettarinfo(str(binary), "pause")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        with binary.open("rb") as f:
            tar.addfile(info, f)
    raw = layer_tar.getvalue()
    layer = gzip.compress(raw, mtime=0)

    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def dump(obj: object) -> bytes:
        return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()

    config = dump({"architecture": "amd64", "os": "linux",
                   "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
                   "rootfs": {"type": "layers", "diff_ids": [digest(raw)]}})
    manifest = dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                     "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                "digest": digest(config), "size": len(config)},
                     "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                 "digest": digest(layer), "size": len(layer)}]})
    index = dump({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(manifest),
        "size": len(manifest), "annotations": {"io.containerd.image.name": PAUSE_IMAGE}}]})
    tmp = out.with_suffix(".partial")
    with tarfile.open(tmp, "w") as tar:
        for name, data in ((f"blobs/sha256/{digest(b)[7:]}", b) for b in (config, manifest, layer)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, data in (("index.json", index), ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tmp.rename(out)
    return out


def _mounts_under(*prefixes: Path) -> list[str]:
    """Mount points under any of `prefixes`, deepest first (so they can be unmounted in order)."""
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if any(point == str(p) or point.startswith(f"{p}/") for p in prefixes):
            points.append(point)
    return sorted(set(points), key=lambda p: -p.count("/"))


def _v1_hierarchies() -> list[Path]:
    """The cgroup v1 hierarchies' mount points (the kubelet's cgroupfs driver writes these)."""
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup":
            out.append(Path(fields[1]))
    return out


def _remove_cgroup_tree(top: Path) -> None:
    if not top.is_dir():
        return
    for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            directory.rmdir()
        except OSError:
            pass
    try:
        top.rmdir()
    except OSError:
        pass


@dataclass
class KubeletNode:
    """`start()` brings up containerd, the CNI config, the kubelet and kube-proxy for `control_plane`
    (started with ROUTING_CONTROLLERS); `stop()` takes all of it away again."""

    control_plane: ControlPlane
    workdir: Path
    bed: Bed
    name: str = "qgov-node"
    bin: dict[str, Path] = field(default_factory=node_binaries)
    components: list[Component] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        slot = self.bed.slot
        # short paths for sockets (108 bytes at most) and names the machine shares, one set per bed slot
        self.run_dir = Path(f"/run/qgov-node-{slot}")
        self.socket = self.run_dir / "containerd.sock"
        self.bridge = f"qgov{slot}"
        self.pod_cidr = f"10.{200 + slot % 50}.{slot}.0/24"
        self.cgroup_root = f"qgov-node-{slot}"
        self.node_ip = _primary_address()
        self._ip_forward: str | None = None
        self._lock_fd = -1

    # ------------------------------------------------------------------ configuration

    def _containerd_config(self) -> Path:
        bins = self.bin
        cni_dir = bins["bridge"].parent
        path = self.workdir / "containerd.toml"
        path.write_text(f"""version = 3
root = "{self.workdir / 'containerd'}"
state = "{self.run_dir / 'state'}"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[plugins]
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.internal.v1.opt']
    path = "{self.workdir / 'opt'}"
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '{PAUSE_IMAGE}'
  [plugins.'io.containerd.cri.v1.runtime']
    netns_mounts_under_state_dir = true
    # no lower oom_score_adj than containerd's own: the sandbox's -998 (and Guaranteed pods' -997)
    # need CAP_SYS_RESOURCE, which this machine's root lacks (runc: "failed to update
    # /proc/self/oom_score_adj: Permission denied")
    restrict_oom_score_adj = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = "{bins['runc']}"
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["{cni_dir}"]
      conf_dir = "{self.workdir / 'cni' / 'net.d'}"
""")
        return path

    def _cni_config(self) -> None:
        net_d = self.workdir / "cni" / "net.d"
        net_d.mkdir(parents=True, exist_ok=True)
        (net_d / "10-qgov.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": "qgov",
            "plugins": [
                {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": True,
                 "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": self.pod_cidr}]],
                          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(self.workdir / "cni" / "ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ]}, indent=1))
        (net_d / "99-loopback.conf").write_text(json.dumps({"cniVersion": "1.0.0", "name": "lo",
                                                            "type": "loopback"}))

    def _kubelet_config(self) -> Path:
        pki = self.control_plane.pki
        serving = pki.issue(f"kubelet-{self.name}", self.name, hosts=(self.name, self.node_ip, "127.0.0.1"),
                            server=True)
        self.kubelet_port = free_port()
        path = self.workdir / "kubelet-config.yaml"
        path.write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "failCgroupV1": False,  # this machine's kernel mounts the v1 hierarchy (kubelet 1.35+ refuses it otherwise)
            "cgroupDriver": "cgroupfs", "cgroupRoot": f"/{self.cgroup_root}",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": "0.0.0.0", "port": self.kubelet_port, "readOnlyPort": 0, "healthzPort": 0,
            "tlsCertFile": str(serving.cert), "tlsPrivateKeyFile": str(serving.key),
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(pki.pair.cert)}},
            "authorization": {"mode": "Webhook"},
            "clusterDomain": "cluster.local", "failSwapOn": False, "resolvConf": "/etc/resolv.conf",
            "podCIDR": self.pod_cidr, "maxPods": 110,
            # a shared test machine's disk is not the node's to guard: no eviction, no image GC
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "0%", "imagefs.available": "0%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False, "registerNode": True,
            "syncFrequency": "5s", "nodeStatusUpdateFrequency": "5s",
        }, indent=1))
        return path

    def _kube_proxy_config(self, kubeconfig: Path) -> Path:
        path = self.workdir / "kube-proxy-config.yaml"
        path.write_text(json.dumps({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "mode": "iptables", "clusterCIDR": self.pod_cidr, "hostnameOverride": self.name,
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "bindAddress": "0.0.0.0", "healthzBindAddress": f"127.0.0.1:{free_port()}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            "conntrack": {"maxPerCore": 0},  # leave the machine's conntrack table size alone
            # pods on one bridge reach each other through a ClusterIP even where bridged replies skip iptables
            "iptables": {"masqueradeAll": True, "syncPeriod": "5s", "minSyncPeriod": "0s"},
        }, indent=1))
        return path

    def _cgroups(self) -> None:
        """The kubelet's --cgroup-root must exist in every v1 hierarchy (cpuset's needs cpus and mems)."""
        for hierarchy in _v1_hierarchies():
            top = hierarchy / self.cgroup_root
            top.mkdir(exist_ok=True)
            if (hierarchy / "cpuset.cpus").exists():
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    (top / knob).write_text((hierarchy / knob).read_text())
        unified = Path("/sys/fs/cgroup/unified")
        if unified.is_dir() and os.access(unified, os.W_OK):
            (unified / self.cgroup_root).mkdir(exist_ok=True)

    # ------------------------------------------------------------------ processes

    def ctr(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run([str(self.bin["ctr"]), "--address", str(self.socket), "-n", K8S_NAMESPACE, *args],
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise ControlPlaneError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def import_image(self, archive: Path) -> str:
        """Import an OCI archive into the CRI's namespace (what `kind load image-archive` does)."""
        return self.ctr("images", "import", "--no-unpack=false", str(archive))

    def start(self, timeout: float = 120) -> None:
        if os.geteuid() != 0:
            raise ControlPlaneError("a kubelet node needs root (containers, mounts, iptables)")
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        self._lock_fd = os.open(MACHINE_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise ControlPlaneError(f"another kubelet node runs on this machine ({MACHINE_LOCK} is locked): "
                                    "its iptables rules are the machine's, so one at a time") from None
        logs = self.workdir / "logs"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        forward = Path("/proc/sys/net/ipv4/ip_forward")
        self._ip_forward = forward.read_text().strip()
        forward.write_text("1")  # pods reach Services and the outside through the host
        self._cni_config()
        self._cgroups()
        bin_dirs = sorted({str(p.parent) for p in self.bin.values()})
        env = {**os.environ, "PATH": ":".join([*bin_dirs, "/usr/local/sbin", "/usr/sbin", "/sbin",
                                               os.environ.get("PATH", "/usr/bin:/bin")])}
        containerd = Component("containerd", [str(self.bin["containerd"]), "--config", str(self._containerd_config())],
                               logs / "containerd.log", bed=self.bed, env=env)
        self.components = [containerd]
        containerd.start()
        containerd.wait_ready(lambda: self.socket.exists() and self._ctr_ok(), timeout, interval=0.5)
        self.import_image(pause_archive(Path(BINARIES_CACHE())))
        kubeconfig = node_kubeconfig(self.control_plane, self.name)
        kubelet = Component("kubelet", [
            str(self.bin["kubelet"]), "--config", str(self._kubelet_config()), "--kubeconfig", str(kubeconfig),
            "--root-dir", str(self.workdir / "kubelet"), "--cert-dir", str(self.workdir / "kubelet-pki"),
            "--hostname-override", self.name, "--node-ip", self.node_ip, "--v=1"],
            logs / "kubelet.log", bed=self.bed, env=env)
        proxy_kubeconfig = self.control_plane.client_kubeconfig("kube-proxy", "system:kube-proxy")
        proxy = Component("kube-proxy", [
            str(self.bin["kube-proxy"]), "--config", str(self._kube_proxy_config(proxy_kubeconfig)), "--v=1"],
            logs / "kube-proxy.log", bed=self.bed, env=env)
        self.components += [kubelet, proxy]
        # the API server's client certificate at the kubelet (logs, exec): kubeadm binds it likewise
        subprocess.run([str(self.bin["kubectl"]), "--kubeconfig", str(self.control_plane.kubeconfig), "create",
                        "clusterrolebinding", "qgov-apiserver-kubelet", "--clusterrole=system:kubelet-api-admin",
                        "--user=kube-apiserver-kubelet-client"], capture_output=True, timeout=60)
        kubelet.start()
        proxy.start()
        kubelet.wait_ready(self._node_ready, timeout, interval=0.5)

    def _ctr_ok(self) -> bool:
        try:
            self.ctr("version", timeout=10)
            return True
        except (ControlPlaneError, subprocess.TimeoutExpired):
            return False

    def _node_ready(self) -> bool:
        result = subprocess.run([str(self.bin["kubectl"]), "--kubeconfig", str(self.control_plane.kubeconfig), "get",
                                 "node", self.name, "-o",
                                 "jsonpath={.status.conditions[?(@.type=='Ready')].status}"],
                                capture_output=True, text=True, timeout=30)
        return result.stdout.strip() == "True"

    # ------------------------------------------------------------------ the end

    def _drain(self, timeout: float = 60) -> None:
        """Every pod on the node deleted at once, then wait until the kubelet has torn down their
        containers and sandboxes (so the CNI plugins release addresses and rules)."""
        kubectl = [str(self.bin["kubectl"]), "--kubeconfig", str(self.control_plane.kubeconfig)]
        subprocess.run([*kubectl, "delete", "pods", "--all-namespaces", "--all", "--grace-period=0", "--force",
                        f"--field-selector=spec.nodeName={self.name}", "--wait=false"],
                       capture_output=True, text=True, timeout=60)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if not self.ctr("containers", "ls", "-q", timeout=10).strip():
                    return
            except (ControlPlaneError, subprocess.TimeoutExpired):
                return
            time.sleep(0.5)

    def stop(self) -> None:
        if self._lock_fd < 0:
            return  # never started (or another node holds the machine: nothing here is ours)
        running = {c.name for c in self.components if c.proc is not None and c.proc.poll() is None}
        if {"kubelet", "containerd"} <= running:
            self._drain()
        for component in reversed(self.components):
            if component.name != "containerd":
                component.stop()
        if "containerd" in running:
            self._kill_leftover_containers()
        for component in self.components:
            if component.name == "containerd":
                component.stop()
        self.components = []
        self._end_shims()
        if "kube-proxy" in self.bin:
            subprocess.run([str(self.bin["kube-proxy"]), "--cleanup"], capture_output=True, timeout=60)
        _remove_chains(("KUBE-", "CNI-"))  # the kubelet's own (canary, firewall), and any a crash left
        subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True)
        for point in _mounts_under(self.workdir, self.run_dir):
            subprocess.run(["umount", "-l", point], capture_output=True)
        for hierarchy in _v1_hierarchies():
            _remove_cgroup_tree(hierarchy / self.cgroup_root)
        _remove_cgroup_tree(Path("/sys/fs/cgroup/unified") / self.cgroup_root)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if self._ip_forward is not None:
            Path("/proc/sys/net/ipv4/ip_forward").write_text(self._ip_forward)
            self._ip_forward = None
        os.close(self._lock_fd)
        self._lock_fd = -1

    def _kill_leftover_containers(self) -> None:
        """Tasks the kubelet did not tear down (it died first): killed, so their shims exit."""
        try:
            for task in self.ctr("tasks", "ls", "-q", timeout=20).split():
                subprocess.run([str(self.bin["ctr"]), "--address", str(self.socket), "-n", K8S_NAMESPACE, "tasks",
                                "kill", "-a", "-s", "SIGKILL", task], capture_output=True, timeout=20)
        except (ControlPlaneError, subprocess.TimeoutExpired):
            pass

    def _end_shims(self, wait: float = 10) -> None:
        """The runc shims (each names this containerd's socket) outlive containerd by design: end them."""
        deadline = time.monotonic() + wait
        while (pids := _processes_named(self.socket)) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)

    def leftovers(self) -> list[str]:
        """What of this node is still on the machine (empty after `stop()`): for tests."""
        found = [f"mount {p}" for p in _mounts_under(self.workdir, self.run_dir)]
        if subprocess.run(["ip", "link", "show", self.bridge], capture_output=True).returncode == 0:
            found.append(f"interface {self.bridge}")
        rules = "".join(subprocess.run([save], capture_output=True, text=True).stdout
                        for save in ("iptables-save", "ip6tables-save") if shutil.which(save))
        found += [f"iptables {line}" for line in rules.splitlines()
                  if line.startswith(":") and line[1:].startswith(("KUBE-", "CNI-"))]
        found += [f"cgroup {h / self.cgroup_root}" for h in _v1_hierarchies() if (h / self.cgroup_root).exists()]
        found += [f"process {pid}" for pid in _processes_named(self.socket)]
        return found


def BINARIES_CACHE() -> str:  # noqa: N802 - the cache directory of scripts/kube-binaries.sh
    return os.environ.get("QGOV_KUBE_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qgov" / "kube")


def _primary_address() -> str:
    """The host's address on its default route (the node's InternalIP: the API server calls the kubelet there)."""
    out = subprocess.run(["ip", "-j", "route", "get", "1.1.1.1"], capture_output=True, text=True).stdout
    try:
        return str(json.loads(out)[0]["prefsrc"])
    except (ValueError, IndexError, KeyError):
        raise ControlPlaneError(f"no default route to take the node's address from: {out!r}") from None


def _remove_chains(prefixes: tuple[str, ...]) -> None:
    """Every iptables/ip6tables chain named with one of `prefixes`: the rules that jump to them
    first, then the chains (flushed, deleted). The kubelet makes some that no cleanup of its removes."""
    for save, command in (("iptables-save", "iptables"), ("ip6tables-save", "ip6tables")):
        if shutil.which(save) is None:
            continue
        table, chains, jumps = "", [], []
        for line in subprocess.run([save], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":") and line[1:].startswith(prefixes):
                chains.append((table, line[1:].split()[0]))
            elif line.startswith("-A "):
                words = shlex.split(line)  # (comments are quoted)
                target = words[words.index("-j") + 1] if "-j" in words else ""
                if target.startswith(prefixes) and not words[1].startswith(prefixes):
                    jumps.append((table, words[1:]))
        for table, rule in jumps:
            subprocess.run([command, "-w", "-t", table, "-D", *rule], capture_output=True)
        for table, chain in chains:
            subprocess.run([command, "-w", "-t", table, "-F", chain], capture_output=True)
        for table, chain in chains:
            subprocess.run([command, "-w", "-t", table, "-X", chain], capture_output=True)


def _processes_named(needle: Path) -> list[int]:
    """Processes whose command line mentions `needle` (a shim names its containerd's socket)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(needle).encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def main(argv: list[str] | None = None) -> int:
    """`python -m qgov_dev.devcluster.kubeletnode [WORKDIR]`: the upstream control plane (with the
    endpoint and EndpointSlice controllers) and this node, the images built by qgov_dev.images
    imported, until Ctrl-C or SIGTERM; then everything is taken away again."""
    import argparse
    import signal
    import tempfile

    from .. import images
    from .controlplane import CONTROLLERS, ROUTING_CONTROLLERS

    parser = argparse.ArgumentParser(prog="python -m qgov_dev.devcluster.kubeletnode", description=main.__doc__)
    parser.add_argument("workdir", nargs="?", type=Path)
    parser.add_argument("--no-images", action="store_true", help="do not build and import qgov's images")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="qgov-kubelet-"))
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with Bed.claim() as bed:
        plane = ControlPlane(workdir / "control-plane", bed=bed, controllers=CONTROLLERS + ROUTING_CONTROLLERS,
                             apiserver_args=apiserver_args())
        node = KubeletNode(plane, workdir / "node", bed)
        try:
            t0 = time.monotonic()
            plane.start()
            node.start()
            print(f"control plane and kubelet node up in {time.monotonic() - t0:.1f} s (logs: {workdir}/*/logs)",
                  flush=True)
            if not args.no_images:
                for built in images.build(workdir / "images").values():
                    t0 = time.monotonic()
                    node.import_image(Path(built["archive"]))
                    print(f"{built['ref']} ({built['digest']}) imported in {time.monotonic() - t0:.1f} s", flush=True)
            print(f"export KUBECONFIG={plane.kubeconfig}; kubectl get nodes -o wide\n"
                  f"ctr: {node.bin['ctr']} --address {node.socket} -n {K8S_NAMESPACE} images ls\nCtrl-C to stop.",
                  flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            node.stop()
            plane.stop()
            left = node.leftovers()
            print(f"stopped; left behind: {left or 'nothing'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
