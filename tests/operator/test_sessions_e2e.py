"""IBM Runtime sessions end to end: dev cluster, `qgov operator`, executor pods running the real
qiskit-ibm-runtime client, and a local server speaking IBM Cloud's protocol."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from qgov_dev.testing.ibm_cloud import CRN, LocalIbmCloud

from .conftest import NS, Env

API_KEY = "local-api-key-0123456789abcdef"
FAST = dict(QGOV_SESSION_INTERVAL_SECONDS="1", QGOV_BATCH_WINDOW_SECONDS="10", QGOV_BATCH_IDLE_SECONDS="3")


def local_ibm(**options) -> Iterator[LocalIbmCloud]:
    """The local IBM Cloud with this team's API key, for a fixture to yield from."""
    with LocalIbmCloud(keys={API_KEY: "team-a-account"}, **options) as cloud:
        yield cloud


@pytest.fixture
def ibm() -> Iterator[LocalIbmCloud]:
    yield from local_ibm()


def ibm_endpoints(ibm: LocalIbmCloud) -> dict[str, str]:
    """The local IBM Cloud as a QiskitBackend's spec.ibm: the platform names the endpoints, not the team."""
    return {"url": ibm.url, "iamUrl": ibm.url, "searchUrl": ibm.url, "catalogUrl": f"{ibm.url}/catalog"}


def ibm_setup(env: Env, ibm: LocalIbmCloud, secret: str = "ibm-quantum", key: str = API_KEY) -> None:
    values = {"apiKey": key, "instance": CRN}  # all a team's credential Secret holds
    env.core.create_namespaced_secret(NS, {"metadata": {"name": secret}, "data": {
        k: base64.b64encode(v.encode()).decode() for k, v in values.items()}})
    env.backend("ibm-local", provider="ibm", device="ibm_local", model="fake_manila", pricing={"perQPUSecond": "1.60"},
                ibm=ibm_endpoints(ibm))


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
    assert len(ibm.sessions) == 1
    assert {s["session"] for s in statuses.values()} == {sessions(env)[0]["metadata"]["name"]}
    (runtime_session,) = ibm.sessions.values()
    assert runtime_session.mode == "batch" and len(runtime_session.jobs) == 20
    for status in statuses.values():  # IBM metered 1 quantum second per job: 1.60 USD, charged once
        assert status["qpuSeconds"] == "1" and status["actualCost"] == "1.60" and status["attempts"] == 1
        assert ibm.jobs[status["runtimeJob"]].session_id == runtime_session.id  # which IBM job it was
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


def session_obj(env: Env, name: str) -> dict:
    return env.get("qiskitsessions", name)


def create_session(env: Env, name: str, **spec) -> None:
    env.custom.create_namespaced_custom_object("qgov.dev", "v1alpha1", NS, "qiskitsessions", {
        "apiVersion": "qgov.dev/v1alpha1", "kind": "QiskitSession", "metadata": {"name": name},
        "spec": {"backend": "ibm-local", "credentialsSecret": "ibm-quantum", **spec}})


def session_phase(env: Env, name: str, phase: str) -> dict:
    return env.wait(lambda: (lambda s: s if s.get("status", {}).get("phase") == phase else None)(
        session_obj(env, name)), f"session {name} {phase}", timeout=120)


def open_session(env: Env, ibm: LocalIbmCloud, budget: str, name: str, **spec: Any) -> dict:
    """The IBM credentials, a budget, and a QiskitSession on the local IBM server, once it is Open."""
    ibm_setup(env, ibm)
    env.budget(budget)
    create_session(env, name, **spec)
    return session_phase(env, name, "Open")


