"""The webhook's TLS: a CA qgov manages itself, a serving certificate, both kept in one Secret.

The Secret (`qgov-webhook-tls` in the operator's namespace: tls.crt, tls.key, ca.crt, ca.key) is
created once by whichever replica comes first: every replica tries to create it, a 409 means
another won, and then it reads and uses that one. The serving certificate is renewed with the
same CA (so the caBundle the API server trusts does not change) when it is within RENEW_BEFORE
of its end or does not name every host; the renewal is a replace with the read
resourceVersion, so of two replicas renewing at once one wins and the other reads its result.
A Secret deleted by hand is created again, with a new CA: the caBundle then carries the new CA
and the previous one, so the API server trusts whichever certificate a replica still serves.

Private keys stay in the Secret and in memory: never logged, never in an exception's message.
"""

from __future__ import annotations

import base64
import datetime
import logging
import os
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from .. import pki
from ..kubeerrors import Conflict, NotFound, api_errors, created

log = logging.getLogger("qgov.webhook")

CA_VALID_FOR = datetime.timedelta(days=3650)
CERT_VALID_FOR = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=30)
MAX_CONFLICTS = 5


@dataclass(frozen=True)
class Material:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes = field(default=b"", repr=False, compare=False)  # never shown, not even in a test's diff

    def __repr__(self) -> str:  # the key never shows in a log line or a traceback's locals
        return f"Material(cert={self.fingerprint()})"

    def fingerprint(self) -> str:
        return x509.load_pem_x509_certificate(self.cert_pem).fingerprint(hashes.SHA256()).hex()[:16]


def service_hosts(service: str, namespace: str) -> tuple[str, ...]:
    """The names the API server verifies a Service-referenced webhook by."""
    return (service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _material(secret: Any) -> Material | None:
    data = (secret.data if hasattr(secret, "data") else secret.get("data")) or {}
    try:
        return Material(base64.b64decode(data["ca.crt"]), base64.b64decode(data["tls.crt"]),
                        base64.b64decode(data["tls.key"]))
    except (KeyError, ValueError):
        return None


def _ca_key(secret: Any) -> bytes | None:
    data = secret.data or {}
    return base64.b64decode(data["ca.key"]) if "ca.key" in data else None


def issue(hosts: tuple[str, ...], ca: tuple[x509.Certificate, Any] | None = None,
          now: datetime.datetime | None = None) -> tuple[Material, bytes]:
    """A serving certificate for `hosts`, signed by `ca` (a new one when None); and the CA's key."""
    ca_cert, ca_key = ca or pki.new_ca("qgov-webhook-ca", CA_VALID_FOR, now)
    cert, key = pki.issue(ca_cert, ca_key, hosts[0], hosts=hosts, server=True, valid_for=CERT_VALID_FOR, now=now)
    return Material(pki.cert_pem(ca_cert), pki.cert_pem(cert), pki.private_pem(key)), pki.private_pem(ca_key)


def _body(name: str, namespace: str, material: Material, ca_key_pem: bytes,
          resource_version: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace,
                            "labels": {"app.kubernetes.io/name": "qgov-operator",
                                       "app.kubernetes.io/component": "webhook"}}
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": meta,
            "data": {"tls.crt": _b64(material.cert_pem), "tls.key": _b64(material.key_pem),
                     "ca.crt": _b64(material.ca_pem), "ca.key": _b64(ca_key_pem)}}


def _due(material: Material, hosts: tuple[str, ...], now: datetime.datetime) -> str | None:
    """Why the serving certificate must be renewed, or None."""
    cert = x509.load_pem_x509_certificate(material.cert_pem)
    if pki.remaining(cert, now) < RENEW_BEFORE:
        return f"it ends {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if not pki.covers(cert, hosts):
        return f"it does not name every one of {', '.join(hosts)}"
    return None


