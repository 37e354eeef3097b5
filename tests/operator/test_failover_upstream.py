"""Two replicas, one acting, on the real control plane.

The elector (governance/leader) against the API server, as the ServiceAccount qgov-operator (so the
manifests' Role is what allows it): one of two candidates holds the lease, the other waits; a holder
that stops renewing is replaced after the lease duration, one that releases it at once, and one cut
off from the API server stops acting at its renew deadline, before anyone else can start, and one
whose API server answers slowly (but within the deadline) keeps it.

Then the manifests' Deployment at two replicas on a PostgreSQL ledger: a burst of QiskitJobs, the
acting replica SIGKILLed mid-burst (found from the Lease's holder), the other takes over; every job
ends Succeeded and is charged once, with one executor pod each.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from governance.budget.ledger import Ledger
from qgov_dev.devcluster.upstream import SYSTEM_NAMESPACE
from governance.leader.decide import Timing
from governance.leader.elector import Elector, LeaseApi
from governance.leader.replica import lease_client
from qgov_dev.testing import pgserver

from .conftest import BELL, G, NS, V
from .conftest import wait_for as wait_until
from qgov_dev.chaos import ledger_rows

FAST = Timing(duration_s=4, renew_every_s=0.8, renew_deadline_s=2.8, retry_every_s=0.8)
LEASE = "qgov-operator"  # the Deployment's (QGOV_LEASE_NAME's default)
TERMINAL = {"Succeeded", "Failed", "Refused", "Cancelled"}


def wait_for(check: Any, what: str, timeout: float, interval: float = 0.05) -> Any:
    """conftest's wait_for, looking every 50 ms: the takeover times it measures are read from it."""
    return wait_until(check, what, timeout, interval)


class Candidates:
    """Electors for one fresh Lease, each with its own client authenticated as qgov-operator."""

    def __init__(self, upstream: Any) -> None:
        self.upstream = upstream
        self.name = f"test-{uuid.uuid4().hex[:8]}"
        self.kubeconfig = upstream.operator_kubeconfig()
        self.electors: list[Elector] = []
        self.lost: dict[str, list[tuple[float, str]]] = {}

    def start(self, identity: str, timing: Timing, via: str | None = None) -> Elector:
        """`via`: reach the API server through this address (a `Cable`) instead of directly."""
        kubeconfig = self.kubeconfig
        if via is not None:
            kubeconfig = kubeconfig.with_name(f"via-{identity}.kubeconfig")
            kubeconfig.write_text(self.kubeconfig.read_text().replace(self.upstream.url, via))
        client = lease_client(str(kubeconfig))  # configured as the operator's
        self.lost[identity] = []
        elector = Elector(LeaseApi(client, SYSTEM_NAMESPACE, self.name), identity, timing,
                          on_lost=lambda reason: self.lost[identity].append((time.monotonic(), reason)))
        self.electors.append(elector.start())
        return elector

    def lease(self) -> dict[str, Any]:
        return json.loads(self.upstream.kubectl("get", "lease", "-n", SYSTEM_NAMESPACE, self.name, "-o", "json"))

    def stop(self) -> None:
        for elector in self.electors:
            elector.stop(release=False, timeout=1)
            elector.leases.leases.api_client.close()
        self.upstream.kubectl("delete", "lease", "-n", SYSTEM_NAMESPACE, self.name, "--ignore-not-found")


class Cable:
    """A TCP forwarder to the API server that the test can cut (a network partition for one client:
    open connections are closed, new ones refused) or slow down (`lag`: every byte from the server
    reaches the client that much later, as from an API server busy for seconds)."""

    def __init__(self, target: str) -> None:
        host, _, port = target.removeprefix("https://").partition(":")
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        self.lag = 0.0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket, answers: bool = False) -> None:
        lagged: queue.Queue[tuple[float, bytes]] = queue.Queue()

        def deliver() -> None:
            while (item := lagged.get())[1]:
                time.sleep(max(0.0, item[0] - time.monotonic()))
                try:
                    b.sendall(item[1])
                except OSError:
                    return

        if answers:
            threading.Thread(target=deliver, daemon=True).start()
        try:
            while data := a.recv(65536):
                if answers:
                    lagged.put((time.monotonic() + self.lag, data))
                else:
                    b.sendall(data)
        except OSError:
            pass
        lagged.put((0.0, b""))
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone would not: it keeps accepting)
        self.listener.close()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


@pytest.fixture
def candidates(upstream_cluster: Any) -> Iterator[Candidates]:
    c = Candidates(upstream_cluster)
    yield c
    c.stop()


