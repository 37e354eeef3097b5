"""The admission webhook through the real API server: `kubectl apply` is refused with the
controller's messages, told the price of what it accepts, and `--dry-run=server` charges nothing.

Real control plane only: the emulator calls no webhooks (its tests cover the controller, which
decides the same way). The operator runs as a local process that is the ServiceAccount
qgov-operator (the manifests' RBAC judges it); it serves the webhook on 127.0.0.1 and points the
manifests' ValidatingWebhookConfiguration at it (QGOV_WEBHOOK_URL), with the CA it made and keeps
in the Secret qgov-webhook-tls. Each test puts the configuration back as the manifests have it.
"""

from __future__ import annotations

from contextlib import contextmanager

import base64
import hashlib
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.rest import ApiException

from qgov_dev.devcluster.controlplane import free_port
from qgov_dev.devcluster.upstream import SYSTEM_NAMESPACE, kubectl_binary
from qgov_dev.harness import CONFIGURATION, restore_configuration, webhook_url
from tests.operator.conftest import BELL, G, NS, TERMINAL, V, Env, Operator

pytestmark = pytest.mark.slow

SECRET = "qgov-webhook-tls"
DENIED = 'admission webhook "validate.qgov.dev" denied the request: '


class Webhooked(Env):
    upstream: Any
    tmp: Path

    def apply(self, *docs: dict[str, Any], dry_run: bool = False) -> subprocess.CompletedProcess[str]:
        path = self.tmp / f"apply-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump_all(docs))
        return subprocess.run([kubectl_binary(), "--kubeconfig", str(self.upstream.kubeconfig), "apply", "-f",
                               str(path), *(["--dry-run=server"] if dry_run else [])],
                              capture_output=True, text=True, timeout=60)

    def exists(self, name: str) -> bool:
        try:
            self.get("qiskitjobs", name)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def served_certificate(self, port: int) -> bytes:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw) as tls:
                return tls.getpeercert(binary_form=True) or b""


def qjob(name: str, backend: str = "priced-aer", circuits: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{G}/{V}", "kind": "QiskitJob", "metadata": {"name": name, "namespace": NS},
            "spec": {"backend": backend, "circuits": circuits or [BELL], **spec}}


@contextmanager
def webhooked(upstream: Any, tmp_path: Path, settings: dict[str, str],
              backend: tuple[str, dict[str, Any]]) -> Iterator[Webhooked]:
    """A fresh team namespace and an operator (as qgov-operator) whose webhook the API server calls
    at QGOV_WEBHOOK_URL, with `settings` more and `backend` (name, spec) in place; all undone after."""
    upstream.reset((NS,))
    api = kubernetes.config.new_client_from_config(config_file=str(upstream.kubeconfig))
    core, custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": NS}})
    port = free_port()
    url = f"https://127.0.0.1:{port}/validate"
    operator = Operator(upstream, f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path / "operator.log",
                        {"QGOV_WEBHOOK_PORT": str(port), "QGOV_WEBHOOK_URL": url,
                         "QGOV_WEBHOOK_NAMESPACE": SYSTEM_NAMESPACE, **settings},
                        kubeconfig=upstream.operator_kubeconfig())
    env = Webhooked(upstream, core, custom, operator, operator.database_url)
    env.upstream, env.tmp, env.port = upstream, tmp_path, port  # type: ignore[attr-defined]
    try:
        operator.start()
        env.wait(lambda: webhook_url(api) == url, "the configuration to call the operator's webhook")
        env.backend(backend[0], **backend[1])
        yield env
    finally:
        operator.stop()
        restore_configuration(api)
        upstream.reset((NS,))
        api.close()


@pytest.fixture
def wh(upstream_cluster: Any, tmp_path: Path) -> Iterator[Webhooked]:
    with webhooked(upstream_cluster, tmp_path, {"QGOV_WEBHOOK_CERT_CHECK_SECONDS": "1"},
                   ("priced-aer", {"pricing": {"perTask": "0.30"},
                                   "limits": {"maxQubits": 20, "maxShots": 100000, "maxCircuits": 4}})) as env:
        yield env


