"""The manifests users apply: structural CRDs with the issue's printer columns, RBAC that covers
what the operator and executor call, non-root images."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def load(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def structural_problems(schema: dict, path: str = "") -> list[str]:
    """Kubernetes' structural rule: every node says its type (or preserves unknown fields)."""
    problems = []
    if "type" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields") \
            and not schema.get("x-kubernetes-int-or-string"):
        problems.append(path or "<root>")
    for name, sub in (schema.get("properties") or {}).items():
        problems += structural_problems(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        problems += structural_problems(schema["items"], f"{path}[]")
    return problems


@pytest.mark.parametrize("name, short, columns", [
    ("qiskitbackends", "qbackend", ["Provider", "Backend", "Per-QPU-s", "Age"]),
    ("qiskitbudgets", "qbudget", ["Limit", "Spent", "Reserved", "Remaining", "Unit", "Age"]),
    ("qiskitjobs", "qjob", ["Phase", "Backend", "Est", "Cost", "Age"]),
    ("qiskitsessions", "qsession", ["Phase", "Backend", "Mode", "Jobs", "Usage", "Age"]),
])
def test_crds_are_structural_with_printer_columns_and_status(name: str, short: str, columns: list[str]) -> None:
    [crd] = load(ROOT / "crds" / f"{name}.yaml")
    assert crd["metadata"]["name"] == f"{name}.qgov.dev"
    assert short in crd["spec"]["names"]["shortNames"]
    [version] = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == columns
    assert structural_problems(version["schema"]["openAPIV3Schema"]) == []


def test_the_operator_role_covers_the_calls_it_makes() -> None:
    docs = load(ROOT / "operator" / "manifests" / "rbac.yaml")
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}

    def allowed(role: str, group: str, resource: str, verb: str) -> bool:
        return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
                   for r in roles[role]["rules"])

    for group, resource, verb in [("qgov.dev", "qiskitjobs", "list"), ("qgov.dev", "qiskitjobs", "watch"),
                                  ("qgov.dev", "qiskitjobs", "patch"), ("qgov.dev", "qiskitjobs/status", "patch"),
                                  ("qgov.dev", "qiskitbudgets/status", "patch"), ("qgov.dev", "qiskitbackends", "get"),
                                  ("", "pods", "create"), ("", "pods", "watch"), ("", "pods", "deletecollection"),
                                  ("", "events", "create")]:
        assert allowed("qgov-operator", group, resource, verb), (group, resource, verb)
    for group, resource, verb in [("qgov.dev", "qiskitjobs", "get"), ("qgov.dev", "qiskitbackends", "get"),
                                  ("", "configmaps", "create"), ("", "configmaps", "update")]:
        assert allowed("qgov-executor", group, resource, verb), (group, resource, verb)


def test_kustomization_lists_files_that_exist_and_images_run_as_non_root() -> None:
    [kustomization] = load(ROOT / "operator" / "manifests" / "kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (ROOT / "operator" / "manifests" / resource).resolve().exists(), resource
    for dockerfile in (ROOT / "executor" / "Dockerfile", ROOT / "operator" / "Dockerfile"):
        lines = dockerfile.read_text().splitlines()
        assert any(line.startswith("USER 10001") for line in lines), dockerfile
    [deployment] = load(ROOT / "operator" / "manifests" / "deployment.yaml")
    env = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert {"QGOV_DATABASE_URL", "QGOV_EXECUTOR_IMAGE"} <= env
