"""qgov as a new user gets it: build the wheel, install it into a clean venv, run `qgov dev --demo`.

The wheel is built from a copy of the sources (so the test leaves no build/ in the repository),
with pip's build isolation (setuptools from PyPI). The venv is new and has no qgov of its own
but the wheel; its third-party dependencies are, by default, this environment's, seen through a
.pth line (fast and offline once the wheel is built; nested .pth files such as this environment's
editable qgov are not read, so `governance` can only come from the wheel), and `pip check` says
the wheel's requirements are met there. QGOV_WHEEL_TEST_FROM_PYPI=1 installs `qgov[dev]` with
its dependencies from PyPI instead (minutes, ~500 MB).
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "governance", "executor", "qgov_dev", "migrations", "crds", "samples")
# package data: each a link in the source tree to the repository's own directory, the one copy
DATA = {"governance/migrations": "migrations", "qgov_dev/crds": "crds", "qgov_dev/samples": "samples"}

pytestmark = pytest.mark.slow


def run(*cmd: str | Path, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, f"{cmd}: exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    started = time.monotonic()
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", out, src, cwd=src)
    print(f"wheel built in {time.monotonic() - started:.1f} s")
    (built,) = out.glob("qgov-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", root)
    python = root / "bin" / "python"
    if os.environ.get("QGOV_WHEEL_TEST_FROM_PYPI") == "1":
        run(python, "-m", "pip", "install", "-q", f"{wheel}[dev]", timeout=1800)
    else:
        purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
        (purelib / "qgov-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        run(python, "-m", "pip", "install", "-q", "--no-deps", f"{wheel}[dev]")
    run(python, "-m", "pip", "check")
    return root


def clean_env(venv: Path) -> dict[str, str]:
    """A user's shell: no PYTHONPATH to the repository, the venv's bin first, kubectl findable."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "KUBECONFIG")}
    kubectl = shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")
    env["PATH"] = os.pathsep.join([str(venv / "bin"), str(Path(kubectl).parent), env.get("PATH", "")])
    return env


def test_the_wheel_holds_the_product_the_dev_tools_and_their_data_and_no_tests(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        tops = {n.split("/")[0] for n in names}
        assert tops == {"governance", "executor", "qgov_dev", "qgov-0.1.0.dist-info"}, tops
        assert not [n for n in names if "__pycache__" in n or "/tests/" in n or n.startswith(("tests/", "bench/"))]
        # the runtime package carries no dev tools
        assert not [n for n in names if n.startswith(("governance/devcluster/", "governance/testing/"))]
        assert "qgov_dev/devcluster/devmain.py" in names and "qgov_dev/testing/pgserver.py" in names
        # package data: every file of the repository's crds/, samples/, migrations/, byte for byte
        for inside, repo in DATA.items():
            files = sorted(p for p in (ROOT / repo).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            assert files, repo
            for path in files:
                member = f"{inside}/{path.relative_to(ROOT / repo).as_posix()}"
                assert archive.read(member) == path.read_bytes(), member
        metadata = email.message_from_bytes(archive.read("qgov-0.1.0.dist-info/METADATA"))
        entry_points = archive.read("qgov-0.1.0.dist-info/entry_points.txt").decode()
        # Apache-2.0, said in the metadata and carried in full (PEP 639)
        assert archive.read("qgov-0.1.0.dist-info/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["Version"] == __import__("governance").__version__
    assert {"dev", "executor", "test"} <= set(metadata.get_all("Provides-Extra"))
    requires = metadata.get_all("Requires-Dist")
    # PyYAML comes with qgov itself (`kubectl qgov estimate -f` reads manifests), and the wheel installs
    # that command; kopf and SQLAlchemy are the operator's, not the executor's
    assert [r for r in requires if r.lower().startswith("pyyaml")] == ["PyYAML>=6"]
    assert "kubectl-qgov = governance.kubectl:main" in entry_points
    assert not [r for r in requires if r.lower().startswith(("kopf", "sqlalchemy")) and "extra" in r]
    print(f"wheel {wheel.name}: {wheel.stat().st_size / 1024:.0f} KiB, {len(names)} files")


def test_the_installed_wheel_upgrades_a_ledger_from_its_own_migrations(venv: Path, tmp_path: Path) -> None:
    """`qgov operator` upgrades the schema at start with the migrations in the wheel (package data)."""
    env = clean_env(venv)
    where = run(venv / "bin" / "python", "-c", "import governance, qgov_dev; print(governance.__file__); "
                "print(qgov_dev.__file__)", env=env, cwd=tmp_path).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where  # the wheel's code, not the repository's
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgraded = run(venv / "bin" / "qgov", "db", "upgrade", "--database-url", url, env=env, cwd=tmp_path)
    assert upgraded.stdout.strip().endswith("is at " + sorted(
        p.name.split("_")[0] for p in (ROOT / "migrations" / "versions").glob("0*.py"))[-1]), upgraded.stdout
    current = run(venv / "bin" / "qgov", "db", "current", "--database-url", url, env=env, cwd=tmp_path)
    assert current.stdout.startswith("current ") and "run `qgov db upgrade`" not in current.stdout


def test_qgov_dev_demo_runs_from_the_installed_wheel(venv: Path, tmp_path: Path) -> None:
    """What README's first screen promises, from the wheel, in a directory that is not the repository."""
    started = time.monotonic()
    result = run(venv / "bin" / "qgov", "dev", "--demo", "--workdir", tmp_path / "dev", env=clean_env(venv),
                 cwd=tmp_path, timeout=600)
    out = result.stdout
    print(f"qgov dev --demo from the wheel: {time.monotonic() - started:.1f} s")
    assert "No such file" not in out + result.stderr
    # the CRDs were installed and the samples applied, from the package data
    for created in ("namespace/team-a created", "qiskitbudget.qgov.dev/team-a created",
                    "qiskitjob.qgov.dev/bell created", "qiskitsession.qgov.dev/warm-aer created"):
        assert created in out, out
    jobs = out.split("$ kubectl get qiskitjobs -n team-a")[1].split("$ kubectl get qiskitsessions")[0]
    phases = {line.split()[0]: line.split()[1] for line in jobs.strip().splitlines()[1:]}
    assert phases == {"bell": "Succeeded", "bell-40k-shots": "Refused", "bell-free-on-aer": "Succeeded",
                      "ghz-estimator": "Succeeded", "sweep-1": "Succeeded", "sweep-2": "Succeeded"}, jobs
    budgets = out.split("$ kubectl get qiskitbudgets -n team-a")[1].split("$ kubectl describe")[0]
    assert budgets.strip().splitlines()[1].split()[:2] == ["team-a", "10.00"], budgets
    assert "JobRefused" in out and "exceeded budget team-a/team-a" in out