def test_jobs_that_cannot_run_are_refused_at_apply_with_the_controllers_messages(wh: Webhooked) -> None:
    nobudget = wh.apply(qjob("early"))
    assert nobudget.returncode == 1
    assert DENIED + "namespace 'team-a' has no QiskitBudget, so no quantum work is admitted here" in nobudget.stderr

    wh.budget("1.00")
    broken = BELL.replace("cx q[0],q[1];", "cx q[0] q[1];")
    invalid = wh.apply(qjob("broken", circuits=[BELL, broken]))
    assert invalid.returncode == 1, invalid
    assert DENIED + "spec.circuits[1] line 6 column " in invalid.stderr and "invalid OpenQASM" in invalid.stderr

    unknown = wh.apply(qjob("nowhere", backend="nope"))
    assert unknown.returncode == 1
    assert DENIED + "spec.backend: no QiskitBackend named 'nope' (see `kubectl get qiskitbackends`)" in unknown.stderr

    shots = wh.apply(qjob("many-shots", shots=200000))
    assert shots.returncode == 1
    assert DENIED + "spec.shots: 200000 shots, backend priced-aer accepts at most 100000" in shots.stderr

    wh.backend("pricey", pricing={"perTask": "2.00"})
    over = wh.apply(qjob("too-dear", backend="pricey"))
    assert over.returncode == 1
    assert (DENIED + "exceeded budget team-a/team-a: requested 2.00 USD, spent 0.00 USD, reserved 0.00 USD, "
            "limit 1.00 USD") in over.stderr
    assert not any(wh.exists(n) for n in ("early", "broken", "nowhere", "many-shots", "too-dear"))
    ledger = wh.ledger()
    try:  # nothing reserved: none of them ever reached the controller
        assert ledger.balance(NS, NS).held_micro == 0
    finally:
        ledger.close()


def test_a_circuit_expanding_past_the_cap_is_refused_at_apply_before_it_is_parsed(wh: Webhooked) -> None:
    """The nested-definition circuit (22 levels: 4,194,305 operations, 800 bytes) is refused by the
    webhook with the controller's words; 301 circuits by the API server's schema."""
    from tests.operator.test_pricing_e2e import nested

    wh.budget("100.00")
    wh.backend("manila", provider="fake", device="fake_manila", pricing={"perQPUSecond": "1.60"})
    refused = wh.apply(qjob("nested", backend="manila", circuits=[nested(22)]))
    assert refused.returncode == 1, refused
    assert DENIED + ("spec.circuits[0]: expands to 4194305 operations, above the limit of 1000000 "
                     "(QGOV_MAX_EXPANDED_OPERATIONS)") in refused.stderr
    many = wh.apply(qjob("many", circuits=[BELL] * 301))
    assert many.returncode == 1 and "spec.circuits: Too many: 301: must have at most 300 items" in many.stderr, many
    assert not wh.exists("nested") and not wh.exists("many")
    ledger = wh.ledger()
    try:
        assert ledger.balance(NS, NS).held_micro == 0
    finally:
        ledger.close()


def test_dry_run_prices_a_job_and_creates_and_charges_nothing(wh: Webhooked) -> None:
    wh.budget("1.00")
    priced = wh.apply(qjob("bell"), dry_run=True)
    assert priced.returncode == 0, priced.stderr
    assert "Warning: estimated 0.30 USD (" in priced.stderr
    assert "CPU-s on aer_simulator); budget team-a/team-a: 1.00 USD left this period" in priced.stderr
    assert "created (server dry run)" in priced.stdout
    time.sleep(2)  # a controller that saw something would have reserved by now
    assert not wh.exists("bell")
    ledger = wh.ledger()
    try:
        balance = ledger.balance(NS, NS)
        assert (balance.held_micro, balance.spent_micro) == (0, 0)
    finally:
        ledger.close()
    real = wh.apply(qjob("bell"))
    assert real.returncode == 0 and "Warning: estimated 0.30 USD (" in real.stderr
    assert wh.wait_terminal(["bell"])["bell"]["phase"] == "Succeeded"


