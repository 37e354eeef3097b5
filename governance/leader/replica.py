"""`qgov operator` as one replica of a Deployment: every replica serves /healthz and /metrics
(and, later, a read-only admission webhook); only the one holding the Lease runs kopf's handlers.

Why a coordination.k8s.io/v1 Lease and not kopf's peering: kopf peering is priority-based
*pausing* over a custom resource (KopfPeering): each operator announces itself with a priority and
a lifetime, and an operator that sees a peer of higher (or equal) priority pauses. It has no
notion of a lease duration that a standby must wait out, and equal priorities pause both (or,
with `standalone`, neither). A Lease is the Kubernetes-native mechanism the API server's own
controllers, controller-runtime and client-go use: one holder, a duration, renewals, and writes
guarded by resourceVersion so that of two standbys that both saw the lease expire only one
takes it. `kubectl get lease -n qgov-system qgov-operator` shows who acts, since when, and how
many times it changed hands. It needs no CRD and only get/create/update on leases in the
operator's own namespace.

The timing is client-go's shape (decide.py): leaseDurationSeconds 10, renewals every 2 s, a
holder that has not renewed for 8 s exits (code 3) so that it has stopped acting before a standby
can take over, and a standby takes an unrenewed lease 10 s after it last saw it change: after a
SIGKILL, the survivor acts within about 8-11 s. On SIGTERM the holder stops kopf first, then
releases the lease (empty holder), and a standby takes it at its next look (within 1 s).

QGOV_LEADER_ELECTION: `true`, `false`, or `auto` (default): on when running in a pod (the
in-cluster configuration is there), off otherwise, so `qgov dev` and an operator run by hand or by
the tests from a kubeconfig act at once, as before. With it off, every replica acts, and the ledger
(idempotent by job UID, deterministic child names) still keeps money exact: that is what a rolling
update or a failover relies on in the window where two may briefly overlap.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import socket
import sys
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .decide import Timing
from .elector import Elector, LeaseApi

log = logging.getLogger("qgov.leader")
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_NAMESPACE = "qgov-system"
DEFAULT_LEASE = "qgov-operator"
EXIT_LEASE_LOST = 3
WILDCARDS = ("", "0.0.0.0", "::", "[::]")


def in_cluster(environ: Mapping[str, str] = os.environ) -> bool:
    return bool(environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(f"{SERVICE_ACCOUNT_DIR}/token")


@dataclass(frozen=True)
class Election:
    enabled: bool
    namespace: str
    name: str
    identity: str
    timing: Timing

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Election:
        raw = environ.get("QGOV_LEADER_ELECTION", "auto").strip().lower()
        if raw in ("", "auto"):
            enabled = in_cluster(environ)
        elif raw in ("1", "true", "yes", "on"):
            enabled = True
        elif raw in ("0", "false", "no", "off"):
            enabled = False
        else:
            raise ValueError(f"QGOV_LEADER_ELECTION={raw!r}: expected true, false or auto")
        namespace = environ.get("POD_NAMESPACE") or _file(f"{SERVICE_ACCOUNT_DIR}/namespace") or DEFAULT_NAMESPACE
        pod = environ.get("POD_NAME") or environ.get("HOSTNAME") or socket.gethostname()
        # 15 s, client-go's default: renewals every 3 s and a renew deadline of 12 s, measured from
        # the start of the last renewal that succeeded. On the 2-core test bed a burst of executor pods
        # starved kube-apiserver until renewals took 3.6 s and more; with a 10 s lease (8 s deadline)
        # the next slow one cost the leader its lease mid-burst
        duration = float(environ.get("QGOV_LEASE_DURATION_SECONDS") or 15)
        # a standby looks every second (a GET: nothing for the API server), so a released lease is
        # taken within a second and an expired one within a second of its expiry
        timing = Timing(duration_s=duration, renew_every_s=duration / 5, renew_deadline_s=duration * 0.8,
                        retry_every_s=duration / 10)
        # a random suffix: a restarted container is a new candidate, never the holder it was before
        return cls(enabled, namespace, environ.get("QGOV_LEASE_NAME") or DEFAULT_LEASE,
                   f"{pod}_{secrets.token_hex(4)}", timing)


def bind_host(url_host: str | None, address: str) -> str:
    """A URL's wildcard host (http://0.0.0.0:8080/healthz) becomes the listen address; an explicit
    host is kept."""
    host = (url_host or "").strip("[]")
    return (address or "0.0.0.0") if host in WILDCARDS else host


def _file(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def lease_client(kubeconfig: str | None = None) -> Any:
    """The elector's own API client (kubeconfig.client_configuration's rule)."""
    import kubernetes

    from ..kubeconfig import client_configuration

    # no retries inside urllib3: a retried read would double an attempt's time and outlive the renew
    # deadline; the elector makes the next attempt itself, with the time then left
    return kubernetes.client.ApiClient(client_configuration(kubeconfig, retries=0))


def _exit_lost(reason: str) -> None:
    """What client-go's users do when OnStoppedLeading fires: stop the process at once. Nothing is
    cleaned up (that would be acting without the lease); the Deployment restarts the container,
    which comes back as a standby."""
    log.critical(f"stopping: this replica no longer holds the lease ({reason}); exit {EXIT_LEASE_LOST}")
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(EXIT_LEASE_LOST)


class Health:
    """GET /healthz on the event loop (so a stuck loop fails the liveness probe): 200 and the
    replica's role, on the leader and on a standby alike."""

    def __init__(self, url: str, address: str, state: dict[str, Any]) -> None:
        parsed = urllib.parse.urlparse(url)
        self.host, self.port = bind_host(parsed.hostname, address), parsed.port or 80
        self.path = parsed.path or "/healthz"
        self.state = state
        self.runner: Any = None

    async def start(self) -> None:
        from aiohttp import web

        async def healthz(request: web.Request) -> web.Response:
            return web.Response(text=json.dumps(self.state), content_type="application/json")

        app = web.Application()
        app.router.add_get(self.path, healthz)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()
        log.info(f"health on http://{self.host}:{self.port}{self.path}")

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def _hand_on(stop: asyncio.Event) -> None:
    await stop.wait()
    await asyncio.sleep(0.1)  # kopf's handlers are in place after its first steps
    signal.raise_signal(signal.SIGTERM)


