"""Every form a timestamp reaches the operator in is read as the same instant, and the statuses
the job controller writes are built by the pure core from the job as read."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from governance.handlers.expiry import expires_at
from governance.jobs import Phase
from governance.jobs.status import (LEDGER_UNAVAILABLE, admitted_from_queue, admitted_status, queued_status, reason_of,
                                    terminal_status)
from governance.timestamps import iso, parse_iso, parse_optional

NOON = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text", [
    "2026-12-06T12:00:00Z",  # a watch event
    "2026-12-06T12:00:00+00:00",  # a serialized client object
    "2026-12-06T12:00:00.000000Z",  # fractions, as an executor or a hand-written status may add
    "2026-12-06t12:00:00z",
    "2026-12-06T13:00:00+01:00",  # another offset: the same instant
    "2026-12-06T12:00:00",  # no offset: UTC, as SQLite returns times
    " 2026-12-06T12:00:00Z ",
])
def test_every_form_of_a_timestamp_is_the_same_instant(text: str) -> None:
    moment = parse_iso(text)
    assert moment == NOON and moment.utcoffset() == timedelta(0)


def test_a_client_datetime_passes_through_as_utc() -> None:
    assert parse_iso(NOON.astimezone(timezone(timedelta(hours=-5)))) == NOON
    assert parse_iso(datetime(2026, 12, 6, 12, 0)) == NOON


def test_what_is_written_reads_back() -> None:
    assert iso(NOON) == "2026-12-06T12:00:00Z" and parse_iso(iso(NOON)) == NOON


@pytest.mark.parametrize("text", ["yesterday", "2026-13-06T12:00:00Z", "", "12:00"])
def test_a_bad_timestamp_is_named(text: str) -> None:
    with pytest.raises(ValueError, match="not an RFC 3339 timestamp"):
        parse_iso(text)
    assert parse_optional(text) is None
    assert parse_optional(None) is None


def test_a_finished_job_expires_after_its_ttl_whatever_form_its_completion_time_has() -> None:
    for written in ("2026-12-06T12:00:00Z", "2026-12-06T12:00:00.5Z", "2026-12-06T13:00:00+01:00"):
        job = {"status": {"completionTime": written}, "spec": {"ttlSecondsAfterFinished": 60}}
        assert expires_at(job, None) == pytest.approx(NOON.timestamp() + 60, abs=1)
    assert expires_at({"status": {"completionTime": "garbage"}, "spec": {}}, 60) is None
    assert expires_at({"status": {}, "spec": {}}, 60) is None


def _job(conditions: list[dict[str, str]] | None = None) -> dict[str, object]:
    return {"metadata": {"generation": 3}, "status": {"conditions": conditions or []}}


def test_a_refused_job_ends_failed_and_not_admitted_and_clears_a_ledger_outage() -> None:
    outage = {"type": LEDGER_UNAVAILABLE, "status": "True", "reason": "DatabaseUnavailable", "message": "down",
              "lastTransitionTime": "2026-12-06T11:00:00Z"}
    status = terminal_status(_job([outage]), Phase.REFUSED.value, "OverBudget", "needs 2.00 USD, 1.00 left")
    by_type = {c["type"]: c for c in status["conditions"]}
    assert status["phase"] == "Refused" and status["retryAt"] is None and parse_iso(status["completionTime"])
    assert by_type["Admitted"]["status"] == "False" and by_type["Admitted"]["reason"] == "OverBudget"
    assert by_type["Complete"]["status"] == "False"
    assert by_type[LEDGER_UNAVAILABLE]["status"] == "False"
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])
    assert by_type["Failed"]["status"] == "True"  # a refusal is a failure: `kubectl wait --for=condition=Failed`


def test_a_succeeded_job_is_complete_and_an_admitted_one_starts_its_first_attempt() -> None:
    done = {c["type"]: c["status"] for c in terminal_status(_job(), Phase.SUCCEEDED.value, "Succeeded", "ok")["conditions"]}
    assert done == {"Complete": "True"}
    admitted = admitted_status(_job(), {"estimatedMicro": 300000}, Phase.ADMITTED.value, "Reserved", "0.30 USD")
    assert admitted["attempts"] == 1 and admitted["estimatedMicro"] == 300000
    assert [(c["type"], c["status"]) for c in admitted["conditions"]] == [("Admitted", "True")]


def test_why_a_job_is_where_it_is_reads_the_condition_its_phase_points_at() -> None:
    queued = queued_status(_job(), {"estimatedMicro": 5}, Phase.QUEUED.value, "waits for 2.00 USD")
    assert reason_of(queued) == "Queued" and queued["message"] == "waits for 2.00 USD"
    refused = terminal_status({"metadata": {}, "status": queued}, Phase.REFUSED.value, "OverBudget", "no")
    assert reason_of(refused) == "OverBudget"
    moved_on = admitted_from_queue({"metadata": {}, "status": queued}, "funds were freed")
    assert reason_of({"phase": Phase.ADMITTED.value, **moved_on}) == "AdmittedFromQueue"
    assert reason_of({}) == ""