def test_a_queue_budget_accepts_and_says_the_job_will_wait(wh: Webhooked) -> None:
    wh.budget("0.50", enforcement="queue")
    assert wh.apply(qjob("first")).returncode == 0
    wh.wait(lambda: wh.status("first").get("admittedGeneration"), "the first job admitted")

    def told_to_wait() -> subprocess.CompletedProcess[str] | None:
        answer = wh.apply(qjob("second"), dry_run=True)
        return answer if "the job will wait" in answer.stderr else None

    waits = wh.wait(told_to_wait, "the webhook to say the second job will wait", timeout=10)
    assert waits.returncode == 0 and "created (server dry run)" in waits.stdout
    assert "Warning: the job will wait: queued for budget team-a/team-a (position 1): requested 0.30 USD" in waits.stderr


def test_two_jobs_that_each_fit_both_pass_and_the_controller_refuses_the_second(wh: Webhooked) -> None:
    wh.budget("0.50")
    both = wh.apply(qjob("first"), qjob("second"))  # each fits the balance the webhook read
    assert both.returncode == 0, both.stderr
    assert both.stdout.count("created") == 2
    # (kubectl prints a warning once however many objects get it)
    assert "Warning: estimated 0.30 USD" in both.stderr and "0.50 USD left this period" in both.stderr
    def decided() -> dict[str, dict[str, Any]] | None:
        found = {n: wh.status(n) for n in ("first", "second")}
        return found if all(x.get("phase") in TERMINAL | {"Admitted", "Running"} for x in found.values()) else None

    statuses = wh.wait(decided, "both jobs decided")
    phases = sorted(s["phase"] for s in statuses.values())
    assert phases.count("Refused") == 1, statuses
    refused = next(s for s in statuses.values() if s["phase"] == "Refused")
    assert refused["message"].startswith("exceeded budget team-a/team-a: requested 0.30 USD")
    # and a third is refused at the door once the webhook's balances are read again (they are kept 1 s)
    def refused_at_apply() -> subprocess.CompletedProcess[str] | None:
        answer = wh.apply(qjob("third"), dry_run=True)
        return answer if answer.returncode == 1 else None

    third = wh.wait(refused_at_apply, "the webhook to refuse a third job", timeout=10)
    assert DENIED + "exceeded budget team-a/team-a: requested 0.30 USD" in third.stderr


def test_the_spec_of_a_decided_job_cannot_change(wh: Webhooked) -> None:
    wh.budget("1.00")
    assert wh.apply(qjob("bell")).returncode == 0
    wh.wait(lambda: wh.status("bell").get("admittedGeneration"), "the job admitted")
    edited = wh.apply(qjob("bell", shots=100000))
    assert edited.returncode == 1
    assert DENIED + "spec: the spec of a QiskitJob cannot change once it is decided" in edited.stderr
    assert "it was priced at 0.30 USD as admitted, generation 1" in edited.stderr
    wh.upstream.kubectl("label", "qiskitjob", "bell", "-n", NS, "team=quantum")  # metadata still changes


def test_sessions_and_backends_are_validated_with_field_paths(wh: Webhooked) -> None:
    # (what the CRDs' schemas catch, decimal strings and enums, the API server refuses first)
    model = wh.apply({"apiVersion": f"{G}/{V}", "kind": "QiskitBackend", "metadata": {"name": "mystery"},
                      "spec": {"provider": "fake", "name": "fake_nowhere", "pricing": {"perQPUSecond": "1.60"}}})
    assert model.returncode == 1
    assert DENIED + "QiskitBackend mystery: spec.name: no fake_provider backend named 'fake_nowhere'" in model.stderr
    session = wh.apply({"apiVersion": f"{G}/{V}", "kind": "QiskitSession", "metadata": {"name": "s", "namespace": NS},
                        "spec": {"backend": "nope"}})
    assert session.returncode == 1
    assert DENIED + "spec.backend: no QiskitBackend named 'nope'" in session.stderr


