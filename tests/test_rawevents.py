"""QiskitJob events bypass kopf's per-event processing (governance/handlers/rawevents.py): the
fast path installs on the kopf qgov runs with, and the kind has no other kopf handler that the
bypass would silently skip."""

from __future__ import annotations

import kopf
from kopf._cogs.structs.references import Resource

from governance.api import GROUP, VERSION
from governance.handlers import jobs, rawevents


def test_the_fast_path_installs_on_this_kopf() -> None:
    assert rawevents.install()
    assert rawevents.install()  # a second install keeps the one there


def test_qiskitjobs_have_no_kopf_handler_but_the_routed_one() -> None:
    resource = Resource(GROUP, VERSION, jobs.PLURAL, kind="QiskitJob", namespaced=True)
    registry = kopf.get_default_registry()
    handlers = [handler for part in (registry._watching, registry._changing, registry._spawning, registry._indexing)
                for handler in part.get_all_handlers() if handler.selector is not None
                and handler.selector.check(resource)]
    assert [h.fn for h in handlers] == [jobs.on_job_event]
    assert rawevents._handlers[(GROUP, jobs.PLURAL)] is jobs.on_job_event
