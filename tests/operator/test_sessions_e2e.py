"""IBM Runtime sessions end to end: dev cluster, `qgov operator`, executor pods running the real
qiskit-ibm-runtime client, and a local server speaking IBM Cloud's protocol."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from governance.testing.ibm_cloud import CRN, LocalIbmCloud

from .conftest import BELL, NS, Env

API_KEY = "local-api-key-0123456789abcdef"
FAST = dict(QGOV_SESSION_INTERVAL_SECONDS="1", QGOV_BATCH_WINDOW_SECONDS="10", QGOV_BATCH_IDLE_SECONDS="3")


@pytest.fixture
def ibm() -> Iterator[LocalIbmCloud]:
    with LocalIbmCloud(keys={API_KEY: "team-a-account"}) as cloud:
        yield cloud


def ibm_setup(env: Env, ibm: LocalIbmCloud, secret: str = "ibm-quantum", key: str = API_KEY) -> None:
    values = {"apiKey": key, "instance": CRN, "url": ibm.url, "iamUrl": ibm.url, "searchUrl": ibm.url,
              "catalogUrl": f"{ibm.url}/catalog"}
    env.core.create_namespaced_secret(NS, {"metadata": {"name": secret}, "data": {
        k: base64.b64encode(v.encode()).decode() for k, v in values.items()}})
    env.backend("ibm-local", provider="ibm", device="ibm_local", model="fake_manila", pricing={"perQPUSecond": "1.60"})


def sessions(env: Env) -> list[dict]:
    return env.custom.list_namespaced_custom_object("qgov.dev", "v1alpha1", NS, "qiskitsessions")["items"]


@pytest.mark.operator_env(**FAST)
def test_ibm_jobs_are_batched_into_one_runtime_session_charged_per_job_and_closed_when_idle(
        env: Env, ibm: LocalIbmCloud) -> None:
    ibm_setup(env, ibm)
    env.budget("100.00")
    names = [f"ibm-{i}" for i in range(20)]
    for name in names:
        env.job(name, backend="ibm-local", shots=2000)
    statuses = env.wait_terminal(names, timeout=240)
    assert all(s["phase"] == "Succeeded" for s in statuses.values()), statuses
    assert len(ibm.sessions) == 1 and {s["session"] for s in statuses.values()} == {sessions(env)[0]["metadata"]["name"]}
    (runtime_session,) = ibm.sessions.values()
    assert runtime_session.mode == "batch" and len(runtime_session.jobs) == 20
    for status in statuses.values():  # IBM metered 1 quantum second per job: 1.60 USD, charged once
        assert status["qpuSeconds"] == "1" and status["actualCost"] == "1.60"
    session = env.wait(lambda: next((s for s in sessions(env) if s["status"].get("phase") == "Closed"), None),
                       "the idle batch to close")
    assert runtime_session.state == "closed" and not runtime_session.accepting_jobs
    assert session["status"]["jobs"] == 20 and session["status"]["cost"] == "32.00"
    assert "idleTimeout" in session["status"]["message"]
    ledger = env.ledger()
    assert ledger.balance(NS, NS).spent_micro == 32_000_000 and ledger.verify() == []
    ledger.close()
    scan_for_secrets(env, ibm)


def secrets_seen(env: Env, ibm: LocalIbmCloud) -> list[str]:
    return [API_KEY] + list(ibm.issued)


def scan_for_secrets(env: Env, ibm: LocalIbmCloud) -> None:
    """No API key or bearer token in the operator's log, pod logs, statuses, Events or ConfigMaps."""
    import json

    places: dict[str, str] = {"operator log": env.operator.log.read_text(errors="replace")}
    for plural in ("qiskitjobs", "qiskitsessions", "qiskitbudgets"):
        for obj in env.custom.list_namespaced_custom_object("qgov.dev", "v1alpha1", NS, plural)["items"]:
            places[f"{plural}/{obj['metadata']['name']}"] = json.dumps(obj)
    for event in env.core.list_namespaced_event(NS).items:
        places[f"event {event.metadata.name}"] = f"{event.reason} {event.message}"
    for cm in env.core.list_namespaced_config_map(NS).items:
        places[f"configmap {cm.metadata.name}"] = json.dumps(cm.data or {}) + json.dumps(cm.binary_data or {})
    for pod in env.core.list_namespaced_pod(NS).items:
        log = env.core.read_namespaced_pod_log(pod.metadata.name, NS, _preload_content=False).data.decode()
        places[f"pod {pod.metadata.name}"] = log + json.dumps(pod.to_dict(), default=str)
    secrets = secrets_seen(env, ibm)
    assert len(secrets) > 1 and places
    leaks = [(where, s[:12]) for where, text in places.items() for s in secrets if s in text]
    assert leaks == [], leaks
