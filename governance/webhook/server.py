"""The webhook's HTTPS server: AdmissionReview v1 on POST /validate, served by every replica.

It runs on an event loop of its own, in a thread of its own, next to kopf (or next to nothing
kopf does, on a standby replica): it reads and never writes, so every replica answers. The
review itself (parsing OpenQASM, transpiling to price it) is CPU work and runs in a small
thread pool, never on the loop; what it needs comes from short-lived caches:

- QiskitBackends: in a replica whose operator runs (the one holding the lease), the snapshot its
  watches feed (governance/snapshot.py, the one the controller's admission reads); elsewhere (a
  standby, or before the operator started) a snapshot of the webhook's own, listed again when
  older than `backend_ttl` (5 s). Either way one GET for a name it does not have yet (created a
  moment ago);
- budgets and their balances: the ledger, read without a lock, per namespace, kept `budget_ttl`
  (1 s): a reservation made since can make the webhook too generous, never too strict for
  long, and the controller decides under the lock anyway;
- circuits' counts, qubits and priced shapes: governance/pricing.py's caches (by a hash of the
  text), shared with the controller's admission in the same process; a new text is parsed in
  one of its worker processes.

At most `max_pending` reviews (MAX_PENDING_REVIEWS: the pool's threads and a short queue) are
in hand at once; beyond that a review is answered at once, allowed with a Warning that it was
not reviewed: the controller decides as it always does, and a burst (or a slow circuit) never
builds an unbounded queue of reviews the API server stopped waiting for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from cachetools import TTLCache
from prometheus_client import Counter, Histogram

from ..assessment import Problem
from ..api import GROUP, VERSION
from ..api.specs import Backend, budgets_that_may_come
from ..jobs.webhookprobe import PROBE_REASON, is_probe, probe_refusal
from ..snapshot import ClusterSnapshot, published
from .review import BudgetView, Verdict, response, review
from .tls import Material

if TYPE_CHECKING:  # for the types only: the ledger is imported where it is first needed (_the_ledger)
    from ..budget.ledger import Ledger

log = logging.getLogger("qgov.webhook")

REVIEWS = Counter("qgov_webhook_reviews", "Admission reviews this replica answered, by kind, verdict "
                  "(allowed, denied, undecided: let through because the review timed out or failed) and reason",
                  ("kind", "verdict", "reason"))
REVIEW_SECONDS = Histogram("qgov_webhook_review_seconds", "The webhook's own time per admission review",
                           buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 4))
LEDGER_RETRY_SECONDS = 5.0  # after a failed ledger read, reviews go without balances this long
REVIEW_TIMEOUT = 4.0  # seconds; below the configuration's timeoutSeconds (5), so the answer is ours
MAX_PENDING_REVIEWS = 16  # in the pool's threads or waiting for one; more are answered "busy" at once
BUSY_WARNING = "not reviewed: the webhook is busy; the controller still decides"


class LiveSources:
    """`review.Sources` over the cluster snapshot (the operator's, when its watches feed one in this
    process; else one this object lists), the cluster (a kubernetes ApiClient factory) and the ledger."""

    def __init__(self, api_client: Any, database_url: str | None, allow_unbudgeted: bool, *,
                 ibm_default_secret: str = "ibm-quantum", backend_ttl: float = 5.0, budget_ttl: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 snapshot: Callable[[], ClusterSnapshot | None] = published) -> None:
        """`clock`: seconds, what every time-to-live here is measured by (tests pass their own);
        `snapshot`: the snapshot the operator's watches feed in this process, if they run."""
        self.ibm_default_secret = ibm_default_secret
        self._clock = clock
        self._api_client = api_client  # () -> kubernetes.client.ApiClient, one per thread
        self._database_url = database_url
        self.allow_unbudgeted = allow_unbudgeted
        self._backend_ttl = backend_ttl
        self._watched = snapshot
        self._listed = ClusterSnapshot()  # where no watch feeds one: backends only, listed every backend_ttl
        self._backends_at = float("-inf")
        self._budgets: TTLCache[str, Mapping[str, BudgetView] | None] = TTLCache(maxsize=4096, ttl=budget_ttl,
                                                                                 timer=clock)
        self._cluster_budgets: TTLCache[str, Mapping[str, str]] = TTLCache(maxsize=4096, ttl=budget_ttl, timer=clock)
        self._lock = threading.Lock()
        self._ledger: Ledger | None = None
        self._ledger_down_until = float("-inf")
        self._local = threading.local()

    def _custom(self) -> Any:
        import kubernetes

        if not hasattr(self._local, "custom"):
            self._local.custom = kubernetes.client.CustomObjectsApi(self._api_client())
        return self._local.custom

    # ------------------------------------------------------------------ backends

    def backend(self, name: str) -> Backend | Problem | None:
        watched = self._watched()
        if watched is not None:
            return watched.backend(name, self._get_backend)
        if self._clock() - self._backends_at > self._backend_ttl:
            try:
                items = self._custom().list_cluster_custom_object(GROUP, VERSION, "qiskitbackends")["items"]
            except Exception as exc:  # noqa: BLE001 - keep the last list; the GET below may still answer
                log.warning(f"cannot list QiskitBackends: {type(exc).__name__}")
            else:
                self._listed.replace_backends(items)
                self._backends_at = self._clock()
        return self._listed.backend(name, self._get_and_keep)  # a GET: created after the list was read

    def _get_and_keep(self, name: str) -> Mapping[str, Any] | None:
        """One read of a backend the list did not have, kept until the list is read again."""
        found = self._get_backend(name)
        if found is not None:
            self._listed.backend_seen(name, found)
        return found

    def _get_backend(self, name: str) -> Mapping[str, Any] | None:
        from ..kubeerrors import unless_gone

        found: Mapping[str, Any] | None = unless_gone(
            lambda: self._custom().get_cluster_custom_object(GROUP, VERSION, "qiskitbackends", name))
        return found

    # ------------------------------------------------------------------ budgets

    def _the_ledger(self) -> Ledger:
        if self._ledger is None:
            from ..budget.ledger import Ledger

            with self._lock:
                if self._ledger is None:
                    self._ledger = Ledger(self._database_url)
        return self._ledger

    def budgets(self, namespace: str) -> Mapping[str, BudgetView] | None:
        try:
            return self._budgets[namespace]
        except KeyError:
            pass
        if self._clock() < self._ledger_down_until:
            return None  # it failed a moment ago: do not make every review wait for its connect timeout
        try:
            views = ledger_budgets(self._the_ledger(), namespace)
        except Exception as exc:  # noqa: BLE001 - an unreachable ledger: the controller decides later
            log.warning(f"cannot read the ledger's budgets of {namespace} (asking again in "
                        f"{LEDGER_RETRY_SECONDS:.0f} s): {type(exc).__name__}")
            self._ledger_down_until = self._clock() + LEDGER_RETRY_SECONDS
            return None
        if views:  # "no budget here" is read again next time: a budget created a moment ago counts at once
            self._budgets[namespace] = views
        return views

    def budgets_in_cluster(self, namespace: str) -> Mapping[str, str]:
        try:
            return self._cluster_budgets[namespace]
        except KeyError:
            pass
        try:
            items = self._custom().list_namespaced_custom_object(GROUP, VERSION, namespace, "qiskitbudgets")["items"]
        except Exception as exc:  # noqa: BLE001
            log.warning(f"cannot list the QiskitBudgets of {namespace}: {type(exc).__name__}")
            return {}
        found = budgets_that_may_come(items)
        if found:
            self._cluster_budgets[namespace] = found
        return found

    def secret_keys(self, namespace: str, name: str) -> frozenset[str] | None:
        """Only the key names leave this function: values are neither kept nor logged."""
        import kubernetes

        from ..kubeerrors import unless_gone

        core = kubernetes.client.CoreV1Api(self._api_client())
        secret = unless_gone(lambda: core.read_namespaced_secret(name, namespace))
        if secret is None:
            return None
        return frozenset(k for k, v in (secret.data or {}).items() if v)

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()