def run(liveness: str | None, election: Election | None = None) -> int:
    return asyncio.run(_replica(liveness, election or Election.from_env()))


async def _replica(liveness: str | None, election: Election) -> int:
    import kopf

    from .. import costapi, metrics, metricsauth
    from ..handlers.config import OperatorConfig, listen_address

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()  # kopf installs its own handlers once it runs; until then, these
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    address = listen_address()
    state: dict[str, Any] = {"status": "ok", "role": "standby" if election.enabled else "active"}
    health = Health(liveness, address, state) if liveness else None
    if health is not None:
        await health.start()
    config = OperatorConfig.from_env()
    metrics.serve(config.metrics_port, address, metricsauth.gate_for(config.metrics_auth) if config.metrics_port else None)
    costapi.serve(config.cost_api_port, address, config.database_url, config.metrics_auth)  # every replica
    metrics.LEADER.set(0)
    elector: Elector | None = None
    try:
        if election.enabled:
            state["identity"] = election.identity
            acquired = asyncio.Event()

            def signal_acquired() -> None:
                loop.call_soon_threadsafe(acquired.set)

            elector = Elector(LeaseApi(lease_client(), election.namespace, election.name), election.identity,
                              election.timing, on_acquired=signal_acquired,
                              on_lost=_exit_lost).start()
            log.info(f"standby {election.identity}: kopf's handlers start once this replica holds the lease "
                     f"{election.namespace}/{election.name}")
            waiting = [asyncio.create_task(acquired.wait()), asyncio.create_task(stop.wait())]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in waiting:
                task.cancel()
            if not acquired.is_set():
                return 0
            state["role"] = "leader"
        if stop.is_set():
            return 0
        metrics.LEADER.set(1)
        # kopf installs its own SIGTERM/SIGINT handlers as it starts (no stop_flag: kopf would leave
        # its waiter on it pending and spend 5 s on it when it stops); a signal that lands before
        # then is handed on to it
        handing_on = asyncio.create_task(_hand_on(stop))
        try:
            await kopf.operator(standalone=True, clusterwide=True)
        finally:
            handing_on.cancel()
        return 0
    finally:
        metrics.LEADER.set(0)
        if elector is not None:  # after kopf has stopped acting: a standby may take over at once
            await asyncio.to_thread(elector.stop, True)
        if health is not None:
            await health.stop()