@pytest.mark.operator_env(**FAST)
def test_a_dedicated_session_reserves_max_time_charges_its_wall_time_and_closing_when_idle_saves_the_rest(
        env: Env, ibm: LocalIbmCloud) -> None:
    # idle for 10 s: a shorter idleTimeout closed the session before a loaded machine admitted the job
    open_session(env, ibm, "200.00", "focus", mode="dedicated", maxTime=100, idleTimeout=10)
    ledger = env.ledger()
    assert ledger.balance(NS, NS).held_micro == 160_000_000  # maxTime 100 s x 1.60 USD, held while open
    env.job("inside", backend="ibm-local", session="focus", shots=1000)
    job = env.wait_terminal(["inside"])["inside"]
    assert job["phase"] == "Succeeded" and job["actualCost"] == "0.00"  # the session pays, not its jobs
    closed = session_phase(env, "focus", "Closed")["status"]
    wall = closed["wallSeconds"]
    assert 10 <= wall < 100 and "not billed" in closed["message"]
    balance = ledger.balance(NS, NS)
    assert balance.held_micro == 0 and balance.spent_micro == wall * 1_600_000  # wall-clock time, idle included
    assert list(ibm.sessions.values())[0].mode == "dedicated" and list(ibm.sessions.values())[0].state == "closed"
    assert ledger.verify() == []
    ledger.close()


@pytest.mark.operator_env(**FAST)
def test_a_dedicated_session_the_budget_cannot_pay_for_never_opens(env: Env, ibm: LocalIbmCloud) -> None:
    ibm_setup(env, ibm)
    env.budget("10.00")
    create_session(env, "too-long", mode="dedicated", maxTime=3600)
    status = session_phase(env, "too-long", "Failed")["status"]
    assert "maxTime 3600s costs up to 5760.00 USD" in status["message"] and "mode: batch" in status["message"]
    assert ibm.sessions == {} and ibm.calls["POST /sessions"] == 0
    ledger = env.ledger()
    assert ledger.balance(NS, NS).held_micro == 0 and ledger.balance(NS, NS).spent_micro == 0
    ledger.close()


@pytest.fixture
def short_tokens() -> Iterator[LocalIbmCloud]:
    # tokens live 10 s and each job takes 12 s on the server: every job outlives the token it started with
    yield from local_ibm(lifetime=10, job_seconds=12)


@pytest.mark.operator_env(**FAST)
def test_a_token_that_expires_mid_session_is_refreshed_and_no_job_fails(env: Env, short_tokens: LocalIbmCloud) -> None:
    ibm = short_tokens
    ibm_setup(env, ibm)
    env.budget("100.00")
    env.job("long-1", backend="ibm-local", shots=1000)
    env.job("long-2", backend="ibm-local", shots=1000)
    statuses = env.wait_terminal(["long-1", "long-2"])
    assert [s["phase"] for s in statuses.values()] == ["Succeeded", "Succeeded"], statuses
    assert ibm.exchanges[API_KEY] >= 3  # the operator refreshed the token, more than once
    assert ibm.rejected_tokens == 0  # and no call went out with an expired one
    secret = env.core.read_namespaced_secret(f"{statuses['long-1']['session']}-token", NS)
    mounted = base64.b64decode(secret.data["token"]).decode()
    assert mounted in ibm.issued and mounted != ibm.issued[0]  # the pods' Secret was rotated
    scan_for_secrets(env, ibm)


@pytest.fixture
def slow_ibm() -> Iterator[LocalIbmCloud]:
    # one job at a time, 14 s each: the second job still waits when a 12 s session reaches maxTime
    yield from local_ibm(job_seconds=14, workers=1)


@pytest.mark.operator_env(**FAST)
def test_max_time_reached_with_a_job_waiting_in_a_named_session_fails_it_clearly_and_charges_what_ran(
        env: Env, slow_ibm: LocalIbmCloud) -> None:
    ibm = slow_ibm
    open_session(env, ibm, "100.00", "short", mode="batch", maxTime=12, idleTimeout=60)
    env.job("first", backend="ibm-local", session="short", shots=1000)
    env.job("second", backend="ibm-local", session="short", shots=1000)
    draining = session_phase(env, "short", "Draining")["status"]  # past maxTime, the running job finishes
    assert "maxTime of 12s" in draining["message"] and "running jobs finish" in draining["message"]
    statuses = env.wait_terminal(["first", "second"], timeout=120)
    failed = [s for s in statuses.values() if s["phase"] == "Failed"]
    assert failed, statuses
    for status in failed:
        assert "short" in status["message"] and ("maxTime" in status["message"] or "maximum time" in status["message"])
    expired = session_phase(env, "short", "Expired")["status"]
    assert "maxTime of 12s" in expired["message"]
    ledger = env.ledger()
    charged = sum(int(s.get("usedMicro") or 0) for s in statuses.values())
    assert ledger.balance(NS, NS).spent_micro == charged and ledger.balance(NS, NS).held_micro == 0
    assert ledger.verify() == []
    ledger.close()