def ledger_budgets(ledger: Ledger, namespace: str) -> dict[str, BudgetView]:
    """The namespace's budgets and their balances in this period, read without a lock."""
    return {row.name: BudgetView(row.name, row.unit, row.enforcement, ledger.balance(namespace, row.name))
            for row in ledger.budgets(namespace)}


def load_certificate(context: ssl.SSLContext, material: Material) -> None:
    """Load a certificate and key from memory (the operator's root filesystem is read-only): an
    anonymous memory file on Linux, else a private temporary file removed at once."""
    data = material.cert_pem + b"\n" + material.key_pem
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("qgov-webhook-tls")
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            context.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        context.load_cert_chain(f.name)


def server_context(material: Material, client_ca: str | None = None) -> ssl.SSLContext:
    """The serving context; with `client_ca` (a PEM bundle's path, QGOV_WEBHOOK_CLIENT_CA) the
    handshake itself requires a client certificate that CA signed: a caller without one (anyone
    but the API server, given one by its AdmissionConfiguration) gets no answer at all."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_certificate(context, material)
    if client_ca:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def peer_name(request: web.Request) -> str | None:
    """The verified client certificate's common name (None: no certificate was asked for)."""
    cert = request.transport.get_extra_info("peercert") if request.transport else None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class _Busy(Exception):
    """More reviews in hand than the webhook takes."""


