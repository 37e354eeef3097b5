"""The manifests users apply: structural CRDs with the issue's printer columns, RBAC that covers
what the operator and executor call, non-root images."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


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


def undescribed(schema: dict, path: str) -> list[str]:
    """Every property, at any depth (within objects and array items), whose schema has no
    description: what `kubectl explain` would show as empty."""
    missing = []
    for name, sub in (schema.get("properties") or {}).items():
        here = f"{path}.{name}"
        if not str(sub.get("description") or "").strip():
            missing.append(here)
        missing += undescribed(sub, here)
    if isinstance(schema.get("items"), dict):
        missing += undescribed(schema["items"], f"{path}[]")
    return missing


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "crds").glob("qiskit*.yaml")))
def test_every_crd_field_is_described_for_kubectl_explain(path: str) -> None:
    """`kubectl explain qiskitjob.spec.shots` prints the schema's description: a kind without one, or
    a field added without one, fails here (charts/qgov/files/crds are byte copies, test_chart.py)."""
    [crd] = load(ROOT / path)
    for version in crd["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        kind = crd["spec"]["names"]["kind"]
        assert str(schema.get("description") or "").strip(), f"{path}: {kind} has no top-level description"
        assert undescribed(schema, kind) == [], f"{path}: fields without a description"


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
                                  ("", "events", "create"), ("qgov.dev", "qiskitsessions", "create"),
                                  ("", "secrets", "get"), ("", "secrets", "create"), ("", "secrets", "update"),
                                  ("", "configmaps", "watch"), ("", "configmaps", "get")]:  # runners' reports
        assert allowed("qgov-operator", group, resource, verb), (group, resource, verb)
    # the price list is cluster-scoped: a namespaced RoleBinding of qgov-executor could not grant it
    assert allowed("qgov-backend-reader", "qgov.dev", "qiskitbackends", "get")
    assert not allowed("qgov-executor", "qgov.dev", "qiskitbackends", "get")
    for group, resource, verb in [("qgov.dev", "qiskitjobs", "get"),
                                  ("", "configmaps", "create"), ("", "configmaps", "get"),
                                  ("qgov.dev", "qiskitjobs", "watch")]:
        assert allowed("qgov-executor", group, resource, verb), (group, resource, verb)
    # results are created, never updated: an executor cannot change a ConfigMap it did not create
    for verb in ("update", "patch", "delete"):
        assert not allowed("qgov-executor", "", "configmaps", verb), verb
    # a job's status is the operator's alone: what a pod running as qgov-executor (which a namespace
    # member can run, or impersonate) writes must never reach it (a runner reports in a ConfigMap)
    for verb in ("patch", "update", "create"):
        assert not allowed("qgov-executor", "qgov.dev", "qiskitjobs/status", verb), verb
    assert not any("secrets" in r["resources"] for r in roles["qgov-executor"]["rules"])  # a mounted token only


def test_the_session_samples_parse() -> None:
    from governance.api.specs import parse_backend, parse_session
    from governance import providers
    from governance.providers.devices import fake_backend

    docs = load(ROOT / "samples" / "ibm-session.yaml") + load(ROOT / "samples" / "local-session.yaml")
    backends = {d["metadata"]["name"]: d for d in docs + load(ROOT / "samples" / "backends.yaml")
                if d["kind"] == "QiskitBackend"}
    sessions = [d for d in docs if d["kind"] == "QiskitSession"]
    assert {s["spec"]["mode"] if "mode" in s["spec"] else "batch" for s in sessions} == {"dedicated", "batch"}
    for session in sessions:
        spec = parse_session(session["spec"])
        backend = parse_backend(spec.backend, backends[spec.backend]["spec"])
        if backend.provider == "ibm":
            assert fake_backend(providers.of(backend).device_model(backend)).num_qubits > 100  # estimates run on the device's twin
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert set(secret["stringData"]) == {"apiKey", "instance"}


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


def test_the_operator_deployment_exposes_its_metrics_port_to_prometheus() -> None:
    [deployment] = load(ROOT / "operator" / "manifests" / "deployment.yaml")
    template = deployment["spec"]["template"]
    [container] = template["spec"]["containers"]
    port = int({e["name"]: e.get("value") for e in container["env"]}["QGOV_METRICS_PORT"])
    assert {"name": "metrics", "containerPort": port} in container["ports"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] == "/metrics"


def test_two_operator_replicas_elect_a_leader_over_a_lease_in_their_namespace() -> None:
    [deployment] = load(ROOT / "operator" / "manifests" / "deployment.yaml")
    assert deployment["spec"]["replicas"] == 2
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    fields = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]
              if "fieldRef" in e.get("valueFrom", {})}
    assert fields == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "POD_IP": "status.podIP"}
    docs = load(ROOT / "operator" / "manifests" / "rbac.yaml")
    [role] = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "qgov-operator-leader-election"]
    assert role["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
            "verbs": ["get", "create", "update"]} in role["rules"]
    [binding] = [d for d in docs if d["kind"] == "RoleBinding" and d["roleRef"]["name"] == role["metadata"]["name"]]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "qgov-operator",
                                    "namespace": deployment["metadata"]["namespace"]}]
    # no cluster-wide lease rights: a Role in the operator's namespace is all it needs
    cluster_roles = [d for d in docs if d["kind"] == "ClusterRole"]
    assert not any("leases" in r.get("resources", ()) for d in cluster_roles for r in d["rules"])


def test_the_operator_pod_meets_the_restricted_pod_security_profile() -> None:
    from tests.jobs.test_executor_pods import restricted_violations

    [deployment] = load(ROOT / "operator" / "manifests" / "deployment.yaml")
    assert restricted_violations(deployment["spec"]["template"]) == []
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_tenants_get_qgov_through_the_built_in_roles_and_budgets_stay_the_platforms() -> None:
    roles = {d["metadata"]["name"]: d for d in load(ROOT / "operator" / "manifests" / "tenant-roles.yaml")}
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"

    def into(role: str) -> set[str]:
        return {k.removeprefix(aggregate) for k, v in roles[role]["metadata"].get("labels", {}).items()
                if k.startswith(aggregate) and v == "true"}

    def grants(role: str) -> set[tuple[str, str]]:
        return {(res, verb) for r in roles[role]["rules"] for res in r["resources"] for verb in r["verbs"]}

    assert into("qgov-view") == {"view", "edit", "admin"} and into("qgov-edit") == {"edit", "admin"}
    assert into("qgov-budget-admin") == set()  # bound by the platform, never aggregated into a team's roles
    for resource in ("qiskitjobs", "qiskitsessions", "qiskitbudgets"):
        assert {(resource, v) for v in ("get", "list", "watch")} <= grants("qgov-view")
    for resource in ("qiskitjobs", "qiskitsessions"):
        assert {(resource, v) for v in ("create", "update", "patch", "delete")} <= grants("qgov-edit")
    assert {("qiskitbudgets", v) for v in ("create", "update", "patch", "delete")} <= grants("qgov-budget-admin")
    # no team role writes a budget or any status
    for role in ("qgov-view", "qgov-edit"):
        assert not {r for r, v in grants(role) if r.endswith("/status") or (r == "qiskitbudgets" and v != "get"
                                                                            and v not in ("list", "watch"))}
    assert not any("*" in r["verbs"] or "*" in r["resources"] for d in roles.values() for r in d["rules"])


def policies() -> dict[str, dict]:
    docs = load(ROOT / "operator" / "manifests" / "policies.yaml")
    bound = {d["spec"]["policyName"]: d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"}
    found = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"}
    assert set(bound) == set(found)  # every policy is bound, to deny
    assert all(b["spec"]["validationActions"] == ["Deny"] for b in bound.values())
    assert all(p["apiVersion"] == "admissionregistration.k8s.io/v1" for p in found.values())
    return found


def test_the_admission_policies_name_what_the_operator_creates_and_who_the_operator_is() -> None:
    from governance.api import JOB_LABEL, JOB_UID_LABEL, MANAGED_BY_LABEL, SESSION_LABEL
    from governance.handlers.identity import EXECUTOR_ACCOUNT, EXECUTOR_ROLE
    from governance.handlers.pods import SESSION_RUNNER_LABEL, executor_pod

    found = policies()
    text = {name: yaml.safe_dump(p["spec"]) for name, p in found.items()}
    # every label the operator puts on an executor pod is one the pod policy keeps for it
    pod = executor_pod({"apiVersion": "qgov.dev/v1alpha1", "kind": "QiskitJob",
                        "metadata": {"name": "j", "namespace": "n", "uid": "u"}}, 1, "img")
    for label in [*pod["metadata"]["labels"], SESSION_RUNNER_LABEL, JOB_LABEL, JOB_UID_LABEL, MANAGED_BY_LABEL]:
        assert f"'{label}'" in text["qgov-executor-pods"], label
    assert f"'{EXECUTOR_ACCOUNT}'" in text["qgov-executor-pods"]
    # the token Secret (managed-by, session) and the result ConfigMaps (job)
    for label in (MANAGED_BY_LABEL, SESSION_LABEL, JOB_LABEL):
        assert f"'{label}'" in text["qgov-owned-objects"], label
    assert f"object.roleRef.name == '{EXECUTOR_ROLE}'" in text["qgov-operator-rbac"]
    # the operator is the ServiceAccount the manifests' ClusterRoleBinding binds, in its namespace
    rbac = load(ROOT / "operator" / "manifests" / "rbac.yaml")
    [binding] = [d for d in rbac if d["kind"] == "ClusterRoleBinding" and d["metadata"]["name"] == "qgov-operator"]
    [subject] = binding["subjects"]
    identity = f"system:serviceaccount:{subject['namespace']}:{subject['name']}"
    for name in ("qgov-executor-pods", "qgov-status", "qgov-operator-rbac", "qgov-owned-objects"):
        assert f"'{identity}'" in text[name], name
    # a refusal says why: every validation has a message and a message expression
    for policy in found.values():
        for validation in policy["spec"]["validations"]:
            assert validation["message"] and validation["messageExpression"] and validation["reason"] == "Forbidden"
        assert policy["spec"]["failurePolicy"] == "Fail"
    statuses = found["qgov-status"]["spec"]["matchConstraints"]["resourceRules"][0]["resources"]
    assert {"qiskitjobs/status", "qiskitsessions/status"} <= set(statuses)


def test_the_no_budget_message_suggests_a_command_that_works() -> None:
    """A refused job says `kubectl apply -n NS -f samples/budget.yaml`: kubectl refuses -n with a
    file that pins another namespace, so the sample must name none."""
    from governance.assessment import choose_budget

    problem = choose_budget("team-b", None, {}, allow_unbudgeted=False)
    assert "`kubectl apply -n team-b -f samples/budget.yaml`" in problem.message
    [budget] = load(ROOT / "samples" / "budget.yaml")
    assert budget["kind"] == "QiskitBudget" and "namespace" not in budget["metadata"]