@pytest.mark.operator_env(**FAST, QGOV_BATCH_MAX_TIME_SECONDS="12")
def test_max_time_reached_with_a_job_waiting_in_an_automatic_batch_requeues_it_into_a_new_batch(
        env: Env, slow_ibm: LocalIbmCloud) -> None:
    ibm = slow_ibm
    ibm_setup(env, ibm)
    env.budget("100.00")
    env.job("first", backend="ibm-local", shots=1000)
    env.job("second", backend="ibm-local", shots=1000)
    statuses = env.wait_terminal(["first", "second"], timeout=180)
    assert [s["phase"] for s in statuses.values()] == ["Succeeded", "Succeeded"], statuses
    assert len(ibm.sessions) >= 2 and any(int(s.get("sessionMoves") or 0) >= 1 for s in statuses.values())
    events = env.core.list_namespaced_event(NS).items
    assert any(e.reason == "SessionRequeued" and "re-queued into a new session" in e.message for e in events)


@pytest.fixture
def limited_ibm() -> Iterator[LocalIbmCloud]:
    yield from local_ibm(instance_limit_seconds=0)  # the plan's time is used up


@pytest.mark.operator_env(**FAST, QGOV_INSTANCE_RETRY_SECONDS="2")
def test_an_instance_at_its_usage_limit_gets_nothing_submitted_until_time_is_available(
        env: Env, limited_ibm: LocalIbmCloud) -> None:
    ibm = limited_ibm
    ibm_setup(env, ibm)
    env.budget("100.00")
    env.job("patient", backend="ibm-local", shots=1000)
    job = env.wait(lambda: (lambda s: s if "waiting for QiskitSession" in s.get("message", "") else None)(
        env.status("patient")), "the job to wait for its session")
    session = session_phase(env, job["session"], "Pending")
    assert "usage limit" in session["status"]["message"] and "nothing was submitted" in session["status"]["message"]
    assert ibm.calls["POST /sessions"] == 0 and ibm.calls["POST /jobs"] == 0
    ibm.instance.limit_seconds = 600  # the plan's time is raised
    status = env.wait_terminal(["patient"])["patient"]
    assert status["phase"] == "Succeeded" and ibm.calls["POST /jobs"] == 1


@pytest.mark.operator_env(**FAST)
def test_a_wrong_api_key_fails_the_session_and_its_jobs_with_the_reason_and_charges_nothing(
        env: Env, ibm: LocalIbmCloud) -> None:
    ibm_setup(env, ibm, key="revoked-key-not-known-to-iam")
    env.budget("100.00")
    env.job("locked-out", backend="ibm-local", shots=1000)
    status = env.wait_terminal(["locked-out"])["locked-out"]
    assert status["phase"] == "Failed" and "IAM refused the API key" in status["message"], status
    session = session_obj(env, status["session"])["status"]
    assert session["phase"] == "Failed" and session["conditions"][0]["reason"] == "CredentialsRefused"
    assert "revoked-key" not in json_dump(session) and "revoked-key" not in status["message"]
    assert ibm.sessions == {} and ibm.jobs == {}
    ledger = env.ledger()
    assert ledger.balance(NS, NS).spent_micro == 0 and ledger.balance(NS, NS).held_micro == 0
    ledger.close()


def json_dump(obj) -> str:
    import json

    return json.dumps(obj)


@pytest.fixture
def busy_ibm() -> Iterator[LocalIbmCloud]:
    yield from local_ibm(job_seconds=30)  # a Runtime job that is still running when the test acts


