"""The two Runtime clients against a local server speaking IBM's protocol: the operator's session
API (governance/providers/ibm/runtime_api.py) and the executor's path through qiskit-ibm-runtime
(executor/ibm.py), including how IBM's failures reach the job."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.ibm import RuntimeRefusal, run_ibm
from governance.api.specs import parse_backend, parse_job
from governance.circuits import parse_circuits
from governance.providers.ibm.runtime_api import RuntimeApi, RuntimeApiError
from governance.providers.ibm.iam import Credential, iam_exchange
from governance.sessions.tokens import TokenManager
from qgov_dev.testing.ibm_cloud import CRN, LocalIbmCloud

KEY = "runtime-clients-test-key-42"
BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'
BACKEND = parse_backend("ibm-local", {"provider": "ibm", "name": "ibm_local", "model": "fake_manila"})


@pytest.fixture
def ibm() -> Iterator[LocalIbmCloud]:
    with LocalIbmCloud(keys={KEY: "acct"}) as cloud:
        yield cloud


def api_for(ibm: LocalIbmCloud, key: str = KEY) -> RuntimeApi:
    return RuntimeApi(Credential(key, CRN, ibm.url, ibm.url), TokenManager(iam_exchange))


@pytest.fixture
def pod(ibm: LocalIbmCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An executor pod's view: a mounted token file and the environment qgov gives it (no key)."""
    token = tmp_path / "token"
    token.write_text(TokenManager(iam_exchange).token(Credential(KEY, CRN, ibm.url, ibm.url)).value)
    for name, value in {"QGOV_IBM_TOKEN_FILE": str(token), "QGOV_IBM_INSTANCE": CRN, "QGOV_IBM_URL": ibm.url,
                        "GLOBAL_SEARCH_URL": ibm.url, "GLOBAL_CATALOG_URL": f"{ibm.url}/catalog"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("IAM_URL", raising=False)
    return token


def open_session(ibm: LocalIbmCloud, monkeypatch: pytest.MonkeyPatch, mode: str = "batch") -> str:
    session_id = api_for(ibm).create_session("ibm_local", mode, 600)
    monkeypatch.setenv("QGOV_IBM_SESSION", session_id)
    monkeypatch.setenv("QGOV_IBM_SESSION_MODE", mode)
    return session_id


def job(**spec):
    parsed = parse_job({"backend": "ibm-local", "circuits": [BELL], "shots": 4000, **spec})
    return parsed, parse_circuits(parsed.circuits)


def test_the_session_api_opens_closes_and_reads_usage(ibm: LocalIbmCloud) -> None:
    api = api_for(ibm)
    session_id = api.create_session("ibm_local", "dedicated", 120)
    assert api.session(session_id)["state"] == "open" and ibm.sessions[session_id].max_ttl == 120
    assert api.instance_usage().limit_reached is False
    api.close_session(session_id)
    assert api.session(session_id)["state"] == "closed" and not ibm.sessions[session_id].accepting_jobs
    api.close_session("no-such-session")  # closing what IBM already forgot is not an error


def test_the_session_api_retries_5xx_and_names_the_call_but_never_the_key(ibm: LocalIbmCloud) -> None:
    api = api_for(ibm)
    ibm.fail_next_runtime = 2
    assert api.create_session("ibm_local", "batch", 60)  # two 503s, then it works
    ibm.fail_next_runtime = 10
    with pytest.raises(RuntimeApiError) as failed:
        api.create_session("ibm_local", "batch", 60)
    assert failed.value.status == 503 and "POST /sessions: HTTP 503" in str(failed.value)
    with pytest.raises(Exception) as refused:
        api_for(ibm, key="not-a-known-key").create_session("ibm_local", "batch", 60)
    assert "IAM refused the API key" in str(refused.value) and "not-a-known-key" not in str(refused.value)


def test_the_executor_samples_and_estimates_in_the_session_with_only_a_token(
        ibm: LocalIbmCloud, pod: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    session_id = open_session(ibm, monkeypatch)
    exchanged = ibm.exchanges[KEY]
    spec, circuits = job()
    results, usage, runtime_job = run_ibm(spec, BACKEND, circuits)
    counts = results[0]["counts"]
    assert sum(counts.values()) == 4000 and counts.get("00", 0) + counts.get("11", 0) > 3600  # a noisy Bell pair
    assert usage == {"qpuSeconds": "1", "shots": "4000", "tasks": "1"}  # IBM's metered quantum seconds
    assert ibm.jobs[runtime_job].session_id == session_id and ibm.jobs[runtime_job].program_id == "executor"
    spec, circuits = job(primitive="estimator", observables=[["ZZ", "XX", "ZI"]])
    results, _, _ = run_ibm(spec, BACKEND, circuits)
    zz, xx, zi = results[0]["expectationValues"]
    assert zz > 0.9 and xx > 0.9 and abs(zi) < 0.1
    assert KEY not in os.environ.values() and ibm.exchanges[KEY] == exchanged  # the pod never exchanged the key


def test_the_executor_picks_up_a_rotated_token(ibm: LocalIbmCloud, pod: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    open_session(ibm, monkeypatch)
    spec, circuits = job()
    run_ibm(spec, BACKEND, circuits)
    ibm._live.clear()  # every token issued so far is revoked...
    pod.write_text(TokenManager(iam_exchange).token(Credential(KEY, CRN, ibm.url, ibm.url)).value)  # ...and a new one mounted
    results, _, _ = run_ibm(spec, BACKEND, circuits)
    assert sum(results[0]["counts"].values()) == 4000


def test_a_refused_token_is_a_credentials_error_that_is_not_retried(
        ibm: LocalIbmCloud, pod: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    open_session(ibm, monkeypatch)
    ibm._live.clear()  # the mounted token was revoked
    spec, circuits = job()
    with pytest.raises(RuntimeRefusal) as refused:
        run_ibm(spec, BACKEND, circuits)
    assert refused.value.deterministic and refused.value.reason == "CredentialsRefused"
    assert "401" in str(refused.value) and pod.read_text() not in str(refused.value)


def test_5xx_after_the_clients_retries_is_transient(ibm: LocalIbmCloud, pod: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    open_session(ibm, monkeypatch)
    ibm.fail_next_runtime = 1000
    spec, circuits = job()
    with pytest.raises(RuntimeRefusal) as failed:
        run_ibm(spec, BACKEND, circuits)
    assert not failed.value.deterministic and failed.value.reason == "RuntimeUnavailable"
    assert "503" in str(failed.value)


def test_a_closed_session_refuses_the_job_with_409_and_a_retry_may_help(
        ibm: LocalIbmCloud, pod: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    session_id = open_session(ibm, monkeypatch)
    api_for(ibm).close_session(session_id)
    spec, circuits = job()
    with pytest.raises(RuntimeRefusal) as refused:
        run_ibm(spec, BACKEND, circuits)
    assert not refused.value.deterministic and refused.value.reason == "SessionClosed", refused.value
    assert ibm.jobs == {}


def test_an_instance_at_its_usage_limit_gets_no_job_submitted(ibm: LocalIbmCloud, pod: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    open_session(ibm, monkeypatch)
    ibm.instance.limit_seconds, ibm.instance.used_seconds = 100, 100
    spec, circuits = job()
    with pytest.raises(RuntimeRefusal) as refused:
        run_ibm(spec, BACKEND, circuits)
    assert refused.value.reason == "InstanceLimitReached" and not refused.value.deterministic
    assert "100s used of 100s" in str(refused.value) and ibm.jobs == {}


def test_the_operator_reads_ibms_meter_only_for_a_job_of_the_session_it_opened(
        ibm: LocalIbmCloud, pod: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What an ibm attempt is charged: IBM's metered quantum_seconds for the Runtime job the executor
    names, read by the operator, and only if that job is in the session qgov opened for the qgov
    job; a tenant pointing at a cheaper job of another session, or at none, gets no meter reading
    (and is charged the model; Provider.charged_usage)."""
    from decimal import Decimal

    from governance.budget.costmodel import Usage
    from governance.providers import get
    from governance.providers.ibm.metering import metered_usage

    cheap_session = open_session(ibm, monkeypatch)
    spec, circuits = job(shots=10)
    _, _, cheap_job = run_ibm(spec, BACKEND, circuits)
    ours = open_session(ibm, monkeypatch)
    spec, circuits = job()
    _, usage, runtime_job = run_ibm(spec, BACKEND, circuits)
    api = api_for(ibm)
    metered, why = metered_usage(api, runtime_job, ours)
    assert why == "" and metered == Usage(qpu_seconds=Decimal(usage["qpuSeconds"]))
    assert metered_usage(api, cheap_job, ours) == (
        None, f"Runtime job {cheap_job} is not in the session qgov opened for this job ({ours}); "
              "its usage is not this job's")
    assert metered_usage(api, "", ours) == (None, "the attempt named no Runtime job")
    with pytest.raises(RuntimeApiError, match="HTTP 404"):
        metered_usage(api, "no-such-job", ours)
    assert cheap_session != ours
    model = Usage(qpu_seconds=Decimal("9.5"))
    provider = get("ibm")
    assert provider.charged_usage(model, metered, True) == metered
    assert provider.charged_usage(model, None, True) == model  # never cheaper for naming no checked job
    assert provider.charged_usage(model, None, False) is None
    assert get("fake").charged_usage(model, Usage(qpu_seconds=Decimal(0)), True) == model