@dataclass
class Timing:
    """The webhook's own time per review (seconds), the last few thousand, for benchmarks."""

    samples: list[float]

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)
        if len(self.samples) > 10000:
            del self.samples[:5000]


def make_app(sources: Any, pool: concurrent.futures.Executor, timing: Timing | None = None,
             timeout: float = REVIEW_TIMEOUT, client_names: frozenset[str] = frozenset(),
             max_pending: int = MAX_PENDING_REVIEWS) -> web.Application:
    """`client_names`: if not empty, only a client certificate with one of these common names is
    answered (the CA may sign others: kubelets', admins'); the rest get 403 and no review."""
    pending = 0  # reviews handed to the pool and not finished (a timed-out one still counts)

    def finished(_: Any) -> None:
        nonlocal pending
        pending -= 1

    async def validate(request: web.Request) -> web.Response:
        nonlocal pending
        started = time.perf_counter()
        if client_names and peer_name(request) not in client_names:
            log.warning(f"refused an admission review from a client certificate for {peer_name(request)!r}: "
                        f"QGOV_WEBHOOK_CLIENT_NAMES allows {', '.join(sorted(client_names))}")
            return web.json_response({"error": "this client may not ask for admission reviews"}, status=403)
        try:
            body = await request.json()
            admission = body["request"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "expected an AdmissionReview v1 with a request"}, status=400)
        if (nonce := is_probe(admission)) is not None:  # the operator asking whether it is called at all:
            # answered at once, and counted as no review (the alerts read the reviews as real traffic)
            return web.json_response(response(body, Verdict(False, probe_refusal(nonce), PROBE_REASON)))
        loop = asyncio.get_running_loop()
        outcome = None
        try:
            if pending >= max_pending:
                raise _Busy
            pending += 1
            work = loop.run_in_executor(pool, review, admission, sources)
            work.add_done_callback(finished)
            verdict = await asyncio.wait_for(asyncio.shield(work), timeout)
        except _Busy:
            outcome = "Busy"
            verdict = Verdict(True, warnings=(BUSY_WARNING,))
        except asyncio.TimeoutError:  # the pricing goes on in its thread and is cached for next time
            outcome = "Timeout"
            verdict = Verdict(True, warnings=("qgov could not price this in time: the operator decides when it "
                                              "reconciles the object",))
        except Exception:  # noqa: BLE001 - a bug here must not stop anyone's kubectl: the controller decides
            outcome = "Error"
            log.exception("the admission review failed")
            verdict = Verdict(True, warnings=("qgov's admission check failed: the operator decides when it "
                                              "reconciles the object",))
        elapsed = time.perf_counter() - started
        REVIEW_SECONDS.observe(elapsed)
        REVIEWS.labels(str((admission.get("kind") or {}).get("kind") or "none")[:40],
                       "undecided" if outcome else "allowed" if verdict.allowed else "denied",
                       outcome or verdict.reason or "none").inc()
        if timing is not None:
            timing.add(elapsed)
        if not verdict.allowed:
            log.info(f"denied {admission.get('operation')} {(admission.get('kind') or {}).get('kind')} "
                     f"{admission.get('namespace') or ''}/{admission.get('name') or ''}: {verdict.message}")
        return web.json_response(response(body, verdict), headers={"X-Qgov-Review-Seconds": f"{elapsed:.6f}"})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=8 * 1024 * 1024)  # an AdmissionReview carries the whole object
    app.router.add_post("/validate", validate)
    app.router.add_get("/healthz", healthz)
    return app