@pytest.mark.operator_env(**FAST)
def test_deleting_a_session_cancels_its_running_jobs(env: Env, busy_ibm: LocalIbmCloud) -> None:
    ibm = busy_ibm
    open_session(env, ibm, "100.00", "doomed", mode="batch")
    env.job("cut-short", backend="ibm-local", session="doomed", shots=1000)
    env.wait(lambda: any(j.status == "Running" for j in ibm.jobs.values()), "the Runtime job to run")
    env.custom.delete_namespaced_custom_object("qgov.dev", "v1alpha1", NS, "qiskitsessions", "doomed")
    status = env.wait_terminal(["cut-short"], timeout=60)["cut-short"]
    assert status["phase"] == "Failed" and "cancelled" in status["message"], status
    (runtime_session,) = ibm.sessions.values()
    assert runtime_session.state == "closed" and [j.status for j in ibm.jobs.values()] == ["Cancelled"]
    env.wait(lambda: not any(s["metadata"]["name"] == "doomed" for s in sessions(env)), "the session to go")
    events = env.core.list_namespaced_event(NS).items
    assert any(e.reason == "SessionCancelled" for e in events)
    ledger = env.ledger()
    assert ledger.balance(NS, NS).held_micro == 0 and ledger.verify() == []
    ledger.close()


@pytest.mark.operator_env(**FAST)
def test_deleting_a_running_ibm_job_cancels_its_runtime_job_and_frees_its_reservation(
        env: Env, busy_ibm: LocalIbmCloud) -> None:
    ibm = busy_ibm
    ibm_setup(env, ibm)
    env.budget("100.00")
    env.job("abandoned", backend="ibm-local", shots=1000)
    env.wait(lambda: any(j.status == "Running" for j in ibm.jobs.values()), "the Runtime job to run")
    env.custom.delete_namespaced_custom_object("qgov.dev", "v1alpha1", NS, "qiskitjobs", "abandoned")
    env.wait(lambda: [j.status for j in ibm.jobs.values()] == ["Cancelled"] or None,
             "the Runtime job to be cancelled (IBM's meter stops)", timeout=30)
    env.wait(lambda: not env.jobs() or None, "the QiskitJob to go")
    ledger = env.ledger()
    assert ledger.balance(NS, NS).held_micro == 0 and ledger.balance(NS, NS).spent_micro == 0
    assert ledger.verify() == []
    ledger.close()


@pytest.mark.operator_env(**FAST)
def test_an_operator_killed_with_a_dedicated_session_open_picks_it_up_without_a_second_session_or_charge(
        env: Env, ibm: LocalIbmCloud) -> None:
    open_session(env, ibm, "500.00", "kept", mode="dedicated", maxTime=200, idleTimeout=4)
    env.job("before", backend="ibm-local", session="kept", shots=1000)
    env.wait(lambda: ibm.jobs or None, "a Runtime job")
    env.operator.kill()  # SIGKILL: no clean-up
    env.job("while-down", backend="ibm-local", session="kept", shots=1000)
    env.operator.start()
    statuses = env.wait_terminal(["before", "while-down"])
    assert [s["phase"] for s in statuses.values()] == ["Succeeded", "Succeeded"], statuses
    closed = session_phase(env, "kept", "Closed")["status"]
    assert len(ibm.sessions) == 1 and len(ibm.jobs) == 2  # the restart opened nothing twice, ran nothing twice
    ledger = env.ledger()
    assert ledger.balance(NS, NS).spent_micro == closed["wallSeconds"] * 1_600_000  # the session's time, once
    assert ledger.balance(NS, NS).held_micro == 0 and ledger.verify() == []
    ledger.close()
    scan_for_secrets(env, ibm)


class Collector:
    """An HTTP server on loopback that records whatever is sent to it (where a tenant's Secret
    would have had the operator send the API key)."""

    def __init__(self) -> None:
        import http.server
        import threading

        received: list[bytes] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                received.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self.send_response(500)
                self.end_headers()

            do_GET = do_PATCH = do_POST  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.received = received
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.operator_env(**FAST)
def test_a_credential_secret_naming_its_own_ibm_endpoints_is_refused_and_nothing_is_sent_there(
        env: Env, ibm: LocalIbmCloud) -> None:
    collector = Collector()
    try:
        ibm_setup(env, ibm)
        # a team member (edit in the namespace) points its Secret's iamUrl and url at its own server
        env.core.patch_namespaced_secret("ibm-quantum", NS, {"data": {
            "iamUrl": base64.b64encode(collector.url.encode()).decode(),
            "url": base64.b64encode(collector.url.encode()).decode()}})
        env.budget("100.00")
        create_session(env, "redirected")
        session = session_phase(env, "redirected", "Failed")["status"]
        ready = session["conditions"][0]
        assert ready["reason"] == "EndpointNotAllowed", session
        assert session["message"].startswith("Secret ibm-quantum names url, iamUrl: IBM endpoints come from the "
                                              "QiskitBackend (spec.ibm)")
        assert collector.url not in json_dump(session)
        assert collector.received == []  # the API key went nowhere
        assert ibm.sessions == {} and ibm.calls == {}  # and nothing was opened at IBM either
    finally:
        collector.close()


