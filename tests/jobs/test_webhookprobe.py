"""The webhook probe (governance/jobs/webhookprobe.py): what the API server's answer to the dry-run
probe means, when "not called" is believed, which jobs get the WebhookNotCalled warning, and the
webhook's answer to a probe over HTTP. Through the real API server: test_webhook_upstream.py."""

from __future__ import annotations

import asyncio
import concurrent.futures
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from governance.jobs.webhookprobe import (ProbeState, is_probe, not_called_message, probe_job, probe_refusal,
                                          read_answer)
from governance.webhook.server import make_app

T0 = datetime(2026, 12, 5, 9, 0, 0, 400_000, tzinfo=timezone.utc)
DENIED = 'admission webhook "validate.qgov.dev" denied the request: '


def review_request(obj: dict[str, Any], *, dry_run: bool = True, operation: str = "CREATE") -> dict[str, Any]:
    return {"uid": "u-1", "kind": {"group": "qgov.dev", "version": "v1alpha1", "kind": obj["kind"]},
            "operation": operation, "dryRun": dry_run, "namespace": obj["metadata"]["namespace"],
            "name": obj["metadata"]["name"], "object": obj}


def test_only_a_dry_run_create_of_a_marked_job_is_a_probe() -> None:
    probe = probe_job("qgov-system", "abc123")
    assert is_probe(review_request(probe)) == "abc123"
    assert is_probe(review_request(probe, dry_run=False)) is None  # meant to be stored: reviewed as any job
    assert is_probe(review_request(probe, operation="UPDATE")) is None
    unmarked = {**probe, "metadata": {"name": "j", "namespace": "team-a"}}
    assert is_probe(review_request(unmarked)) is None


def test_the_answer_says_called_only_when_the_refusal_carries_this_probes_nonce() -> None:
    assert read_answer("n1", False, 403, DENIED + probe_refusal("n1"))[0] == "called"
    # another replica's probe, or any other refusal: nothing learnt about this request
    answer, why = read_answer("n1", False, 403, DENIED + probe_refusal("n2"))
    assert answer == "unknown" and "403" in why
    answer, why = read_answer("n1", True)
    assert answer == "not-called" and "without calling qgov's admission webhook" in why
    answer, why = read_answer("n1", False, 500, 'Internal error occurred: failed calling webhook '
                                                '"validate.qgov.dev": context deadline exceeded')
    assert answer == "not-called" and "context deadline exceeded" in why
    answer, why = read_answer("n1", False, 403, 'qiskitjobs.qgov.dev is forbidden: User "x" cannot create')
    assert answer == "unknown" and "forbidden" in why


def test_not_called_is_believed_on_the_second_answer_and_dated_from_the_first() -> None:
    state = ProbeState()
    assert state.record("called", "ok", T0) and state.reachable is True
    assert not state.record("not-called", "admitted", T0 + timedelta(seconds=60))
    assert state.reachable is True  # one answer may race the API server's reload of the caBundle
    assert state.record("not-called", "admitted", T0 + timedelta(seconds=120))
    assert state.reachable is False
    assert state.unreachable_since == datetime(2026, 12, 5, 9, 1, 0, tzinfo=timezone.utc)  # a creationTimestamp's grain
    assert not state.record("unknown", "the API server is down", T0 + timedelta(seconds=180))
    assert state.reachable is False  # an answer that says nothing changes nothing
    assert state.record("called", "ok", T0 + timedelta(seconds=240)) and state.reachable is True
    assert state.unreachable_since is None
    # a lone miss after that is not believed either
    state.record("not-called", "admitted", T0 + timedelta(seconds=300))
    state.record("called", "ok", T0 + timedelta(seconds=360))
    state.record("not-called", "admitted", T0 + timedelta(seconds=420))
    assert state.reachable is True


def test_a_job_created_while_not_called_is_warned_once_and_older_ones_never() -> None:
    state = ProbeState()
    at = T0.replace(microsecond=0)
    assert not state.warn_once("before-any-answer", at)
    state.record("not-called", "admitted", at)
    state.record("not-called", "admitted", at + timedelta(seconds=60))
    assert not state.warn_once("older", at - timedelta(seconds=1))
    assert state.warn_once("same-second", at)
    assert state.warn_once("later", at + timedelta(seconds=90))
    assert not state.warn_once("later", at + timedelta(seconds=90))  # a repeated watch event
    assert not state.warn_once("no-timestamp", None)
    state.record("called", "ok", at + timedelta(seconds=120))
    assert not state.warn_once("after-recovery", at + timedelta(seconds=150))
    assert "does not call qgov's webhook (admitted)" in not_called_message("admitted")


def test_the_webhook_refuses_a_probe_with_its_nonce_and_counts_no_review() -> None:
    """Over HTTP: the probe is answered at once (no pricing, no sources asked) and is not counted as a
    review, so the alerts that read reviews as traffic see none."""

    class NoSources:  # a probe must never reach the review
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the probe asked the sources for {name}")

    def reviews() -> float:
        return sum(s.value for m in REGISTRY.collect() if m.name == "qgov_webhook_reviews"
                   for s in m.samples if s.name == "qgov_webhook_reviews_total")

    before = reviews()
    pool = concurrent.futures.ThreadPoolExecutor(1)
    sent = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": review_request(probe_job("qgov-system", "f00d"))}

    async def scenario() -> tuple[int, dict[str, Any]]:
        async with TestClient(TestServer(make_app(NoSources(), pool))) as client:
            reply = await client.post("/validate", json=sent)
            return reply.status, await reply.json()

    try:
        status, body = asyncio.run(scenario())
    finally:
        pool.shutdown()
    assert status == 200
    assert body["response"] == {"uid": "u-1", "allowed": False, "status": {
        "code": 403, "reason": "Forbidden", "message": probe_refusal("f00d")}}
    assert reviews() == before