def test_with_the_operator_stopped_apply_succeeds_and_the_controller_refuses_later(wh: Webhooked) -> None:
    wh.budget("1.00")
    wh.backend("pricey", pricing={"perTask": "2.00"})
    wh.operator.stop()
    started = time.monotonic()
    accepted = wh.apply(qjob("while-down", backend="pricey"))  # failurePolicy Ignore: nobody answers
    took = time.monotonic() - started
    assert accepted.returncode == 0, accepted.stderr
    assert "Warning: estimated" not in accepted.stderr
    assert took < 4, f"kubectl apply took {took:.1f} s with the webhook down"
    # as installed, with no replica behind the Service: no Endpoints, the call fails at once too
    restore_configuration(wh.upstream.api)
    started = time.monotonic()
    also = wh.apply(qjob("no-endpoints", backend="pricey"))
    took = time.monotonic() - started
    assert also.returncode == 0, also.stderr
    assert took < 4, f"kubectl apply took {took:.1f} s with no Endpoints behind the Service"
    wh.operator.start()
    statuses = wh.wait_terminal(["while-down", "no-endpoints"])
    assert statuses["no-endpoints"]["phase"] == "Refused"
    status = statuses["while-down"]
    assert status["phase"] == "Refused"
    assert status["message"] == ("exceeded budget team-a/team-a: requested 2.00 USD, spent 0.00 USD, "
                                 "reserved 0.00 USD, limit 1.00 USD")


def test_a_new_certificate_is_trusted_and_served(wh: Webhooked) -> None:
    port = wh.port  # type: ignore[attr-defined]
    secret = wh.core.read_namespaced_secret(SECRET, SYSTEM_NAMESPACE)
    old_ca = base64.b64decode(secret.data["ca.crt"])
    assert "tls.key" in secret.data and "ca.key" in secret.data
    served = wh.served_certificate(port)
    assert ssl.DER_cert_to_PEM_cert(served).strip() == base64.b64decode(secret.data["tls.crt"]).decode().strip()
    # someone deletes the Secret (or it is rotated by hand): the operator makes a new CA and certificate,
    # the configuration trusts the new CA (and the old, while a replica may serve it), and it is served
    wh.core.delete_namespaced_secret(SECRET, SYSTEM_NAMESPACE)
    fresh = wh.wait(lambda: _secret_unless(wh, old_ca), "a new Secret")
    new_ca, new_cert = base64.b64decode(fresh.data["ca.crt"]), base64.b64decode(fresh.data["tls.crt"])
    wh.wait(lambda: ssl.DER_cert_to_PEM_cert(wh.served_certificate(port)).strip() == new_cert.decode().strip(),
            "the new certificate served")
    config = kubernetes.client.AdmissionregistrationV1Api(wh.upstream.api).read_validating_webhook_configuration(
        CONFIGURATION)
    bundle = base64.b64decode(config.webhooks[0].client_config.ca_bundle)
    assert bundle.startswith(new_ca.strip()) and old_ca.strip() in bundle
    wh.budget("1.00")
    refused = wh.apply(qjob("many-shots", shots=200000))  # the API server reaches the webhook on the new certificate
    assert refused.returncode == 1 and DENIED + "spec.shots: 200000 shots" in refused.stderr
    assert hashlib.sha256(served).digest() != hashlib.sha256(wh.served_certificate(port)).digest()


