"""The chart's CRDs on the real control plane: Helm owns them (templates/crds.yaml), so `helm upgrade`
updates them and `helm uninstall` leaves them (crds.keep). A release of the chart from before
(CRDs from its crds/ directory, which Helm creates once and never marks as its own) upgrades once
with --take-ownership, as the upgrade guide says; without it Helm refuses to adopt them.

No operator runs here (replicas=0): only what Helm does with the CRDs is under test."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from qgov_dev.devcluster.controlplane import ControlPlaneError, tool
from qgov_dev.devcluster.upstream import UpstreamCluster

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "qgov"
RELEASE, SYSTEM = "qgov", "qgov-system"
CRDS = [f"{p}.qgov.dev" for p in ("qiskitbackends", "qiskitbudgets", "qiskitjobs", "qiskitsessions")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamCluster]:
    cluster = UpstreamCluster(tmp_path_factory.mktemp("helm-crds"), manifests=False)
    try:
        cluster.start()
    except ControlPlaneError as exc:
        pytest.fail(f"the chart's CRD test needs the upstream control plane: {exc}", pytrace=False)
    yield cluster
    cluster.stop()


@pytest.mark.slow
def test_crds_are_helms_to_upgrade_and_stay_after_uninstall(cluster: UpstreamCluster, tmp_path: Path) -> None:
    home = tmp_path / "helm-home"
    env = {"HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data"), "HOME": str(home), "PATH": "/usr/bin:/bin"}

    def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(tool("helm")), "--kubeconfig", str(cluster.kubeconfig), *args],
                                capture_output=True, text=True, env=env, timeout=240, check=False)
        assert not check or result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}{result.stderr}"
        return result

    def crd(name: str) -> dict:
        return json.loads(cluster.kubectl("get", "crd", name, "-o", "json"))

    release = (RELEASE, str(CHART), "--namespace", SYSTEM, "--set", "replicas=0")
    # a release of the chart from before: CRDs there, not Helm's (its crds/ directory), the rest Helm's
    cluster.kubectl("apply", "--server-side", "-k", str(ROOT / "crds"))
    helm("install", *release, "--create-namespace", "--set", "crds.enabled=false")
    assert "meta.helm.sh/release-name" not in (crd(CRDS[0])["metadata"].get("annotations") or {})

    # this chart: Helm does not take objects it did not make ...
    refused = helm("upgrade", *release, check=False)
    assert refused.returncode != 0 and "invalid ownership metadata" in refused.stderr, refused.stderr
    # ... unless told to, once
    helm("upgrade", *release, "--take-ownership")
    for name in CRDS:
        meta = crd(name)["metadata"]
        assert meta["annotations"]["meta.helm.sh/release-name"] == RELEASE
        assert meta["annotations"]["helm.sh/resource-policy"] == "keep"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    # later upgrades need nothing more, and change the CRDs (Helm never touches its crds/ directory's)
    helm("upgrade", *release, "--set", "crds.keep=false")
    assert "helm.sh/resource-policy" not in crd(CRDS[0])["metadata"]["annotations"]
    helm("upgrade", *release)
    assert crd(CRDS[0])["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    # uninstall: the CRDs stay (and with them every QiskitJob and QiskitBudget); a new install adopts them
    helm("uninstall", RELEASE, "--namespace", SYSTEM, "--wait")
    names = cluster.kubectl("get", "crd", "-o", "name")
    assert all(f"customresourcedefinition.apiextensions.k8s.io/{n}" in names for n in CRDS), names
    helm("install", *release)
    assert crd(CRDS[0])["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE
