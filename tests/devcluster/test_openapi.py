"""kubectl's validation against the dev cluster's OpenAPI, as against a real API server.

A `kind: List` is validated by kubectl itself against OpenAPI v2; a single object is sent with
`fieldValidation=Strict` and validated by the server.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CRDS = Path(__file__).resolve().parents[2] / "crds"


def budget(name: str, namespace: str, **spec: object) -> dict:
    return {"apiVersion": "qgov.dev/v1alpha1", "kind": "QiskitBudget", "metadata": {"name": name,
                                                                                    "namespace": namespace},
            "spec": {"limit": "10.00", "warnAt": [50, 80], **spec}}


def as_list(*items: dict) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(items)})


@pytest.fixture
def qgov_crds(kubectl) -> None:
    kubectl("apply", "-f", str(CRDS / "qiskitbudgets.yaml"))


def test_a_list_of_a_namespace_and_a_budget_applies_with_validation_on(qgov_crds, kubectl) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}
    out = kubectl("apply", "-f", "-", input=as_list(namespace, budget("team-a", "team-a"))).stdout
    assert out.splitlines() == ["namespace/team-a created", "qiskitbudget.qgov.dev/team-a created"]
    assert kubectl("get", "qbudget", "team-a", "-n", "team-a", "-o", "jsonpath={.spec.limit}").stdout == "10.00"


def test_kubectl_refuses_an_unknown_budget_field_in_a_list_naming_it(qgov_crds, kubectl) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}}
    bad = kubectl("apply", "-f", "-", input=as_list(namespace, budget("b", "team-b", warnAtt=[50])), check=False)
    assert bad.returncode != 0
    assert 'ValidationError(QiskitBudget.spec): unknown field "warnAtt" in dev.qgov.v1alpha1.QiskitBudget.spec' \
        in bad.stderr
    assert kubectl("get", "namespace", "team-b", check=False).returncode != 0  # nothing was applied


def test_core_types_in_a_list_are_validated_by_their_top_level_fields(kubectl) -> None:
    items = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "creationTimestamp": None},
         "data": {"a": "1"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque", "stringData": {"a": "1"}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}, "automountServiceAccountToken": False},
        {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}, "reason": "Made", "message": "m",
         "involvedObject": {"kind": "ConfigMap", "name": "c", "namespace": "default"},
         "lastTimestamp": "2026-11-30T11:00:00Z", "count": 2},
    ]
    assert len(kubectl("apply", "-f", "-", input=as_list(*items)).stdout.splitlines()) == 4
    typo = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d"}, "dta": {"a": "1"}}
    bad = kubectl("apply", "-f", "-", input=as_list(typo), check=False)
    assert bad.returncode != 0 and 'unknown field "dta" in io.k8s.api.core.v1.ConfigMap' in bad.stderr


def test_a_single_object_is_validated_by_the_server_strictly_or_with_a_warning(qgov_crds, kubectl) -> None:
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": "team-a"}}))
    typo = json.dumps(budget("b", "team-a", warnAtt=[50]))
    bad = kubectl("apply", "-f", "-", input=typo, check=False)
    assert bad.returncode != 0
    assert 'QiskitBudget in version "v1alpha1" cannot be handled as a QiskitBudget: strict decoding error: ' \
           'unknown field "spec.warnAtt"' in bad.stderr
    warned = kubectl("apply", "--validate=warn", "-f", "-", input=typo)
    assert 'Warning: unknown field "spec.warnAtt"' in warned.stderr
    assert "warnAtt" not in kubectl("get", "qbudget", "b", "-n", "team-a", "-o", "jsonpath={.spec}").stdout


def test_the_python_client_gets_a_warning_and_the_field_is_dropped(core) -> None:
    """No fieldValidation (the kubernetes client's default) is Warn: stored without the field, told why."""
    body = {"metadata": {"name": "c", "lables": {"a": "b"}}, "data": {"a": "1"}, "dta": {"b": "2"}}
    _, status, headers = core.create_namespaced_config_map_with_http_info("default", body)
    assert status == 201
    assert headers.get("Warning") == '299 - "unknown field \\"dta\\"", 299 - "unknown field \\"metadata.lables\\""'
    stored = json.loads(core.read_namespaced_config_map("c", "default", _preload_content=False).data)
    assert "dta" not in stored and "lables" not in stored["metadata"] and stored["data"] == {"a": "1"}


def test_kubectl_explain_reads_the_crd_schema(qgov_crds, kubectl) -> None:
    out = kubectl("explain", "qiskitbudget.spec").stdout
    assert "limit\t<string> -required-" in out and "warnAt\t<[]integer>" in out


def test_kubectl_explain_shows_a_fields_description(kubectl) -> None:
    """`kubectl explain` reads the CRD's schema from the server's OpenAPI: a user asking what
    spec.shots or spec.enforcement means gets the description written in crds/."""
    for name in ("qiskitjobs", "qiskitbudgets"):
        kubectl("apply", "-f", str(CRDS / f"{name}.yaml"))
    shots = " ".join(kubectl("explain", "qiskitjob.spec.shots").stdout.split())  # kubectl wraps lines
    assert "shots per circuit" in shots, shots
    job = " ".join(kubectl("explain", "qiskitjob").stdout.split())
    assert "Quantum work: circuits to run" in job, job
    enforcement = " ".join(kubectl("explain", "qiskitbudget.spec.enforcement").stdout.split())
    assert "queue: it waits as Queued" in enforcement, enforcement