def test_one_candidate_holds_the_lease_and_the_other_takes_it_once_it_expires(candidates: Candidates) -> None:
    a, b = candidates.start("a", FAST), candidates.start("b", FAST)  # racing for a lease that does not exist
    holder = wait_for(lambda: [e for e in (a, b) if e.leading.is_set()], "a holder", 10)
    [leader] = holder
    standby = b if leader is a else a
    time.sleep(2 * FAST.duration_s)  # the holder renews: the standby keeps waiting
    assert leader.leading.is_set() and not standby.leading.is_set()
    lease = candidates.lease()
    assert lease["spec"]["holderIdentity"] == leader.identity and lease["spec"]["leaseDurationSeconds"] == 4
    assert lease["spec"]["leaseTransitions"] == 0
    # the holder stops renewing (as if it were gone): the lease is taken after its duration, not before
    stopped = time.monotonic()
    leader.stop(release=False)
    wait_for(standby.leading.is_set, "the standby to take over", 15)
    took = time.monotonic() - stopped
    assert FAST.duration_s - FAST.renew_every_s - 0.1 <= took <= FAST.duration_s + FAST.retry_every_s + 1.0, took
    lease = candidates.lease()
    assert lease["spec"]["holderIdentity"] == standby.identity and lease["spec"]["leaseTransitions"] == 1
    assert candidates.lost == {"a": [], "b": []}


def test_a_released_lease_is_taken_at_once_not_after_its_duration(candidates: Candidates) -> None:
    timing = Timing()  # the operator's: 10 s lease
    a = candidates.start("a", timing)
    wait_for(a.leading.is_set, "a to hold the lease", 10)
    b = candidates.start("b", timing)
    time.sleep(1.0)
    assert not b.leading.is_set()
    released = time.monotonic()
    assert a.stop(release=True)
    wait_for(b.leading.is_set, "b to take the released lease", 10)
    took = time.monotonic() - released
    assert took <= timing.retry_every_s + 1.0, took  # a look, not a lease duration
    assert candidates.lease()["spec"]["holderIdentity"] == "b"
    assert candidates.lost == {"a": [], "b": []}


def test_a_holder_cut_off_from_the_api_server_stops_before_anyone_else_starts(candidates: Candidates) -> None:
    cable = Cable(candidates.upstream.url)
    a = candidates.start("a", FAST, via=cable.url)
    wait_for(a.leading.is_set, "a to hold the lease", 10)
    b = candidates.start("b", FAST)
    time.sleep(1.0)
    # a network partition between a and the API server: a cannot renew, b hears nothing more from it
    cable.cut()
    cut = time.monotonic()
    wait_for(lambda: candidates.lost["a"], "a to give up", 10)
    wait_for(b.leading.is_set, "b to take over", 15)
    b_at = time.monotonic()
    [(lost_at, reason)] = candidates.lost["a"]
    assert "renew deadline" in reason
    assert lost_at - cut <= FAST.renew_deadline_s + 0.5  # at its deadline, measured from its last renewal
    assert lost_at < b_at - (FAST.duration_s - FAST.renew_deadline_s) + 0.5  # b started after a had stopped
    assert not a.leading.is_set() and candidates.lost["b"] == []


def test_a_holder_whose_api_server_answers_slowly_keeps_the_lease(candidates: Candidates) -> None:
    timing = Timing(duration_s=10, renew_every_s=2, renew_deadline_s=8, retry_every_s=1)  # the operator's
    cable = Cable(candidates.upstream.url)
    a = candidates.start("a", timing, via=cable.url)
    wait_for(a.leading.is_set, "a to hold the lease", 10)
    b = candidates.start("b", timing)
    time.sleep(2.5)  # a renews on its open connection
    # every answer now takes 3.2 s (a control plane starved of CPU by a burst of pods, say): a
    # renewal answered within the renew deadline is a renewal, however slow
    before = candidates.lease()["spec"]["renewTime"]
    cable.lag = 3.2
    time.sleep(20)
    lease = candidates.lease()["spec"]
    assert (lease["holderIdentity"], lease["leaseTransitions"]) == ("a", 0)
    assert lease["renewTime"] > before
    assert a.leading.is_set() and not b.leading.is_set()
    assert candidates.lost == {"a": [], "b": []}
    cable.cut()


# ---------------------------------------------------------------------- the Deployment at two replicas


def _lease(core_api: Any) -> dict[str, Any]:
    leases = kubernetes.client.CoordinationV1Api(core_api.api_client)
    try:
        return core_api.api_client.sanitize_for_serialization(leases.read_namespaced_lease(LEASE, SYSTEM_NAMESPACE))
    except kubernetes.client.rest.ApiException as exc:
        if exc.status == 404:
            return {}
        raise


