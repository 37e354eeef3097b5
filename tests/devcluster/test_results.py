"""Results too large for one ConfigMap are compressed, then split; never truncated."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from executor.attempt import CONFIGMAP_LIMIT, DeterministicError, configmaps_for, read_result, write_result

NS = "default"


def store(core, name: str, document: dict) -> list[str]:
    names = []
    for cm_name, body in configmaps_for(name, document):
        body.setdefault("metadata", {})["name"] = cm_name
        core.create_namespaced_config_map(NS, body)
        names.append(cm_name)
    return names


def test_small_results_are_plain_json(core) -> None:
    doc = {"circuits": [{"counts": {"00": 510, "11": 490}}]}
    assert store(core, "small-result", doc) == ["small-result"]
    assert core.read_namespaced_config_map("small-result", NS).data["result.json"].startswith('{"circuits"')
    assert read_result(core, NS, "small-result") == doc


def test_large_results_are_compressed_and_split_and_read_back_whole(core) -> None:
    rng = random.Random(7)
    # 40-qubit-wide random bitstrings compress poorly: a few MB even after gzip
    counts = {format(rng.getrandbits(40), "040b"): rng.randint(1, 9) for _ in range(150_000)}
    doc = {"circuits": [{"counts": counts}]}
    names = store(core, "big-result", doc)
    assert len(names) > 1  # split across ConfigMaps
    for name in names:
        cm = core.read_namespaced_config_map(name, NS)
        assert len(cm.binary_data["result.json.gz.part"]) <= CONFIGMAP_LIMIT
    assert read_result(core, NS, "big-result") == doc


def job(name: str, uid: str) -> dict:
    return {"apiVersion": "qgov.dev/v1alpha1", "kind": "QiskitJob",
            "metadata": {"name": name, "namespace": NS, "uid": uid}}


def test_a_result_is_created_never_written_over_and_a_taken_name_is_refused(core) -> None:
    client = SimpleNamespace(CoreV1Api=lambda: core)
    first, second = {"circuits": [{"counts": {"00": 1}}]}, {"circuits": [{"counts": {"11": 1}}]}
    assert write_result(client, job("bell", "uid-bell"), first, attempt=1) == "bell-result"
    # a later attempt of the same job (the first died before reporting): a name of its own
    assert write_result(client, job("bell", "uid-bell"), second, attempt=2) == "bell-result-attempt-2"
    assert read_result(core, NS, "bell-result") == first and read_result(core, NS, "bell-result-attempt-2") == second
    # a ConfigMap someone else made under the name the job would use is never overwritten or adopted
    core.create_namespaced_config_map(NS, {"metadata": {"name": "squat-result"}, "data": {"mine": "yes"}})
    with pytest.raises(DeterministicError, match="ConfigMap default/squat-result exists and is not this job's"):
        write_result(client, job("squat", "uid-squat"), first, attempt=1)
    assert core.read_namespaced_config_map("squat-result", NS).data == {"mine": "yes"}
    # nor is one that names another job (a job deleted and created again under the same name)
    with pytest.raises(DeterministicError, match="bell-result exists and is not this job's"):
        write_result(client, job("bell", "uid-another-bell"), first, attempt=1)
