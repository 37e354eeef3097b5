"""The Helm chart (charts/qgov) against the real helm binary: it lints, renders, ships the same CRDs
and RBAC as the kustomize install, mirrors its Deployment, and lets every QGOV_* setting the
operator reads be set through values. (tests/operator/test_chart_upstream.py installs it.)"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from qgov_dev.devcluster.controlplane import tool
from qgov_dev.devcluster.upstream import kubectl_binary

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "qgov"
NAMESPACE = "qgov-system"  # the kustomize install's namespace, so that bindings compare equal


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    binary = str(tool("helm"))
    home = tmp_path_factory.mktemp("helm-home")
    env = {"HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data"), "PATH": "/usr/bin:/bin", "HOME": str(home)}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([binary, *args], check=False, capture_output=True, text=True, env=env, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    return run


@pytest.fixture(scope="module")
def render(helm: Any) -> Any:
    def render(*sets: str, crds: bool = False) -> list[dict[str, Any]]:
        args = ["template", "qgov", str(CHART), "--namespace", NAMESPACE]
        args += ["--include-crds"] if crds else []
        for s in sets:
            args += ["--set", s]
        return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]

    return render


def kustomize() -> list[dict[str, Any]]:
    out = subprocess.run([kubectl_binary(), "kustomize", str(ROOT / "operator" / "manifests")],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in {[(d['kind'], d['metadata']['name']) for d in docs]}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(docs).get("env", [])}


# ---------------------------------------------------------------------------------------------- lint


def test_helm_lint_strict_passes_with_defaults_and_with_every_option(helm: Any) -> None:
    for sets in ([], ["ledger.url=postgresql://qgov:pw@db/qgov", "metrics.serviceMonitor.enabled=true",
                      "config.jobTtlSeconds=3600", "replicas=1", "nodeSelector.disk=ssd"],
                 ["metrics.enabled=false", "webhook.certManager.enabled=true"], ["webhook.enabled=false"],
                 ["admissionPolicies.enabled=false", "tenantRoles.enabled=false", "networkPolicy.enabled=false"],
                 ["executor.nodeSelector.pool=quantum", "executor.imagePullSecrets[0].name=regcred",
                  "executor.priorityClassName=low", "networkPolicy.metricsFrom[0].podSelector.matchLabels.app=prom"],
                 ["metrics.readers[0].name=prometheus-k8s", "metrics.readers[0].namespace=monitoring",
                  "webhook.clientCA.configMap=apiserver-webhook-ca", "webhook.clientCA.names[0]=kube-apiserver"],
                 ["fullnameOverride=qgov", "nameOverride=quantum", "serviceAccount.create=false",
                  "serviceAccount.name=platform-qgov", "crds.enabled=false"],
                 ["metrics.prometheusRule.enabled=true", "metrics.grafanaDashboard.enabled=true", "crds.keep=false",
                  "replicas=3", "podDisruptionBudget.minAvailable=2", "podDisruptionBudget.maxUnavailable=null"]):
        result = helm("lint", "--strict", str(CHART), *(a for s in sets for a in ("--set", s)))
        assert "0 chart(s) failed" in result.stdout, result.stdout


def test_a_misspelt_setting_is_refused_not_ignored(helm: Any) -> None:
    # values.schema.json: a typo in a setting's name would otherwise install an operator without it
    result = helm("template", "qgov", str(CHART), "--set", "config.allowUnbugeted=true", check=False)
    assert result.returncode != 0 and "allowUnbugeted" in result.stderr, result.stderr
    result = helm("template", "qgov", str(CHART), "--set", "replicas=two", check=False)
    assert result.returncode != 0 and "replicas" in result.stderr, result.stderr


@pytest.mark.parametrize("setting, where", [
    ("replica=3", "at '': additional properties 'replica' not allowed"),
    ("metrics.serviceMonitr.enabled=true", "at '/metrics': additional properties 'serviceMonitr' not allowed"),
    ("webhook.certManager.issuerRef.nam=ca", "additional properties 'nam' not allowed"),
    ("serviceAccount.anotations.a=b", "additional properties 'anotations' not allowed"),
    ("resources.request.cpu=1", "additional properties 'request' not allowed"),
    ("crds.kep=false", "at '/crds': additional properties 'kep' not allowed"),
    ("podDisruptionBudget.maxUnavaliable=1", "additional properties 'maxUnavaliable' not allowed"),
    ("metrics.prometheusRule.enable=true", "at '/metrics/prometheusRule': additional properties 'enable' not allowed"),
    ("metrics.grafanaDashboard.label.a=b", "additional properties 'label' not allowed"),
    ("serviceAccount.nmae=x", "additional properties 'nmae' not allowed"),
    ("executor.tolerations[0].opertor=Exists", "additional properties 'opertor' not allowed"),
    ("topologySpreadConstraints[0].topologykey=zone", "additional properties 'topologykey' not allowed"),
    ("networkPolicy.metricsFrom[0].namespaceSelecter.matchLabels.a=b", "additional properties 'namespaceSelecter' not allowed"),
])
def test_an_unknown_key_at_any_level_is_refused_by_lint_and_template(helm: Any, setting: str, where: str) -> None:
    """values.schema.json closes every object of the chart's own (additionalProperties: false); only
    pod-spec pass-throughs (labels, affinity, tolerations, probes, security contexts) stay open."""
    for command in (("lint", "--strict", str(CHART)), ("template", "qgov", str(CHART))):
        result = helm(*command, "--set", setting, check=False)
        assert result.returncode != 0 and where in result.stdout + result.stderr, result.stdout + result.stderr


def test_every_object_of_the_charts_own_is_closed_in_the_schema() -> None:
    """Each object the schema spells out (it has properties) refuses other keys; the open ones are
    maps (labels, quantities) or pod-spec pass-throughs, which say so in their description."""
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node: Any, where: str) -> list[str]:
        if not isinstance(node, dict):
            return []
        bad = [where] if "properties" in node and node.get("additionalProperties") is not False else []
        if node.get("type") == "object" and "properties" not in node and "additionalProperties" not in node:
            bad += [] if "pass" in node.get("description", "") else [where]
        children = [(f"{where}/{k}", v) for k, v in (node.get("properties") or {}).items()]
        children += [(f"{where}[]", node["items"])] if isinstance(node.get("items"), dict) else []
        children += [(f"#{k}", v) for k, v in (node.get("definitions") or {}).items()]
        return bad + [b for path, child in children for b in walk(child, path)]

    assert walk(schema, "") == []


def test_every_value_the_chart_sets_is_in_its_schema() -> None:
    """An unknown key is refused, so each key of values.yaml and each .Values path the templates
    read must be one the schema knows (a key added to values.yaml alone would break every install)."""
    import json
    import re

    schema = json.loads((CHART / "values.schema.json").read_text())

    def known(path: list[str]) -> bool:
        node = schema
        for key in path:
            while "$ref" in node:
                node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
            if key in (node.get("properties") or {}):
                node = node["properties"][key]
            elif node.get("additionalProperties") is False:
                return False
            else:
                return True  # a pass-through map: any key
        return True

    def keys(values: Any, path: list[str]) -> list[list[str]]:
        if not isinstance(values, dict):
            return []
        return [[*path, k] for k in values] + [p for k, v in values.items() for p in keys(v, [*path, k])]

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    used = {m.split(".")[2:] and tuple(m.split(".")[2:]) for t in (CHART / "templates").iterdir()
            for m in re.findall(r"\.Values(?:\.[A-Za-z0-9_]+)+", t.read_text())}
    unknown = [p for p in keys(values, []) + [list(u) for u in used] if not known(p)]
    assert unknown == []


# ---------------------------------------------------------------------------------------------- CRDs


def test_the_chart_ships_exactly_the_crds_of_crds_dir(render: Any) -> None:
    """crds/ is the one source: the chart's files/crds/ are byte copies, and what the templates render
    is those CRDs, field for field (the text is inserted, never re-marshalled), plus Helm's labels."""
    ours = sorted(p.name for p in (CHART / "files" / "crds").iterdir())
    theirs = sorted(p.name for p in (ROOT / "crds").glob("*.yaml") if p.name != "kustomization.yaml")
    assert ours == theirs
    for name in theirs:  # byte for byte: copy crds/*.yaml into charts/qgov/files/crds/ after editing a CRD
        assert (CHART / "files" / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes(), (
            f"charts/qgov/files/crds/{name} differs from crds/{name}: cp crds/{name} charts/qgov/files/crds/")
    rendered = {d["metadata"]["name"]: d for d in render() if d["kind"] == "CustomResourceDefinition"}
    source = {d["metadata"]["name"]: d for p in (ROOT / "crds").glob("qiskit*.yaml") for d in yaml.safe_load_all(p.read_text())}
    assert sorted(rendered) == sorted(source) == [f"{k}.qgov.dev" for k in
                                                   ("qiskitbackends", "qiskitbudgets", "qiskitjobs", "qiskitsessions")]
    for name, crd in rendered.items():
        meta = crd["metadata"]
        assert meta.pop("annotations") == {"helm.sh/resource-policy": "keep"}  # crds.keep: uninstall leaves them
        assert meta.pop("labels")["app.kubernetes.io/managed-by"] == "Helm"
        assert crd == source[name], f"the rendered {name} differs from crds/"
    # --include-crds adds nothing: Helm's crds/ directory, which `helm upgrade` never updates, is empty
    assert len([d for d in render(crds=True) if d["kind"] == "CustomResourceDefinition"]) == 4


def test_crds_can_be_left_out_or_left_to_helm_to_delete(render: Any) -> None:
    assert not [d for d in render("crds.enabled=false") if d["kind"] == "CustomResourceDefinition"]
    crds = [d for d in render("crds.keep=false") if d["kind"] == "CustomResourceDefinition"]
    assert len(crds) == 4 and not any("annotations" in d["metadata"] for d in crds)


# ---------------------------------------------------------------------------------------------- RBAC


def test_rbac_is_the_kustomize_rbac(render: Any) -> None:
    chart, manifests = render(), kustomize()

    def rbac(docs: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
        out: dict[tuple[str, str], Any] = {}
        for d in docs:
            if d["kind"] in ("ClusterRole", "Role"):
                out[(d["kind"], d["metadata"]["name"])] = d["rules"]
            elif d["kind"] in ("ClusterRoleBinding", "RoleBinding"):
                out[(d["kind"], d["metadata"]["name"])] = (d["roleRef"], d["subjects"])
            elif d["kind"] == "ServiceAccount":
                out[(d["kind"], d["metadata"]["name"])] = d["metadata"]["namespace"]
        return out

    ours, theirs = rbac(chart), rbac(manifests)
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert ours[key] == theirs[key], f"{key} differs from operator/manifests/rbac.yaml"
    # the operator pod runs as the account those rules are bound to
    assert one(chart, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "qgov-operator"


def test_the_binding_follows_the_release_namespace(helm: Any) -> None:
    out = helm("template", "qgov", str(CHART), "--namespace", "platform").stdout
    binding = one([d for d in yaml.safe_load_all(out) if d], "ClusterRoleBinding", "qgov-operator")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "qgov-operator", "namespace": "platform"}]


# ---------------------------------------------------------------------------------------------- Deployment


def test_the_deployment_mirrors_the_kustomize_one(render: Any) -> None:
    chart, manifests = one(render(), "Deployment"), one(kustomize(), "Deployment")
    pod, their_pod = chart["spec"]["template"]["spec"], manifests["spec"]["template"]["spec"]
    ours, theirs = pod["containers"][0], their_pod["containers"][0]
    assert chart["spec"]["replicas"] == 2  # the chart's default (values.yaml says why)
    assert pod["securityContext"] == their_pod["securityContext"]
    assert pod["serviceAccountName"] == their_pod["serviceAccountName"]
    for field in ("image", "ports", "livenessProbe", "readinessProbe", "startupProbe", "resources", "securityContext"):
        assert ours.get(field) == theirs.get(field), field
    annotations = chart["spec"]["template"]["metadata"]["annotations"]
    for key, value in manifests["spec"]["template"]["metadata"].get("annotations", {}).items():
        assert annotations[key] == value
    # every variable the kustomize Deployment sets, the chart sets the same way
    their_env = {e["name"]: e.get("value", e.get("valueFrom")) for e in theirs["env"]}
    our_env = {e["name"]: e.get("value", e.get("valueFrom")) for e in ours["env"]}
    assert {k: our_env.get(k) for k in their_env} == their_env


def test_scheduling_resources_and_images_come_from_values(render: Any) -> None:
    docs = render("replicas=3", "nodeSelector.pool=ops", "tolerations[0].key=dedicated",
                  "tolerations[0].operator=Exists", "resources.limits.memory=2Gi",
                  "image.repository=registry.example/qgov/operator", "image.tag=1.2.3", "image.pullPolicy=Always",
                  "executorImage.repository=registry.example/qgov/executor", "executorImage.tag=1.2.4",
                  "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
                  ".matchExpressions[0].key=zone",
                  "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
                  ".matchExpressions[0].operator=Exists")
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 3
    assert pod["nodeSelector"] == {"pool": "ops"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0][
        "matchExpressions"] == [{"key": "zone", "operator": "Exists"}]
    assert pod["containers"][0]["resources"]["limits"] == {"memory": "2Gi"}
    assert pod["containers"][0]["image"] == "registry.example/qgov/operator:1.2.3"
    assert pod["containers"][0]["imagePullPolicy"] == "Always"
    assert env(docs)["QGOV_EXECUTOR_IMAGE"] == "registry.example/qgov/executor:1.2.4"


def test_the_ledger_url_comes_from_your_secret_or_one_the_chart_makes(render: Any) -> None:
    docs = render()
    assert env(docs)["QGOV_DATABASE_URL"] == {"secretKeyRef": {"name": "qgov-ledger", "key": "url"}}
    assert not [d for d in docs if d["kind"] == "Secret"]  # yours to create (NOTES.txt says how)
    docs = render("ledger.secretName=db-creds", "ledger.secretKey=dsn")
    assert env(docs)["QGOV_DATABASE_URL"] == {"secretKeyRef": {"name": "db-creds", "key": "dsn"}}
    made = render("ledger.url=postgresql://qgov:pw@db/qgov")
    secret = one(made, "Secret", "qgov-ledger")
    assert secret["data"] == {"url": "cG9zdGdyZXNxbDovL3Fnb3Y6cHdAZGIvcWdvdg=="}  # base64 of the URL
    assert env(made)["QGOV_DATABASE_URL"] == {"secretKeyRef": {"name": "qgov-ledger", "key": "url"}}
    # a new URL rolls the operator pods (env from a Secret is read only when a container starts)
    moved = render("ledger.url=postgresql://qgov:pw@db2/qgov")
    assert (one(made, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/ledger"]
            != one(moved, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/ledger"])


# ---------------------------------------------------------------------------------------------- settings

# every quoted "QGOV_..." name: os.environ.get("QGOV_X", "default"), os.environ["QGOV_X"], _flag("QGOV_X")
NAME = re.compile(r"""["'](QGOV_[A-Z0-9_]+)["']""")
DEFAULT = re.compile(r"""os\.environ\.get\(\s*["'](QGOV_[A-Z0-9_]+)["']\s*,\s*["']([^"']*)["']""")
# what the chart sets from other values than config.<name>
SPECIAL = {"QGOV_DATABASE_URL": "ledger", "QGOV_EXECUTOR_IMAGE": "executorImage",
           "QGOV_EXECUTOR_IMAGE_PULL_POLICY": "executorImage.pullPolicy", "QGOV_METRICS_PORT": "metrics.port",
           "QGOV_COST_API_PORT": "costApi.port",
           "QGOV_WEBHOOK_PORT": "webhook.port",
           # the webhook's objects are the chart's, named as the operator's defaults, in the release's
           # namespace (the pod's own): nothing to set; QGOV_WEBHOOK_URL is for an operator run outside
           "QGOV_WEBHOOK_NAMESPACE": "webhook", "QGOV_WEBHOOK_SERVICE": "webhook", "QGOV_WEBHOOK_SECRET": "webhook",
           "QGOV_WEBHOOK_CONFIGURATION": "webhook", "QGOV_WEBHOOK_URL": "webhook",
           "QGOV_WEBHOOK_CERTIFICATES": "webhook.certManager.enabled",
           # executor pods' resources and scheduling: values executor.*, as a pod spec writes them
           "QGOV_EXECUTOR_RESOURCES": "executor.resources", "QGOV_EXECUTOR_NODE_SELECTOR": "executor.nodeSelector",
           "QGOV_EXECUTOR_TOLERATIONS": "executor.tolerations",
           "QGOV_EXECUTOR_IMAGE_PULL_SECRETS": "executor.imagePullSecrets",
           "QGOV_EXECUTOR_PRIORITY_CLASS_NAME": "executor.priorityClassName",
           "QGOV_WEBHOOK_CLIENT_CA": "webhook.clientCA", "QGOV_WEBHOOK_CLIENT_NAMES": "webhook.clientCA.names"}


def operator_settings() -> dict[str, str | None]:
    """Every QGOV_* variable the operator process reads, with its default in the code (None: none
    there). governance/ is the operator (`qgov operator`); the dev tools (qgov_dev/) are outside it.
    Names the executor reads (executor/) are what the operator passes to executor pods."""
    executor = {n for p in (ROOT / "executor").rglob("*.py") for n in NAME.findall(p.read_text())}
    found: dict[str, str | None] = {}
    for path in sorted((ROOT / "governance").rglob("*.py")):
        text = path.read_text()
        defaults = dict(DEFAULT.findall(text))
        for name in NAME.findall(text):
            if name not in executor:
                found.setdefault(name, defaults.get(name))
    return found


def camel(name: str) -> str:
    head, *rest = name.removeprefix("QGOV_").lower().split("_")
    return head + "".join(w.capitalize() for w in rest)


def test_the_settings_scan_finds_the_operators_settings() -> None:
    found = operator_settings()
    # a sample the scan must see, or it is not scanning what the operator reads
    assert {"QGOV_DATABASE_URL", "QGOV_POD_SWEEP_SECONDS", "QGOV_SESSION_INTERVAL_SECONDS", "QGOV_MIGRATIONS",
            "QGOV_JOB_TTL_SECONDS"} <= set(found)
    assert found["QGOV_POD_SWEEP_SECONDS"] == "30" and found["QGOV_ALLOW_UNBUDGETED"] is None
    # what the operator only hands to executor pods is not an operator setting
    assert "QGOV_TERMINATION_LOG" not in found and "QGOV_IBM_SESSION" not in found


ENUMS = {"QGOV_LEADER_ELECTION": "false", "QGOV_METRICS_AUTH": "none"}  # settings with a set of values (values.schema.json): one not the default


def test_every_qgov_setting_the_operator_reads_is_settable_through_values(render: Any) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = [n for n in operator_settings() if n not in SPECIAL and camel(n) not in values["config"]]
    assert not missing, f"settings the operator reads that values.yaml's config does not offer: {missing}"
    sets, expected = [], {}
    for i, name in enumerate(operator_settings()):
        if name in SPECIAL:
            continue
        default = values["config"][camel(name)]  # a value of the setting's type, unlike its default
        value = ("false" if default else "true") if isinstance(default, bool) else ENUMS.get(name) or (
            f"v{i}" if isinstance(default, str) else str(1000 + i))
        sets.append(f"config.{camel(name)}={value}")
        expected[name] = value
    rendered = env(render(*sets, "ledger.secretName=mine", "executorImage.tag=9.9", "executorImage.pullPolicy=Never",
                          "metrics.port=9191"))
    assert {k: rendered.get(k) for k in expected} == expected
    assert rendered["QGOV_DATABASE_URL"] == {"secretKeyRef": {"name": "mine", "key": "url"}}
    assert rendered["QGOV_EXECUTOR_IMAGE"] == "ghcr.io/qgov/executor:9.9"
    assert rendered["QGOV_EXECUTOR_IMAGE_PULL_POLICY"] == "Never"
    assert set(SPECIAL) <= set(operator_settings())  # none of them is stale
    assert rendered["QGOV_METRICS_PORT"] == "9191"


def test_the_charts_defaults_are_the_operators_defaults(render: Any) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["config"]
    rendered = env(render())
    for name, default in operator_settings().items():
        if name in SPECIAL or default is None:
            continue
        value = values[camel(name)]
        assert str(value).lower() == default.lower(), f"config.{camel(name)}: {value!r}, the operator's default {default!r}"
        assert rendered[name].lower() == default.lower()
    # settings without a default in the code are not passed unless set ("" or null)
    assert not {"QGOV_JOB_TTL_SECONDS", "QGOV_MIGRATIONS", "QGOV_EXECUTOR_IMAGE_PULL_POLICY"} & set(rendered)
    # numbers reach the operator as it parses them (int("1e+07") would stop it)
    assert env(render("config.batchMaxTimeSeconds=10000000", "config.retryBaseSeconds=0.5"))[
        "QGOV_BATCH_MAX_TIME_SECONDS"] == "10000000"
    assert env(render("config.retryBaseSeconds=0.5"))["QGOV_RETRY_BASE_SECONDS"] == "0.5"


def test_extra_env_is_passed(render: Any) -> None:
    assert env(render("extraEnv[0].name=HTTPS_PROXY", "extraEnv[0].value=http://proxy:3128"))[
        "HTTPS_PROXY"] == "http://proxy:3128"


# ---------------------------------------------------------------------------------------------- metrics


def test_the_metrics_service_and_the_service_monitor_only_when_enabled(render: Any) -> None:
    docs = render()
    service = one(docs, "Service", "qgov-operator-metrics")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert not [d for d in docs if d["kind"] == "ServiceMonitor"]

    docs = render("metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom")
    monitor = one(docs, "ServiceMonitor", "qgov-operator")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= one(docs, "Service", "qgov-operator-metrics")[
        "metadata"]["labels"].items()

    docs = render("metrics.enabled=false", "metrics.serviceMonitor.enabled=true")
    assert not [d for d in docs if d["kind"] == "ServiceMonitor" or d["metadata"]["name"] == "qgov-operator-metrics"]
    assert env(docs)["QGOV_METRICS_PORT"] == "0"
    assert "prometheus.io/scrape" not in one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]


def test_metrics_are_for_readers_the_api_server_allows(render: Any) -> None:
    docs = render("metrics.serviceMonitor.enabled=true")
    reader = one(docs, "ClusterRole", "qgov-metrics-reader")
    assert reader["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    assert not [d for d in docs if d["kind"] == "ClusterRoleBinding" and d["metadata"]["name"] == "qgov-metrics-reader"]
    endpoint = one(docs, "ServiceMonitor", "qgov-operator")["spec"]["endpoints"][0]
    assert endpoint["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    assert env(docs)["QGOV_METRICS_AUTH"] == "kubernetes"
    docs = render("metrics.readers[0].name=prometheus-k8s", "metrics.readers[0].namespace=monitoring")
    binding = one(docs, "ClusterRoleBinding", "qgov-metrics-reader")
    assert binding["roleRef"]["name"] == "qgov-metrics-reader"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "prometheus-k8s", "namespace": "monitoring"}]
    # a Prometheus that scrapes without a token: the opt-out, and no token sent
    docs = render("config.metricsAuth=none", "metrics.serviceMonitor.enabled=true")
    assert env(docs)["QGOV_METRICS_AUTH"] == "none"
    assert "bearerTokenFile" not in one(docs, "ServiceMonitor", "qgov-operator")["spec"]["endpoints"][0]
    with pytest.raises(AssertionError, match="metricsAuth"):
        render("config.metricsAuth=maybe")


# ---------------------------------------------------------------------------------------------- webhook


def test_the_webhook_can_answer_only_the_api_servers_client_certificate(render: Any) -> None:
    assert "QGOV_WEBHOOK_CLIENT_CA" not in env(render())  # off unless the admin gives the CA
    docs = render("webhook.clientCA.configMap=apiserver-webhook-ca", "webhook.clientCA.names[0]=kube-apiserver")
    assert env(docs)["QGOV_WEBHOOK_CLIENT_CA"] == "/etc/qgov/webhook-client-ca/ca.crt"
    assert env(docs)["QGOV_WEBHOOK_CLIENT_NAMES"] == "kube-apiserver"
    assert container(docs)["volumeMounts"] == [{"name": "webhook-client-ca", "mountPath": "/etc/qgov/webhook-client-ca",
                                                "readOnly": True}]
    [volume] = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert volume["configMap"] == {"name": "apiserver-webhook-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}


def test_the_webhook_is_served_by_every_replica_unless_disabled(render: Any) -> None:
    docs = render()
    configuration = one(docs, "ValidatingWebhookConfiguration", "qgov-webhook")["webhooks"][0]
    assert (configuration["failurePolicy"], configuration["timeoutSeconds"]) == ("Ignore", 5)
    assert configuration["clientConfig"]["service"] == {"name": "qgov-webhook", "namespace": "qgov-system",
                                                         "path": "/validate", "port": 443}
    service = one(docs, "Service", "qgov-webhook")
    assert service["spec"]["ports"][0]["targetPort"] == "webhook"
    assert {"name": "webhook", "containerPort": 8443} in container(docs)["ports"]
    assert env(docs)["QGOV_WEBHOOK_PORT"] == "8443"
    # the webhook configuration, the Service and what writes the caBundle equal the kustomize install's
    assert configuration == one(kustomize(), "ValidatingWebhookConfiguration", "qgov-webhook")["webhooks"][0]

    docs = render("webhook.enabled=false")
    assert not [d for d in docs if d["metadata"]["name"] in ("qgov-webhook", "qgov-webhook-configurator")]
    assert env(docs)["QGOV_WEBHOOK_PORT"] == "0"
    assert "webhook" not in {p["name"] for p in container(docs)["ports"]}
    with pytest.raises(AssertionError, match="failurePolicy"):  # the schema says what may be set
        render("webhook.failurePolicy=Sometimes")


def test_cert_manager_can_keep_the_webhooks_certificate(render: Any) -> None:
    assert "QGOV_WEBHOOK_CERTIFICATES" not in env(render())  # by default the operator keeps its own
    assert not [d for d in render() if d["kind"] in ("Certificate", "Issuer")]

    docs = render("webhook.certManager.enabled=true")
    assert env(docs)["QGOV_WEBHOOK_CERTIFICATES"] == "external"
    serving = one(docs, "Certificate", "qgov-webhook")
    assert serving["spec"]["secretName"] == "qgov-webhook-tls"  # the Secret the operator reads
    assert "qgov-webhook.qgov-system.svc" in serving["spec"]["dnsNames"]  # what the API server calls
    assert serving["spec"]["issuerRef"] == {"name": "qgov-webhook-ca", "kind": "Issuer"}
    assert one(docs, "Certificate", "qgov-webhook-ca")["spec"]["isCA"] is True
    assert one(docs, "Issuer", "qgov-webhook-ca")["spec"]["ca"] == {"secretName": "qgov-webhook-ca"}
    configuration = one(docs, "ValidatingWebhookConfiguration", "qgov-webhook")
    assert configuration["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": "qgov-system/qgov-webhook"}

    docs = render("webhook.certManager.enabled=true", "webhook.certManager.issuerRef.name=corp-ca",
                  "webhook.certManager.issuerRef.kind=ClusterIssuer")
    assert one(docs, "Certificate", "qgov-webhook")["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer"}
    assert not [d for d in docs if d["kind"] == "Issuer"]  # the given issuer signs; the chart makes none


# ---------------------------------------------------------------------------------------------- pod security, policies


def test_the_operator_pod_meets_the_restricted_pod_security_profile(render: Any) -> None:
    from tests.jobs.test_executor_pods import restricted_violations

    assert restricted_violations(one(render(), "Deployment")["spec"]["template"]) == []


def test_executor_pods_resources_and_scheduling_come_from_values(render: Any) -> None:
    from governance.handlers.pods import DEFAULT_RESOURCES

    rendered = env(render())
    assert json.loads(rendered["QGOV_EXECUTOR_RESOURCES"]) == DEFAULT_RESOURCES  # the operator's own default
    assert not {"QGOV_EXECUTOR_NODE_SELECTOR", "QGOV_EXECUTOR_TOLERATIONS", "QGOV_EXECUTOR_IMAGE_PULL_SECRETS",
                "QGOV_EXECUTOR_PRIORITY_CLASS_NAME"} & set(rendered)
    rendered = env(render("executor.resources.requests.cpu=2", "executor.resources.limits.memory=16Gi",
                          "executor.nodeSelector.pool=quantum", "executor.tolerations[0].key=dedicated",
                          "executor.tolerations[0].operator=Exists", "executor.imagePullSecrets[0].name=regcred",
                          "executor.imagePullSecrets[1].name=mirror", "executor.priorityClassName=batch-low"))
    assert json.loads(rendered["QGOV_EXECUTOR_RESOURCES"]) == {"requests": {"cpu": 2, "memory": "512Mi"},
                                                                "limits": {"memory": "16Gi"}}
    assert json.loads(rendered["QGOV_EXECUTOR_NODE_SELECTOR"]) == {"pool": "quantum"}
    assert json.loads(rendered["QGOV_EXECUTOR_TOLERATIONS"]) == [{"key": "dedicated", "operator": "Exists"}]
    assert rendered["QGOV_EXECUTOR_IMAGE_PULL_SECRETS"] == "regcred,mirror"
    assert rendered["QGOV_EXECUTOR_PRIORITY_CLASS_NAME"] == "batch-low"


def test_the_operator_reads_what_the_chart_passes_for_executor_pods(render: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from governance.handlers.config import OperatorConfig
    from governance.handlers.pods import executor_pod

    rendered = env(render("executor.resources.requests.cpu=2", "executor.nodeSelector.pool=quantum",
                          "executor.tolerations[0].key=dedicated", "executor.tolerations[0].operator=Exists",
                          "executor.imagePullSecrets[0].name=regcred", "executor.priorityClassName=batch-low"))
    for name, value in rendered.items():
        if name.startswith("QGOV_EXECUTOR_") and isinstance(value, str):
            monkeypatch.setenv(name, value)
    pod = executor_pod({"apiVersion": "qgov.dev/v1alpha1", "kind": "QiskitJob",
                        "metadata": {"name": "j", "namespace": "n", "uid": "u"}}, 1, "img", None, None,
                       OperatorConfig.from_env().executor_pod)["spec"]
    assert pod["containers"][0]["resources"]["requests"]["cpu"] == 2  # a quantity, as Kubernetes reads 2 and "2"
    assert (pod["nodeSelector"], pod["tolerations"]) == ({"pool": "quantum"}, [{"key": "dedicated", "operator": "Exists"}])
    assert (pod["imagePullSecrets"], pod["priorityClassName"]) == ([{"name": "regcred"}], "batch-low")


def test_the_admission_policies_are_the_kustomize_ones_for_the_releases_namespace(render: Any, helm: Any) -> None:
    kinds = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")

    def specs(docs: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
        return {(d["kind"], d["metadata"]["name"]): d["spec"] for d in docs if d["kind"] in kinds}

    ours, theirs = specs(render()), specs(kustomize())
    assert len(theirs) == 10 and ours == theirs
    # the operator's identity follows the release's namespace
    out = helm("template", "qgov", str(CHART), "--namespace", "platform").stdout
    text = yaml.safe_dump(specs([d for d in yaml.safe_load_all(out) if d]))
    assert "system:serviceaccount:platform:qgov-operator" in text and "qgov-system" not in text
    assert not specs(render("admissionPolicies.enabled=false"))
    # the tenant roles (compared with the kustomize ones by test_rbac_is_the_kustomize_rbac) can be left out
    names = {"qgov-view", "qgov-edit", "qgov-budget-admin"}
    assert names <= {d["metadata"]["name"] for d in render() if d["kind"] == "ClusterRole"}
    assert not names & {d["metadata"]["name"] for d in render("tenantRoles.enabled=false") if d["kind"] == "ClusterRole"}


def test_the_network_policy_admits_only_the_webhook_metrics_costs_and_health_ports(render: Any) -> None:
    docs = render()
    policy = one(docs, "NetworkPolicy", "qgov-operator")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= one(docs, "Deployment")["spec"]["template"]["metadata"][
        "labels"].items()
    assert policy["policyTypes"] == ["Ingress"]
    ports = [(r["ports"][0]["port"], r.get("from")) for r in policy["ingress"]]
    assert ports == [("webhook", None), ("metrics", None), ("costs", None), ("health", None)]
    named = {p["name"] for p in container(docs)["ports"]}
    assert {"webhook", "metrics", "costs", "health"} <= named  # the names the policy uses exist on the container

    docs = render("networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring", "webhook.enabled=false")
    policy = one(docs, "NetworkPolicy", "qgov-operator")["spec"]
    assert [(r["ports"][0]["port"], r.get("from")) for r in policy["ingress"]] == [
        ("metrics", [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}]), ("costs", None), ("health", None)]
    assert not [d for d in render("networkPolicy.enabled=false") if d["kind"] == "NetworkPolicy"]


# ---------------------------------------------------------------------------------------------- names, HA


def test_kube_version_is_the_oldest_with_what_the_chart_uses(helm: Any) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == ">=1.30.0-0"  # matchConditions and ValidatingAdmissionPolicy: GA in 1.30
    result = helm("template", "qgov", str(CHART), "--kube-version", "1.29.9", check=False)
    assert result.returncode != 0 and "kubeVersion" in result.stderr, result.stderr
    helm("template", "qgov", str(CHART), "--kube-version", "1.30.0")


def test_names_follow_fullname_and_name_overrides(render: Any) -> None:
    docs = render("fullnameOverride=qgov", "nameOverride=quantum")
    deployment = one(docs, "Deployment", "qgov")
    assert deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "quantum"
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "qgov"
    one(docs, "ServiceAccount", "qgov")
    one(docs, "Service", "qgov-metrics")
    one(docs, "NetworkPolicy", "qgov")
    one(docs, "PodDisruptionBudget", "qgov")
    binding = one(docs, "ClusterRoleBinding", "qgov")
    assert (binding["roleRef"]["name"], binding["subjects"][0]["name"]) == ("qgov", "qgov")
    assert one(docs, "RoleBinding", "qgov-leader-election")["subjects"][0]["name"] == "qgov"
    # what the operator and tenants find by name keeps its name
    for kind, name in (("ClusterRole", "qgov-executor"), ("ClusterRole", "qgov-edit"), ("Service", "qgov-webhook"),
                       ("ValidatingWebhookConfiguration", "qgov-webhook")):
        one(docs, kind, name)
    # no object of the release's own keeps the default name (the admission policies are qgov's, by fixed names)
    kept = [d["metadata"]["name"] for d in docs if d["metadata"]["name"].startswith("qgov-operator")
            and not d["kind"].startswith("ValidatingAdmissionPolicy")]
    assert kept == []
    # the admission policies let the operator's account (now qgov) do the operator's work
    policies = yaml.safe_dump([d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"])
    assert "system:serviceaccount:qgov-system:qgov'" in policies and ":qgov-operator'" not in policies
    # nameOverride alone: the name and the names of the objects
    assert one(render("nameOverride=quantum"), "Deployment")["metadata"]["name"] == "quantum"


def test_the_operator_can_run_as_a_service_account_of_yours(render: Any) -> None:
    docs = render("serviceAccount.create=false", "serviceAccount.name=platform-qgov")
    assert not [d for d in docs if d["kind"] == "ServiceAccount"]
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "platform-qgov"
    subjects = [s for d in docs if d["kind"] in ("ClusterRoleBinding", "RoleBinding") for s in d["subjects"]
                if s["kind"] == "ServiceAccount"]
    assert {s["name"] for s in subjects} == {"platform-qgov"} and len(subjects) == 3  # operator, leases, webhook
    assert "system:serviceaccount:qgov-system:platform-qgov" in yaml.safe_dump(
        [d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"])
    # a created account of another name
    docs = render("serviceAccount.name=ops")
    assert one(docs, "ServiceAccount")["metadata"]["name"] == "ops"
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


def test_two_replicas_get_a_disruption_budget_and_are_spread_over_nodes(render: Any) -> None:
    docs = render()
    pod = one(docs, "Deployment")["spec"]["template"]
    budget = one(docs, "PodDisruptionBudget", "qgov-operator")["spec"]
    assert budget == {"maxUnavailable": 1, "selector": one(docs, "Deployment")["spec"]["selector"]}
    [spread] = pod["spec"]["topologySpreadConstraints"]
    assert spread == {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
                      "labelSelector": {"matchLabels": one(docs, "Deployment")["spec"]["selector"]["matchLabels"]},
                      "matchLabelKeys": ["pod-template-hash"]}
    assert spread["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    # one replica: a budget would only block drains, and there is nothing to spread
    docs = render("replicas=1")
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert "topologySpreadConstraints" not in one(docs, "Deployment")["spec"]["template"]["spec"]
    spec = one(render("replicas=3", "podDisruptionBudget.minAvailable=2"), "PodDisruptionBudget")["spec"]
    assert spec["minAvailable"] == 2 and "maxUnavailable" not in spec  # a PDB takes one of the two
    assert not [d for d in render("podDisruptionBudget.enabled=false") if d["kind"] == "PodDisruptionBudget"]
    # constraints of your own, as written; [] for none
    zone = render("topologySpreadConstraints[0].maxSkew=2", "topologySpreadConstraints[0].topologyKey=zone",
                  "topologySpreadConstraints[0].whenUnsatisfiable=DoNotSchedule",
                  "topologySpreadConstraints[0].labelSelector.matchLabels.app=x")
    assert one(zone, "Deployment")["spec"]["template"]["spec"]["topologySpreadConstraints"] == [
        {"maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
         "labelSelector": {"matchLabels": {"app": "x"}}}]
    assert "topologySpreadConstraints" not in one(render("topologySpreadConstraints=null"), "Deployment")[
        "spec"]["template"]["spec"]


def test_the_readiness_probe_asks_an_endpoint_the_operator_serves(render: Any) -> None:
    probe = container(render())["readinessProbe"]
    assert probe["httpGet"] == {"path": "/healthz", "port": "health"}
    # the port it names is the container's, where the image's entrypoint serves /healthz
    assert {"name": "health", "containerPort": 8080} in container(render())["ports"]
    assert "--liveness\", \"http://0.0.0.0:8080/healthz" in (ROOT / "operator" / "Dockerfile").read_text()
    webhook = container(render("readinessProbe.httpGet.port=webhook", "readinessProbe.httpGet.scheme=HTTPS"))
    assert webhook["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "webhook", "scheme": "HTTPS"}


def test_the_alerts_and_the_dashboard_install_with_the_chart_when_asked(render: Any) -> None:
    docs = render()
    assert not [d for d in docs if d["kind"] in ("PrometheusRule", "ConfigMap")]
    docs = render("metrics.prometheusRule.enabled=true", "metrics.prometheusRule.labels.release=kps",
                  "metrics.grafanaDashboard.enabled=true", "metrics.grafanaDashboard.namespace=grafana",
                  "metrics.grafanaDashboard.annotations.grafana_folder=qgov")
    rule = one(docs, "PrometheusRule", "qgov-operator")
    assert (rule["apiVersion"], rule["metadata"]["namespace"]) == ("monitoring.coreos.com/v1", NAMESPACE)
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"] == yaml.safe_load((ROOT / "monitoring/prometheus/qgov-alerts.yaml").read_text())
    board = one(docs, "ConfigMap", "qgov-operator-dashboard")
    assert board["metadata"]["namespace"] == "grafana"
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"  # what Grafana's sidecar looks for
    assert board["metadata"]["annotations"] == {"grafana_folder": "qgov"}
    assert json.loads(board["data"]["qgov-dashboard.json"]) == json.loads(
        (ROOT / "monitoring/grafana/qgov-dashboard.json").read_text())
    # the chart's copies are the monitoring/ files, byte for byte (the scripts there write both)
    assert (CHART / "files/qgov-alerts.yaml").read_bytes() == (ROOT / "monitoring/prometheus/qgov-alerts.yaml").read_bytes(), \
        "run python monitoring/prometheus/prometheusrule.py"
    assert (CHART / "files/qgov-dashboard.json").read_bytes() == (ROOT / "monitoring/grafana/qgov-dashboard.json").read_bytes(), \
        "run python monitoring/grafana/dashboard.py"
    # without metrics there is nothing to alert on
    assert not [d for d in render("metrics.enabled=false", "metrics.prometheusRule.enabled=true") if d["kind"] == "PrometheusRule"]


def test_cost_api_has_a_service_a_port_and_an_ingress_rule_and_can_be_turned_off(render: Any) -> None:
    docs = render()
    assert env(docs)["QGOV_COST_API_PORT"] == "9091"
    assert {"name": "costs", "containerPort": 9091} in container(docs)["ports"]
    service = one(docs, "Service", "qgov-operator-costs")
    assert service["spec"]["ports"] == [{"name": "costs", "port": 9091, "targetPort": "costs", "protocol": "TCP"}]
    rules = one(docs, "NetworkPolicy")["spec"]["ingress"]
    assert {"ports": [{"port": "costs", "protocol": "TCP"}]} in rules
    docs = render("costApi.port=9500", "networkPolicy.costApiFrom[0].namespaceSelector.matchLabels.team=finops")
    assert env(docs)["QGOV_COST_API_PORT"] == "9500"
    assert one(docs, "Service", "qgov-operator-costs")["spec"]["ports"][0]["port"] == 9500
    assert [r for r in one(docs, "NetworkPolicy")["spec"]["ingress"] if r["ports"][0]["port"] == "costs"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"team": "finops"}}}]
    docs = render("costApi.enabled=false")
    assert env(docs)["QGOV_COST_API_PORT"] == "0"
    assert not [d for d in docs if d["metadata"]["name"] == "qgov-operator-costs"]
    assert "costs" not in [p["name"] for p in container(docs)["ports"]]
    kustomized = kustomize()
    assert one(kustomized, "Service", "qgov-costs")["spec"]["ports"][0]["targetPort"] == "costs"