def _secret_unless(wh: Webhooked, old_ca: bytes) -> Any:
    try:
        secret = wh.core.read_namespaced_secret(SECRET, SYSTEM_NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return secret if base64.b64decode(secret.data["ca.crt"]) != old_ca else None


def test_two_replicas_make_one_certificate_and_renew_it_once(upstream_cluster: Any) -> None:
    """What every replica does at start and at each check, at the same moment, against the real API
    server: one Secret, one CA, one certificate that both serve; a renewal keeps the CA."""
    import datetime
    import threading

    from cryptography import x509

    from governance.webhook.tls import ensure_secret, service_hosts

    api = kubernetes.config.new_client_from_config(config_file=str(upstream_cluster.kubeconfig))
    core = kubernetes.client.CoreV1Api(api)
    name, hosts = "race-webhook-tls", service_hosts("qgov-webhook", SYSTEM_NAMESPACE)
    gate = threading.Barrier(2)

    def replica(results: list[Any], now: datetime.datetime | None = None) -> None:
        gate.wait()
        results.append(ensure_secret(core, SYSTEM_NAMESPACE, name, hosts, now))

    try:
        made: list[Any] = []
        threads = [threading.Thread(target=replica, args=(made,)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(made) == 2 and made[0] == made[1]
        stored = core.read_namespaced_secret(name, SYSTEM_NAMESPACE)
        assert base64.b64decode(stored.data["tls.crt"]) == made[0].cert_pem
        cert = x509.load_pem_x509_certificate(made[0].cert_pem)
        assert "qgov-webhook.qgov-system.svc" in str(cert.extensions)
        # 340 days on, both find the certificate due: one renews, the other takes the renewal
        later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=340)
        renewed: list[Any] = []
        threads = [threading.Thread(target=replica, args=(renewed, later)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(renewed) == 2 and renewed[0] == renewed[1]
        assert renewed[0].cert_pem != made[0].cert_pem and renewed[0].ca_pem == made[0].ca_pem
    finally:
        try:
            core.delete_namespaced_secret(name, SYSTEM_NAMESPACE)
        except ApiException:
            pass
        api.close()


def test_the_manifests_deployment_makes_its_certificate_and_the_configuration_trusts_it(
        upstream_cluster: Any, tmp_path: Path) -> None:
    """The install as the README gives it: the Deployment's pod (in-cluster configuration,
    ServiceAccount qgov-operator, the manifests' RBAC) serves the webhook and writes its CA into
    the configuration, which keeps calling the Service."""
    upstream = upstream_cluster
    upstream.reset((NS,))
    api = kubernetes.config.new_client_from_config(config_file=str(upstream.kubeconfig))
    core = kubernetes.client.CoreV1Api(api)
    admission = kubernetes.client.AdmissionregistrationV1Api(api)
    port = free_port()  # the node runs pods as local processes: 8443 may be taken on this machine
    try:
        pod = upstream.start_operator_deployment(f"sqlite:///{tmp_path / 'ledger.db'}",
                                                 {"QGOV_WEBHOOK_PORT": str(port)})

        def trusted() -> Any:
            client = admission.read_validating_webhook_configuration(CONFIGURATION).webhooks[0].client_config
            return client if client.ca_bundle else None

        deadline = time.monotonic() + 120
        while (client := trusted()) is None and time.monotonic() < deadline:
            time.sleep(0.3)
        assert client is not None, upstream.kubectl("logs", "-n", SYSTEM_NAMESPACE, "deployment/qgov-operator",
                                                    "--tail=40", check=False)
        assert client.url is None and client.service.name == "qgov-webhook"
        secret = core.read_namespaced_secret(SECRET, SYSTEM_NAMESPACE)
        ca = base64.b64decode(secret.data["ca.crt"]).strip()
        assert base64.b64decode(client.ca_bundle).startswith(ca)
        context = ssl.create_default_context(cadata=ca.decode())
        context.check_hostname = False  # the certificate names the Service, the test reaches the pod's address
        deadline = time.monotonic() + 30
        while True:  # the pod serves the certificate the configuration trusts
            try:
                with socket.create_connection((pod["status"]["podIP"], port), timeout=5) as raw:
                    with context.wrap_socket(raw) as tls:
                        served = tls.getpeercert()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        assert ("DNS", "qgov-webhook.qgov-system.svc") in served["subjectAltName"]
    finally:
        upstream.stop_operator_deployment()
        restore_configuration(api)
        upstream.reset((NS,))
        api.close()


def test_with_external_certificates_the_operator_serves_the_secret_it_is_given_and_writes_nothing(
        upstream_cluster: Any, tmp_path: Path) -> None:
    """QGOV_WEBHOOK_CERTIFICATES=external (the chart's webhook.certManager): cert-manager writes the
    Secret and its CA injector the caBundle; the operator only serves what the Secret holds."""
    from governance.webhook.tls import issue, patch_configuration, service_hosts

    upstream = upstream_cluster
    upstream.reset((NS,))
    api = kubernetes.config.new_client_from_config(config_file=str(upstream.kubeconfig))
    core = kubernetes.client.CoreV1Api(api)
    admission = kubernetes.client.AdmissionregistrationV1Api(api)
    core.create_namespace({"metadata": {"name": NS}})
    name, port = "qgov-webhook-external", free_port()
    url = f"https://127.0.0.1:{port}/validate"
    operator = Operator(upstream, f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path / "operator.log",
                        {"QGOV_WEBHOOK_PORT": str(port), "QGOV_WEBHOOK_URL": url, "QGOV_WEBHOOK_SECRET": name,
                         "QGOV_WEBHOOK_NAMESPACE": SYSTEM_NAMESPACE, "QGOV_WEBHOOK_CERTIFICATES": "external",
                         "QGOV_WEBHOOK_CERT_CHECK_SECONDS": "1"},
                        kubeconfig=upstream.operator_kubeconfig())
    env = Webhooked(upstream, core, kubernetes.client.CustomObjectsApi(api), operator, operator.database_url)
    env.upstream, env.tmp = upstream, tmp_path  # type: ignore[attr-defined]
    try:
        operator.start()
        # no Secret yet: the operator waits for it, and makes none of its own
        env.wait(lambda: "does not exist (yet): with external certificates" in (tmp_path / "operator.log").read_text(),
                 "the operator to say it waits for the Secret")
        with pytest.raises(ApiException) as missing:
            core.read_namespaced_secret(name, SYSTEM_NAMESPACE)
        assert missing.value.status == 404
        # cert-manager's part: the Secret (tls.crt, tls.key, ca.crt)
        material, _ = issue((*service_hosts("qgov-webhook", SYSTEM_NAMESPACE), "127.0.0.1"))
        core.create_namespaced_secret(SYSTEM_NAMESPACE, {
            "metadata": {"name": name}, "type": "kubernetes.io/tls",
            "data": {k: base64.b64encode(v).decode() for k, v in
                     (("tls.crt", material.cert_pem), ("tls.key", material.key_pem), ("ca.crt", material.ca_pem))}})
        env.wait(lambda: _served_pem(env, port) == material.cert_pem.decode().strip(), "the Secret's certificate served")
        # the operator wrote no caBundle (the configuration is as shipped)
        assert not admission.read_validating_webhook_configuration(CONFIGURATION).webhooks[0].client_config.ca_bundle
        # the CA injector's part (here pointed at the local operator, as QGOV_WEBHOOK_URL would)
        patch_configuration(admission, CONFIGURATION, material.ca_pem, url)
        refused = env.wait(lambda: (r := env.apply(qjob("nowhere", backend="nope"))).returncode == 1 and r,
                           "kubectl apply to be refused through the webhook")
        assert DENIED + "spec.backend: no QiskitBackend named 'nope'" in refused.stderr, refused.stderr
    finally:
        operator.stop()
        restore_configuration(api)
        try:
            core.delete_namespaced_secret(name, SYSTEM_NAMESPACE)
        except ApiException:
            pass
        upstream.reset((NS,))
        api.close()


def _served_pem(env: Webhooked, port: int) -> str | None:
    """The certificate served on `port` (PEM), or None while nothing listens there."""
    try:
        return ssl.DER_cert_to_PEM_cert(env.served_certificate(port)).strip()
    except OSError:
        return None


def test_an_api_server_that_stops_calling_the_webhook_is_seen_and_the_jobs_it_let_in_say_so(
        upstream_cluster: Any, tmp_path: Path) -> None:
    """failurePolicy Ignore makes an unreachable webhook silent: the operator's probe (a dry-run job
    the webhook refuses with a nonce) notices, says so in /metrics and its log, and each job the API
    server lets in meanwhile gets a Warning Event WebhookNotCalled; the controller still refuses what
    the webhook would have. Called again, the gauge comes back and apply refuses again."""
    import urllib.request

    port = free_port()

    def reachable(token: str) -> float | None:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith("qgov_webhook_reachable "):
                    return float(line.split()[1])
        return None

    def warned(env: Webhooked, name: str) -> list[Any]:
        return [e for e in env.core.list_namespaced_event(NS, field_selector=f"involvedObject.name={name}").items
                if e.reason == "WebhookNotCalled"]

    with webhooked(upstream_cluster, tmp_path, {"QGOV_WEBHOOK_PROBE_SECONDS": "1", "QGOV_METRICS_PORT": str(port)},
                   ("priced-aer", {"pricing": {"perTask": "0.30"},
                                   "limits": {"maxQubits": 20, "maxShots": 100000, "maxCircuits": 4}})) as env:
        token = upstream_cluster.metrics_token()
        env.wait(lambda: reachable(token) == 1.0, "the probe refused by the webhook (qgov_webhook_reachable 1)")
        env.budget("1.00")
        dear = [BELL] * 4  # 1.20 USD against 1.00
        refused = env.apply(qjob("dear-1", circuits=dear))
        assert refused.returncode == 1 and DENIED in refused.stderr, refused

        # the API server stops reaching the webhook (as with a Service without endpoints)
        admission = kubernetes.client.AdmissionregistrationV1Api(env.custom.api_client)
        served_url = webhook_url(env.custom.api_client)
        admission.patch_validating_webhook_configuration(CONFIGURATION, [
            {"op": "replace", "path": "/webhooks/0/clientConfig/url",
             "value": f"https://127.0.0.1:{free_port()}/validate"}])
        env.wait(lambda: reachable(token) == 0.0, "qgov_webhook_reachable 0", timeout=60)
        assert "the API server does not call qgov's admission webhook" in env.operator.log.read_text()
        let_in = env.apply(qjob("dear-2", circuits=dear))
        assert let_in.returncode == 0, let_in  # failurePolicy Ignore: accepted at apply
        [event] = env.wait(lambda: warned(env, "dear-2"), "the WebhookNotCalled Event on dear-2")
        assert event.type == "Warning" and "accepted at apply without qgov's admission review" in event.message
        env.wait_terminal(["dear-2"])
        assert env.status("dear-2")["phase"] == "Refused"  # the controller decides as always

        # called again
        admission.patch_validating_webhook_configuration(CONFIGURATION, [
            {"op": "replace", "path": "/webhooks/0/clientConfig/url", "value": served_url}])
        env.wait(lambda: reachable(token) == 1.0, "qgov_webhook_reachable 1 again", timeout=60)
        refused = env.apply(qjob("dear-3", circuits=dear))
        assert refused.returncode == 1 and DENIED in refused.stderr, refused
        fits = env.apply(qjob("fits"))
        assert fits.returncode == 0, fits
        env.wait_terminal(["fits"])
        assert warned(env, "fits") == []
        assert len(warned(env, "dear-2")) == 1
