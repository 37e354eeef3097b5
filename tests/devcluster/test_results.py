"""Results too large for one ConfigMap are compressed, then split; never truncated."""

from __future__ import annotations

import random

from executor.__main__ import CONFIGMAP_LIMIT, configmaps_for, read_result

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
