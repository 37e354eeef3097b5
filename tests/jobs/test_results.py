"""Whether an attempt wrote the job's result: the trusted sign that a failed attempt's work ran."""

from __future__ import annotations

from governance.jobs.results import ATTEMPT_ANNOTATION, result_names, written_by

UID = "5b0e-job"


def meta(name: str, *, uid: str = UID, labelled: bool = True, attempt: str | None = None) -> dict:
    return {"name": name, "ownerReferences": [{"uid": uid, "kind": "QiskitJob", "name": "bell"}],
            "labels": {"qgov.dev/job": "bell"} if labelled else {},
            "annotations": {ATTEMPT_ANNOTATION: attempt} if attempt else {}}


def test_the_first_name_counts_for_the_attempt_that_wrote_it_only() -> None:
    assert result_names("bell", 2) == ("bell-result", "bell-result-attempt-2")
    assert written_by(meta("bell-result", attempt="1"), UID, 1)
    assert not written_by(meta("bell-result", attempt="1"), UID, 2)  # attempt 1's result is not attempt 2's work
    assert written_by(meta("bell-result-attempt-2"), UID, 2)
    assert not written_by(meta("bell-result-attempt-2"), UID, 3)


def test_a_result_not_owned_by_the_job_or_not_marked_as_qgovs_does_not_count() -> None:
    assert not written_by(meta("bell-result", uid="an-older-bell", attempt="1"), UID, 1)  # a job of the same name
    assert not written_by(meta("bell-result", labelled=False, attempt="1"), UID, 1)  # anyone may make unlabelled ones
