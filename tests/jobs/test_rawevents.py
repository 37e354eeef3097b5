"""QiskitJob events bypass kopf's per-event processing (governance/handlers/rawevents.py): the
fast path installs on the kopf qgov runs with, and the kind has no other kopf handler that the
bypass would silently skip. Finished jobs from the initial listing are held slimmed while the
listing lasts, with what their handler reads."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import kopf
from kopf._cogs.structs.references import Resource

from governance.api import FINALIZER, GROUP, VERSION
from governance.handlers import jobs, jobwatch, rawevents
from governance.handlers.expiry import expires_at


def test_the_fast_path_installs_on_this_kopf() -> None:
    assert rawevents.install()
    assert rawevents.install()  # a second install keeps the one there


def test_qiskitjobs_have_no_kopf_handler_but_the_routed_one() -> None:
    resource = Resource(GROUP, VERSION, jobwatch.PLURAL, kind="QiskitJob", namespaced=True)
    registry = kopf.get_default_registry()
    handlers = [handler for part in (registry._watching, registry._changing, registry._spawning, registry._indexing)
                for handler in part.get_all_handlers() if handler.selector is not None
                and handler.selector.check(resource)]
    assert [h.fn for h in handlers] == [jobwatch.on_job_event]
    assert rawevents._handlers[(GROUP, jobwatch.PLURAL)] is jobwatch.on_job_event


def _finished(**status) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "QiskitJob",
            "metadata": {"name": "done-1", "namespace": "team-a", "uid": "u-1", "resourceVersion": "7",
                         "labels": {"a": "b"}, "annotations": {"x": "y" * 1000}, "managedFields": [{"m": 1}]},
            "spec": {"backend": "aer", "circuits": ["OPENQASM 3.0; qubit q;"] * 10, "shots": 100,
                     "ttlSecondsAfterFinished": 60},
            "status": {"phase": "Succeeded", "budget": "team-a", "completionTime": "2026-11-01T00:00:00Z",
                       "message": "succeeded on attempt 1", "conditions": [{"type": "Complete"}], **status}}


def test_a_listed_finished_job_keeps_what_its_handler_reads_and_no_more() -> None:
    job = _finished()
    slim = jobwatch.listed_job(job)
    assert slim == {"metadata": {"name": "done-1", "namespace": "team-a", "uid": "u-1", "resourceVersion": "7"},
                    "status": {"phase": "Succeeded", "budget": "team-a", "completionTime": "2026-11-01T00:00:00Z"},
                    "spec": {"ttlSecondsAfterFinished": 60}}
    # what the event handler decides from it is what it decides from the whole job
    assert jobs.job_has_work(None, slim) is jobs.job_has_work(None, job) is False
    assert expires_at(slim, None) == expires_at(job, None)
    assert expires_at(slim, 5) == expires_at(job, 5)
    # the strings every finished job repeats are one object each, not one copy per job
    other = jobwatch.listed_job(_finished())
    assert other["metadata"]["namespace"] is slim["metadata"]["namespace"]
    assert other["status"]["budget"] is slim["status"]["budget"]


def test_a_listed_job_with_work_is_kept_whole() -> None:
    running = _finished(phase="Admitted")
    assert jobwatch.listed_job(running) is running
    deleting = _finished()
    deleting["metadata"] |= {"deletionTimestamp": "2026-11-02T00:00:00Z", "finalizers": [FINALIZER]}
    assert jobwatch.listed_job(deleting) is deleting  # its finalizer still settles the money


def test_the_fast_path_lets_go_of_a_listed_body_before_its_handler_waits() -> None:
    from kopf._core.reactor import processing

    seen: list[tuple[str | None, dict]] = []

    async def handler(type: str | None, body: dict, memo: object = None) -> None:  # memo: the operator's
        seen.append((type, body))

    kind = ("test.qgov.dev", "things")
    rawevents.route(*kind, handler, listed=lambda body: {"metadata": body["metadata"]})
    try:
        assert rawevents.install()
        resource = SimpleNamespace(group=kind[0], plural=kind[1])
        body = {"metadata": {"uid": "u"}, "spec": {"big": "x" * 10_000}}

        async def events() -> tuple[dict, dict]:
            listed, added = {"type": None, "object": body}, {"type": "ADDED", "object": dict(body)}
            for event in (listed, added):
                await processing.process_resource_event(resource=resource, raw_event=event,
                                                        event_queue=asyncio.Queue())
            return listed, added

        listed, added = asyncio.run(events())
        assert listed["object"] == {"metadata": {"uid": "u"}}  # kopf's worker holds the event: slimmed in place
        assert seen == [(None, {"metadata": {"uid": "u"}}), ("ADDED", body)]  # a watch event stays whole
        assert added["object"] == body
    finally:
        rawevents._handlers.pop(kind)
        rawevents._listed.pop(kind)