def ensure_secret(core: Any, namespace: str, name: str, hosts: tuple[str, ...],
                  now: datetime.datetime | None = None) -> Material:
    """The serving certificate and CA in Secret `namespace/name`: created if missing, renewed if
    due. Safe with any number of replicas doing the same at once. `now`: the clock (tests)."""
    for _ in range(MAX_CONFLICTS):
        try:
            with api_errors():
                secret = core.read_namespaced_secret(name, namespace)
        except NotFound:
            issued, ca_key = issue(hosts, now=now)
            if created(partial(core.create_namespaced_secret, namespace, _body(name, namespace, issued, ca_key))):
                log.info(f"created the webhook's CA and serving certificate in Secret {namespace}/{name} "
                         f"({issued.fingerprint()}, for {', '.join(hosts)})")
                return issued
            continue  # another replica created it first: use theirs
        material = _material(secret)
        ca_key_pem = _ca_key(secret)
        why = "it is incomplete" if material is None or ca_key_pem is None else _due(
            material, hosts, now or datetime.datetime.now(datetime.timezone.utc))
        if why is None:
            assert material is not None
            return material
        ca = None
        if material is not None and ca_key_pem is not None:
            ca_cert = x509.load_pem_x509_certificate(material.ca_pem)
            if pki.remaining(ca_cert, now) > CERT_VALID_FOR:
                ca = (ca_cert, pki.load_key(ca_key_pem))
        renewed, ca_key = issue(hosts, ca, now)
        try:
            with api_errors():
                core.replace_namespaced_secret(name, namespace, _body(name, namespace, renewed, ca_key,
                                                                      secret.metadata.resource_version))
            log.info(f"renewed the webhook's serving certificate in Secret {namespace}/{name}: {why} "
                     f"(now {renewed.fingerprint()})")
            return renewed
        except (Conflict, NotFound):
            pass  # changed or deleted meanwhile (another replica): read it again
    raise RuntimeError(f"Secret {namespace}/{name} kept changing under {MAX_CONFLICTS} attempts to read it")


def read_secret(core: Any, namespace: str, name: str) -> Material:
    """The serving certificate someone else keeps in Secret `namespace/name` (cert-manager writes
    tls.crt, tls.key and ca.crt): QGOV_WEBHOOK_CERTIFICATES=external. Never written from here."""
    try:
        with api_errors():
            secret = core.read_namespaced_secret(name, namespace)
    except NotFound:
        raise RuntimeError(f"Secret {namespace}/{name} does not exist (yet): with external certificates, "
                           "cert-manager or an admin writes its tls.crt, tls.key and ca.crt") from None
    material = _material(secret)
    if material is None:
        raise RuntimeError(f"Secret {namespace}/{name} lacks one of tls.crt, tls.key, ca.crt")
    return material


def patch_configuration(admission: Any, name: str, ca_pem: bytes, url: str | None = None) -> bool:
    """Make every webhook of ValidatingWebhookConfiguration `name` trust `ca_pem` (and, with `url`,
    call that URL: an operator run outside the cluster). The previous CA stays in the bundle
    while it is still valid, so a replica still serving a certificate of the old CA is trusted.
    Returns whether anything changed; False also when the configuration is not installed."""
    for _ in range(MAX_CONFLICTS):
        try:
            with api_errors():
                config = admission.read_validating_webhook_configuration(name)
        except NotFound:
            log.warning(f"no ValidatingWebhookConfiguration {name}: the API server does not call the webhook "
                        "(install operator/manifests)")
            return False
        changed = False
        for hook in config.webhooks or []:
            client = hook.client_config
            bundle = _bundle(ca_pem, base64.b64decode(client.ca_bundle) if client.ca_bundle else b"")
            if client.ca_bundle != _b64(bundle):
                client.ca_bundle, changed = _b64(bundle), True
            if url and (client.url != url or client.service is not None):
                client.url, client.service, changed = url, None, True
        if not changed:
            return False
        try:
            with api_errors():
                admission.replace_validating_webhook_configuration(name, config)
            log.info(f"ValidatingWebhookConfiguration {name} trusts the webhook's CA"
                     + (f" and calls {url}" if url else ""))
            return True
        except Conflict:
            pass  # changed meanwhile: read it again
    raise RuntimeError(f"ValidatingWebhookConfiguration {name} kept changing under {MAX_CONFLICTS} attempts")


def _bundle(ca_pem: bytes, current: bytes) -> bytes:
    """`ca_pem` first, then the CAs of the current bundle that are still valid (at most one more)."""
    keep = [ca_pem.strip()]
    now = datetime.datetime.now(datetime.timezone.utc)
    for cert in _certificates(current):
        pem = pki.cert_pem(cert).strip()
        if pem not in keep and pki.remaining(cert, now) > datetime.timedelta(0) and len(keep) < 2:
            keep.append(pem)
    return b"\n".join(keep) + b"\n"


def _certificates(bundle: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(bundle) if bundle.strip() else []
    except ValueError:
        return []


def in_cluster_namespace() -> str | None:
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    if os.path.exists(path):
        with open(path) as f:
            return f.read().strip() or None
    return None
