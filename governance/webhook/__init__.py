"""qgov's validating admission webhook: refuse at `kubectl apply` what the controller would refuse.

`review` (pure: the decision), `server` (aiohttp, caches), `tls` (the CA and serving certificate
in a Secret, the caBundle of the ValidatingWebhookConfiguration). `start_from_env` is what
`qgov operator` calls: with QGOV_WEBHOOK_PORT set (the manifests set 8443) every replica serves
it, leader or standby, in a thread of its own.

Settings (environment):
- QGOV_WEBHOOK_PORT: the HTTPS port; unset or 0: no webhook (a local `qgov operator` run);
- QGOV_WEBHOOK_NAMESPACE: where the Secret and the Service are (default: the pod's namespace,
  else qgov-system); QGOV_WEBHOOK_SERVICE (qgov-webhook), QGOV_WEBHOOK_SECRET (qgov-webhook-tls),
  QGOV_WEBHOOK_CONFIGURATION (the ValidatingWebhookConfiguration, qgov-webhook);
- QGOV_WEBHOOK_URL: for an operator run outside the cluster (development, the tests): the URL
  the API server is to call; its host goes into the certificate, and the configuration is
  pointed at it instead of the Service;
- QGOV_WEBHOOK_CERT_CHECK_SECONDS: how often the Secret is looked at again (renewal, a new CA;
  default 3600);
- QGOV_WEBHOOK_CLIENT_CA: a PEM CA bundle (a mounted file); set, the webhook answers only a
  client whose certificate that CA signed (the API server, given one by its AdmissionConfiguration's
  WebhookAdmissionConfiguration kubeConfigFile): a forged AdmissionReview from anywhere else gets
  no TLS connection; QGOV_WEBHOOK_CLIENT_NAMES: comma-separated common names of that certificate,
  if the CA signs others too (unset: any certificate the CA signed);
- QGOV_WEBHOOK_PROBE_SECONDS: how often this replica asks the API server, with a dry-run
  QiskitJob marked as a probe, whether it calls the webhook at all (jobs/webhookprobe.py;
  default 60, 0: never); the answer is the gauge qgov_webhook_reachable, a log line when it
  changes, and a Warning Event WebhookNotCalled on each job created while it is not called;
- QGOV_WEBHOOK_CERTIFICATES: `operator` (default: qgov makes and renews its CA and certificate in
  the Secret and writes the CA into the configuration's caBundle) or `external` (cert-manager, or
  you, write the Secret's tls.crt, tls.key and ca.crt, and cert-manager's CA injector the
  caBundle: qgov writes neither, it serves what the Secret holds and follows its renewals).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlparse

from ..api import GROUP, VERSION

log = logging.getLogger("qgov.webhook")


@dataclass(frozen=True)
class WebhookConfig:
    port: int
    namespace: str
    service: str = "qgov-webhook"
    secret: str = "qgov-webhook-tls"
    configuration: str = "qgov-webhook"
    url: str | None = None
    cert_check_seconds: float = 3600.0
    host: str = "0.0.0.0"
    external_certificates: bool = False  # QGOV_WEBHOOK_CERTIFICATES=external
    client_ca: str | None = None  # QGOV_WEBHOOK_CLIENT_CA: require the API server's client certificate
    client_names: frozenset[str] = frozenset()  # QGOV_WEBHOOK_CLIENT_NAMES: and one of these CNs
    probe_seconds: float = 60.0  # QGOV_WEBHOOK_PROBE_SECONDS; 0: no probe

    @classmethod
    def from_env(cls) -> WebhookConfig | None:
        from ..handlers.config import listen_address
        from .tls import in_cluster_namespace

        port = int(os.environ.get("QGOV_WEBHOOK_PORT") or 0)
        if not port:
            return None
        url = os.environ.get("QGOV_WEBHOOK_URL") or None
        certificates = (os.environ.get("QGOV_WEBHOOK_CERTIFICATES") or "operator").strip().lower()
        if certificates not in ("operator", "external"):
            raise ValueError(f"QGOV_WEBHOOK_CERTIFICATES={certificates!r}: expected operator or external")
        client_ca = os.environ.get("QGOV_WEBHOOK_CLIENT_CA") or None
        if client_ca and not os.path.isfile(client_ca):
            raise ValueError(f"QGOV_WEBHOOK_CLIENT_CA={client_ca!r}: no such file (a PEM CA bundle)")
        names = frozenset(n.strip() for n in os.environ.get("QGOV_WEBHOOK_CLIENT_NAMES", "").split(",") if n.strip())
        if names and not client_ca:
            raise ValueError("QGOV_WEBHOOK_CLIENT_NAMES needs QGOV_WEBHOOK_CLIENT_CA (the CA that signs those names)")
        return cls(port=port, external_certificates=certificates == "external", client_ca=client_ca,
                   client_names=names,
                   namespace=os.environ.get("QGOV_WEBHOOK_NAMESPACE") or in_cluster_namespace() or "qgov-system",
                   service=os.environ.get("QGOV_WEBHOOK_SERVICE", "qgov-webhook"),
                   secret=os.environ.get("QGOV_WEBHOOK_SECRET", "qgov-webhook-tls"),
                   configuration=os.environ.get("QGOV_WEBHOOK_CONFIGURATION", "qgov-webhook"),
                   url=url, cert_check_seconds=float(os.environ.get("QGOV_WEBHOOK_CERT_CHECK_SECONDS", "3600")),
                   probe_seconds=float(os.environ.get("QGOV_WEBHOOK_PROBE_SECONDS") or "60"),
                   # the replica's address (its pod IP, as its other listeners), so replicas sharing a
                   # host cannot collide; a URL on loopback (an operator run outside) binds loopback
                   host="127.0.0.1" if url and urlparse(url).hostname in ("127.0.0.1", "localhost")
                   else listen_address() or "0.0.0.0")

    def hosts(self) -> tuple[str, ...]:
        from .tls import service_hosts

        names = service_hosts(self.service, self.namespace)
        if self.url:
            names = (*names, str(urlparse(self.url).hostname))
        return names


@dataclass
class Webhook:
    """The running webhook: its thread, loop and what it serves."""

    config: WebhookConfig
    thread: threading.Thread | None = None
    loop: asyncio.AbstractEventLoop | None = None
    pool: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="qgov-webhook"))
    ready: threading.Event = field(default_factory=threading.Event)
    prober: asyncio.Task[None] | None = None

    def start(self) -> Webhook:
        self.thread = threading.Thread(target=self._run, name="qgov-webhook", daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except Exception:  # noqa: BLE001 - the webhook is optional for correctness: the controller decides
            log.exception("the admission webhook stopped")

    async def _serve(self) -> None:
        import kubernetes
        from aiohttp import web

        from ..handlers.config import OperatorConfig
        from ..kubeconfig import client_configuration
        from .server import LiveSources, Timing, make_app, server_context
        from .tls import ensure_secret, patch_configuration, read_secret

        loop = asyncio.get_running_loop()
        configuration = client_configuration()
        local = threading.local()

        def api_client() -> Any:
            if not hasattr(local, "api"):
                local.api = kubernetes.client.ApiClient(configuration)
            return local.api

        def core() -> Any:
            return kubernetes.client.CoreV1Api(api_client())

        def admission() -> Any:
            return kubernetes.client.AdmissionregistrationV1Api(api_client())

        config = self.config
        hosts = config.hosts()

        async def certificate() -> Any:
            if config.external_certificates:  # cert-manager's (or the admin's): read, never written
                return await loop.run_in_executor(self.pool, read_secret, core(), config.namespace, config.secret)
            return await loop.run_in_executor(self.pool, ensure_secret, core(), config.namespace, config.secret, hosts)

        async def trust(material: Any) -> None:
            if config.external_certificates:
                return  # the caBundle is cert-manager's CA injector's to write
            await loop.run_in_executor(self.pool, patch_configuration, admission(), config.configuration,
                                       material.ca_pem, config.url)

        while True:  # no certificate, no server: wait for the API server (and RBAC) to let us make one
            try:
                material = await certificate()
                break
            except Exception as exc:  # noqa: BLE001
                log.warning(f"cannot read or create Secret {config.namespace}/{config.secret} for the webhook's "
                            f"certificate: {_one_line(exc)}; trying again in 5 s")
                await asyncio.sleep(5)
        context = server_context(material, config.client_ca)
        operator = OperatorConfig.from_env()
        sources = LiveSources(api_client, operator.database_url, operator.allow_unbudgeted,
                              ibm_default_secret=operator.ibm_default_secret)
        self.timing = Timing([])
        runner = web.AppRunner(make_app(sources, self.pool, self.timing, client_names=config.client_names),
                               access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, config.host, config.port, ssl_context=context)
        await site.start()
        log.info(f"qgov webhook serving https://{config.host}:{config.port}/validate "
                 f"(certificate {material.fingerprint()} for {', '.join(hosts)}; "
                 + (f"only clients with a certificate from {config.client_ca}" if config.client_ca
                    else "any client: set QGOV_WEBHOOK_CLIENT_CA to require the API server's certificate") + ")")
        self.ready.set()
        self.pool.submit(_warm_up)
        if config.probe_seconds > 0:
            self.prober = loop.create_task(self._probe_forever(api_client))
        trusted, retry = False, 5.0
        while True:
            if not trusted:
                try:
                    await trust(material)
                    trusted, retry = True, 5.0
                except Exception as exc:  # noqa: BLE001
                    log.warning(f"cannot update ValidatingWebhookConfiguration {config.configuration}: "
                                f"{_one_line(exc)}; trying again in {retry:.0f} s")
                    retry = min(retry * 2, 300.0)
            await asyncio.sleep(config.cert_check_seconds if trusted else retry / 2)
            try:
                current = await certificate()
            except Exception as exc:  # noqa: BLE001
                log.warning(f"cannot read Secret {config.namespace}/{config.secret}: {_one_line(exc)}")
                continue
            if current.cert_pem != material.cert_pem or current.ca_pem != material.ca_pem:
                if current.ca_pem != material.ca_pem:
                    trusted = False
                    material = current
                    try:  # the API server trusts the new CA (and the old one) before we serve its certificate
                        await trust(material)
                        trusted = True
                    except Exception as exc:  # noqa: BLE001
                        log.warning(f"cannot update ValidatingWebhookConfiguration {config.configuration}: "
                                    f"{_one_line(exc)}")
                material = current
                from .server import load_certificate

                load_certificate(context, material)  # new connections get the new certificate
                log.info(f"the webhook serves certificate {material.fingerprint()} now")


    async def _probe_forever(self, api_client: Any) -> None:
        """Ask the API server whether it calls the webhook, every probe_seconds (jobs/webhookprobe.py)."""
        import kubernetes

        from ..jobs import webhookprobe
        from ..kubeerrors import KubeError, api_errors
        from ..metrics import WEBHOOK_REACHABLE

        loop = asyncio.get_running_loop()
        namespace = self.config.namespace

        def probe() -> tuple[webhookprobe.Answer, str]:
            nonce = webhookprobe.new_nonce()
            custom = kubernetes.client.CustomObjectsApi(api_client())
            try:
                with api_errors():
                    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "qiskitjobs",
                                                           webhookprobe.probe_job(namespace, nonce), dry_run="All")
            except KubeError as exc:  # its message: the Status message of the refusal, else the HTTP reason
                return webhookprobe.read_answer(nonce, False, exc.status, exc.message)
            return webhookprobe.read_answer(nonce, True)

        await asyncio.sleep(min(5.0, self.config.probe_seconds))  # the caBundle written just now
        while True:
            try:
                answer, detail = await loop.run_in_executor(self.pool, probe)
            except Exception as exc:  # noqa: BLE001 - the API server unreachable: nothing learnt
                answer, detail = "unknown", _one_line(exc)
            state = webhookprobe.STATE
            if state.record(answer, detail, datetime.now(timezone.utc)):
                WEBHOOK_REACHABLE.set(1 if state.reachable else 0)
                if state.reachable:
                    log.info("the API server calls qgov's admission webhook")
                else:
                    log.warning(f"the API server does not call qgov's admission webhook: {detail}; jobs are "
                                "admitted at apply without review (the controller still decides them)")
            elif answer == "unknown":
                log.warning(f"cannot tell whether the API server calls the webhook: {detail}")
            await asyncio.sleep(self.config.probe_seconds)




def _warm_up() -> None:
    """Start the pricing workers (which import qiskit's parsers and transpiler) before the first
    review needs them."""
    from .. import pricing

    pricing.start()


def _one_line(exc: BaseException) -> str:
    status, reason = getattr(exc, "status", None), getattr(exc, "reason", None)
    if status is not None:
        return f"the API server answered {status} {reason or ''}".strip()
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def start_from_env() -> Webhook | None:
    """Start the webhook if QGOV_WEBHOOK_PORT says so (`qgov operator` calls this first thing)."""
    config = WebhookConfig.from_env()
    if config is None:
        return None
    return Webhook(config).start()