@pytest.mark.operator_env(**FAST)
def test_a_token_secret_name_taken_by_someone_else_is_never_written_over(env: Env, ibm: LocalIbmCloud) -> None:
    ibm_setup(env, ibm)
    env.budget("100.00")
    # a team member made `<session>-token` first: the operator must not adopt or replace it
    env.core.create_namespaced_secret(NS, {"metadata": {"name": "squatted-token"},
                                           "stringData": {"token": "the member's own"}})
    create_session(env, "squatted")
    session = session_phase(env, "squatted", "Failed")["status"]
    assert session["conditions"][0]["reason"] == "TokenSecretTaken", session
    assert session["message"] == (f"Secret {NS}/squatted-token exists and was not made by qgov for this session: "
                                  "the session's token is never written over it; delete or rename that Secret")
    mine = env.core.read_namespaced_secret("squatted-token", NS)
    assert base64.b64decode(mine.data["token"]) == b"the member's own" and not mine.metadata.owner_references
    assert ibm.sessions == {}  # nothing opened at IBM for a session that could not hand its pods a token
    reasons = {e.reason for e in env.core.list_namespaced_event(NS).items
               if e.involved_object.name == "squatted"}
    assert "TokenSecretTaken" in reasons
    ledger = env.ledger()
    assert ledger.balance(NS, NS).held_micro == 0
    ledger.close()


@pytest.mark.operator_env(**FAST)
def test_a_token_secret_replaced_mid_session_is_not_written_over_and_the_session_says_so(
        env: Env, short_tokens: LocalIbmCloud) -> None:
    ibm = short_tokens  # tokens live 10 s: the operator rotates the Secret every few seconds
    open_session(env, ibm, "500.00", "rotating", mode="batch", maxTime=300, idleTimeout=120)
    # a team member deletes the operator's Secret and puts its own under the name
    env.core.delete_namespaced_secret("rotating-token", NS)
    env.core.create_namespaced_secret(NS, {"metadata": {"name": "rotating-token"},
                                           "stringData": {"token": "the member's own"}})

    def ready(reason: str) -> dict | None:
        status = session_obj(env, "rotating").get("status") or {}
        found = [c for c in status.get("conditions") or () if c["type"] == "Ready" and c["reason"] == reason]
        return status if found else None

    stalled = env.wait(lambda: ready("TokenSecretTaken"), "the session to say its token Secret is taken", timeout=60)
    assert stalled["phase"] == "Open" and stalled["message"].startswith(f"Secret {NS}/rotating-token exists and "
                                                                        "was not made by qgov for this session")
    rotations = ibm.exchanges[API_KEY]
    env.wait(lambda: ibm.exchanges[API_KEY] > rotations + 1 or None, "more token rotations", timeout=60)
    mine = env.core.read_namespaced_secret("rotating-token", NS)
    assert base64.b64decode(mine.data["token"]) == b"the member's own" and not mine.metadata.owner_references
    # the name free again: the token goes back in, and the session is Ready
    env.core.delete_namespaced_secret("rotating-token", NS)
    env.wait(lambda: ready("SessionOpen"), "the session Ready again", timeout=60)
    restored = env.core.read_namespaced_secret("rotating-token", NS)
    assert base64.b64decode(restored.data["token"]).decode() in ibm.issued
    assert [r.uid for r in restored.metadata.owner_references] == [session_obj(env, "rotating")["metadata"]["uid"]]
    events = [e for e in env.core.list_namespaced_event(NS).items if e.involved_object.name == "rotating"]
    assert sum(e.count or 1 for e in events if e.reason == "TokenSecretTaken") == 1  # said once, not per tick
    assert any(e.reason == "TokenSecretRestored" for e in events)