def _get(url: str, token: str | None = None) -> str:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=3) as answer:  # noqa: S310 - the pods' own addresses
        return answer.read().decode()


def _leader_gauge(ip: str, token: str) -> float:
    for line in _get(f"http://{ip}:9090/metrics", token).splitlines():
        if line.startswith("qgov_leader "):
            return float(line.split()[1])
    raise AssertionError(f"no qgov_leader on {ip}")


@pytest.fixture
def two_replicas(upstream_cluster: Any, pg_server: Any) -> Iterator[Any]:
    upstream_cluster.reset((NS,))
    url = pgserver.create_database(pg_server, f"qgov_failover_{uuid.uuid4().hex[:8]}")  # empty: migrated at start
    upstream_cluster.start_operator_deployment(url, {"QGOV_PROVISION_EXECUTOR_IDENTITY": "true",
                                                     "QGOV_RETRY_BASE_SECONDS": "1"}, replicas=2)
    upstream_cluster.database_url = url
    try:
        yield upstream_cluster
    finally:
        upstream_cluster.stop_operator_deployment()
        upstream_cluster.reset((NS,))


def test_the_acting_replica_is_killed_mid_burst_and_the_other_finishes_it(two_replicas: Any) -> None:
    upstream = two_replicas
    api = kubernetes.config.new_client_from_config(config_file=str(upstream.kubeconfig))
    core, custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
    holder = wait_for(lambda: _lease(core).get("spec", {}).get("holderIdentity"), "a replica to hold the lease", 30)
    pods = {p["metadata"]["name"]: p for p in upstream.operator_pods()}
    assert len(pods) == 2
    active = holder.rsplit("_", 1)[0]
    [standby] = [name for name in pods if name != active]
    ips = {name: p["status"]["podIP"] for name, p in pods.items()}
    assert len(set(ips.values())) == 2  # each replica listens on its own address, same ports
    # both replicas answer their liveness probe and serve /metrics; only one says it leads
    roles = wait_for(lambda: {name: _try(lambda: json.loads(_get(f"http://{ip}:8080/healthz"))["role"])
                              for name, ip in ips.items()} == {active: "leader", standby: "standby"},
                     "both replicas to answer /healthz", 60, 0.3)
    assert roles
    token = upstream.metrics_token()  # /metrics is for readers the API server allows (qgov-metrics-reader)
    assert (_leader_gauge(ips[active], token), _leader_gauge(ips[standby], token)) == (1.0, 0.0)

    core.create_namespace({"metadata": {"name": NS}})
    custom.create_cluster_custom_object(G, V, "qiskitbackends", {
        "apiVersion": f"{G}/{V}", "kind": "QiskitBackend", "metadata": {"name": "priced-aer"},
        "spec": {"provider": "aer", "name": "aer_simulator", "pricing": {"perTask": "0.30"}}})
    custom.create_namespaced_custom_object(G, V, NS, "qiskitbudgets", {
        "apiVersion": f"{G}/{V}", "kind": "QiskitBudget", "metadata": {"name": NS}, "spec": {"limit": "20.00"}})
    names = [f"burst-{i:02d}" for i in range(40)]
    for name in names:
        custom.create_namespaced_custom_object(G, V, NS, "qiskitjobs", {
            "apiVersion": f"{G}/{V}", "kind": "QiskitJob", "metadata": {"name": name},
            "spec": {"backend": "priced-aer", "circuits": [BELL], "shots": 200}})

    def phases() -> dict[str, str]:
        return {j["metadata"]["name"]: (j.get("status") or {}).get("phase", "")
                for j in custom.list_namespaced_custom_object(G, V, NS, "qiskitjobs")["items"]}

    # mid-burst: some jobs done, most not
    wait_for(lambda: 5 <= sum(p == "Succeeded" for p in phases().values()), "the burst to be under way", 180, 0.2)
    before = phases()
    # under the burst's load the leader kept its lease: no handover yet
    lease = _lease(core)["spec"]
    assert (lease["holderIdentity"], lease["leaseTransitions"]) == (holder, 0), \
        upstream.kubectl("logs", "-n", SYSTEM_NAMESPACE, active, "--tail=200", check=False)[-12000:]
    slow = [line for line in upstream.kubectl("logs", "-n", SYSTEM_NAMESPACE, active, check=False).splitlines()
            if "renewing the lease took" in line]
    print(f"\nslow renewals during the burst: {len(slow)}", *slow[-5:], sep="\n")
    pid = upstream.pod_process(SYSTEM_NAMESPACE, active)
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    killed = time.monotonic()
    custom.create_namespaced_custom_object(G, V, NS, "qiskitjobs", {
        "apiVersion": f"{G}/{V}", "kind": "QiskitJob", "metadata": {"name": "after-the-kill"},
        "spec": {"backend": "priced-aer", "circuits": [BELL], "shots": 200}})
    new_holder = wait_for(lambda: (h := _lease(core).get("spec", {}).get("holderIdentity")) and h != holder and h,
                          "another replica to hold the lease", 30)
    took_lease = time.monotonic() - killed
    acted = wait_for(lambda: (custom.get_namespaced_custom_object(G, V, NS, "qiskitjobs", "after-the-kill")
                              .get("status") or {}).get("phase"), "the new leader to act on a job", 30)
    took_action = time.monotonic() - killed
    print(f"\nfailover: SIGKILL of {active} with {sum(p == 'Succeeded' for p in before.values())}/40 jobs done; "
          f"lease held by {new_holder} after {took_lease:.1f} s; a job created after the kill was "
          f"{acted} after {took_action:.1f} s")
    logs = {name: upstream.kubectl("logs", "-n", SYSTEM_NAMESPACE, name, "--tail=400", check=False)[-20000:]
            for name in pods}
    assert new_holder.rsplit("_", 1)[0] == standby, logs
    print("\n".join(line for line in logs[standby].splitlines() if "qgov." in line or "Activity" in line)[-3000:])
    # the lease within 20 s of the kill (a 15 s lease); acting also needs kopf's start and the first
    # admission, on a 2-core machine where the burst's executor pods (each importing qiskit) saturate the CPU
    assert took_lease <= 20.0, took_lease
    assert took_action <= 30.0, took_action

    names.append("after-the-kill")
    final = wait_for(lambda: (p := phases()) and all(p.get(n) in TERMINAL for n in names) and p,
                     "every job to end", 300, 0.5)
    assert {n: final[n] for n in names} == {n: "Succeeded" for n in names}
    # the ledger: consistent, each job reserved once and charged once, at its price
    ledger = Ledger(upstream.database_url)
    try:
        assert ledger.verify() == []
    finally:
        ledger.close()
    jobs = {j["metadata"]["uid"]: j for j in custom.list_namespaced_custom_object(G, V, NS, "qiskitjobs")["items"]}
    reservations, entries, (spent, held, _limit) = ledger_rows(upstream.database_url)
    assert set(reservations) == set(jobs)
    for uid, job in jobs.items():
        r = reservations[uid]
        assert (r.state, r.actual_micro) == ("settled", 300_000), (job["metadata"]["name"], r)
        assert job["status"]["actualCost"] == "0.30"
        assert entries[uid] == {"reserve": 1, "settle": 1}, (job["metadata"]["name"], entries[uid])
    assert (spent, held) == (41 * 300_000, 0)
    # one executor pod per job: nobody started a second one for a job the other replica had started
    executors: dict[str, list[str]] = {}
    for pod in core.list_namespaced_pod(NS).items:
        owner = (pod.metadata.owner_references or [None])[0]
        if owner is not None and owner.kind == "QiskitJob":
            executors.setdefault(owner.name, []).append(pod.metadata.name)
    assert {n: executors.get(n) for n in names} == {n: [f"{n}-run-1"] for n in names}
    # the survivor holds the lease; the killed replica was restarted by its node and stands by
    lease = _lease(core)["spec"]
    assert (lease["holderIdentity"], lease["leaseTransitions"]) == (new_holder, 1)  # one handover: the failover
    killed_pod = core.read_namespaced_pod(active, SYSTEM_NAMESPACE)
    assert killed_pod.status.container_statuses[0].restart_count >= 1
    wait_for(lambda: _try(lambda: json.loads(_get(f"http://{ips[active]}:8080/healthz"))["role"]) == "standby",
             "the restarted replica to stand by", 60, 0.5)
    # a graceful stop (a rollout, a drain: SIGTERM): the leader stops kopf, releases the lease, and
    # the standby takes it at its next look instead of after the lease duration
    deleted = time.monotonic()
    core.delete_namespaced_pod(standby, SYSTEM_NAMESPACE)
    after = wait_for(lambda: (h := _lease(core).get("spec", {}).get("holderIdentity")) and h != new_holder and h,
                     "the standby to take the released lease", 30)
    handover = time.monotonic() - deleted
    print(f"graceful: {standby} deleted, lease held by {after} after {handover:.1f} s")
    assert after.rsplit("_", 1)[0] != standby  # the restarted replica, or the one replacing the deleted pod
    assert handover < 5.0, handover  # an expired lease would take 8 s or more after the last renewal
    api.close()


def _try(call: Any) -> Any:
    try:
        return call()
    except OSError:  # not listening yet
        return None
