"""The daemonless image build (qgov_dev.images): reproducible, the right config, images that run.

A cold build takes a few minutes (mmdebstrap, pip from the locks); layers are cached in
~/.cache/qgov/images, and one test rebuilds every layer to compare digests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from qgov_dev import images

pytestmark = pytest.mark.slow

TOOLS = ("mmdebstrap", "skopeo")
missing = [t for t in TOOLS if shutil.which(t) is None]
needs_tools = pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)} (apt-get "
                                 "install mmdebstrap skopeo; scripts/setup.sh does as root)")
ROOT_TOOLS = ("unshare", "chroot", "mount")
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or any(shutil.which(t) is None for t in ROOT_TOOLS),
    reason="running an image's rootfs needs root (unshare, mount, chroot)")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return images.build(tmp_path_factory.mktemp("images"))


@needs_tools
def test_rebuilding_every_layer_gives_the_same_digests(
        built: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    again = images.build(tmp_path / "again", use_cache=False)
    base = lambda result: result["operator"]["layers"][0]  # noqa: E731  (the same in both images)
    if base(again).packages != base(built).packages:
        # Debian's mirror published a package between the builds: a new input, so a new base layer.
        # Built from the same packages twice, it is the same.
        assert base(again).digest != base(built).digest
        built, again = again, images.build(tmp_path / "third", use_cache=False)
        assert base(again).packages == base(built).packages, "the mirror moved twice in minutes"
    for name in again:
        for first, second, what in zip(built[name]["layers"], again[name]["layers"], ("base", "deps", "app"), strict=True):
            assert first.digest == second.digest, (f"{name}: the {what} layer differs", images.differences(
                first.path, second.path))
    assert {n: r["digest"] for n, r in again.items()} == {n: r["digest"] for n, r in built.items()}
    for name in again:
        assert Path(str(again[name]["archive"])).read_bytes() == \
            Path(str(built[name]["archive"])).read_bytes()


def _skopeo(transport: str, archive: object, *args: str) -> dict[str, object]:
    out = subprocess.run(["skopeo", "inspect", *args, f"{transport}:{archive}"], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@needs_tools
@pytest.mark.parametrize("name,entrypoint", [
    ("operator", ["qgov", "operator", "--liveness", "http://0.0.0.0:8080/healthz"]),
    ("executor", ["python", "-m", "executor"]),
])
def test_skopeo_reads_the_archive_with_the_dockerfiles_config(
        built: dict[str, dict[str, object]], name: str, entrypoint: list[str]) -> None:
    archive = built[name]["archive"]
    config = _skopeo("oci-archive", archive, "--config")["config"]
    assert isinstance(config, dict)
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == entrypoint
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["PATH"].startswith("/opt/qgov/bin:")
    assert env["PYTHONUNBUFFERED"] == "1" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    if name == "operator":
        assert set(config["ExposedPorts"]) == {"8080/tcp", "9090/tcp"}
    # what `docker load` reads: manifest.json names the image by its chart reference
    # (skopeo lists its layers by their uncompressed digests: the config's diff_ids)
    docker = _skopeo("docker-archive", archive)
    diff_ids = _skopeo("oci-archive", archive, "--config")["rootfs"]["diff_ids"]  # type: ignore[index]
    assert docker["Layers"] == diff_ids and len(diff_ids) == 3
    assert docker["Env"] == config["Env"]


def _run_in_rootfs(rootfs: Path, config: dict[str, object], script: str) -> str:
    """script under sh in the unpacked image as its user, with its env, /proc and /dev."""
    cfg = config["config"]
    assert isinstance(cfg, dict)
    env = ["/usr/bin/env", "-i", *cfg["Env"], "HOME=/nonexistent"]
    inner = " ".join(f"'{a}'" for a in env) + f" sh -c 'cd {cfg['WorkingDir']} && {script}'"
    out = subprocess.run(
        ["unshare", "--mount", "--pid", "--fork", f"--mount-proc={rootfs}/proc", "sh", "-c",
         f'mount --rbind /dev "$0/dev" && exec chroot --userspec={cfg["User"]} "$0" {inner}',
         str(rootfs)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout


BELL = ("from qiskit import QuantumCircuit; from qiskit_aer import AerSimulator; import executor.attempt;"
        "qc = QuantumCircuit(2); qc.h(0); qc.cx(0, 1); qc.measure_all();"
        "c = AerSimulator().run(qc, shots=100, seed_simulator=7).result().get_counts();"
        "print(sorted(c), sum(c.values()))")


@needs_tools
@needs_root
def test_the_executor_image_runs_a_bell_job(built: dict[str, dict[str, object]],
                                            tmp_path: Path) -> None:
    config = images.unpack(Path(str(built["executor"]["archive"])), tmp_path)
    out = _run_in_rootfs(tmp_path, config, f'id -u; python -c "{BELL}"; python -m executor --help')
    lines = out.splitlines()
    assert lines[0] == "10001"
    assert lines[1] == "['00', '11'] 100"
    assert "--namespace" in out


@needs_tools
@needs_root
def test_the_operator_image_runs_qgov(built: dict[str, dict[str, object]],
                                      tmp_path: Path) -> None:
    config = images.unpack(Path(str(built["operator"]["archive"])), tmp_path)
    out = _run_in_rootfs(tmp_path, config, "qgov --help && qgov operator --help && "
                         'python -c "import kopf, sqlalchemy, alembic, governance; print(42)"')
    assert "operator" in out and "--liveness" in out
    assert out.splitlines()[-1] == "42"


def _staged(root: Path, python: str) -> Path:
    """A prefix as `pip install --prefix --root` leaves it: a console script whose shebang names the
    building python, recorded in its wheel's RECORD with that content's hash."""
    import base64
    import hashlib

    prefix = root / images.PREFIX.lstrip("/")
    site = prefix / "lib/python3.11/site-packages"
    (site / "idna-3.20.dist-info").mkdir(parents=True)
    (site / "idna").mkdir()
    (site / "idna/__init__.py").write_text("VERSION = 1\n")
    script = f"#!{python}\nimport sys\nfrom idna.cli import main\nsys.exit(main())\n".encode()
    (prefix / "bin").mkdir()
    (prefix / "bin/idna").write_bytes(script)
    digest = base64.urlsafe_b64encode(hashlib.sha256(script).digest()).rstrip(b"=").decode()
    (site / "idna-3.20.dist-info/RECORD").write_text(
        f"../../../bin/idna,sha256={digest},{len(script)}\nidna/__init__.py,,\nidna-3.20.dist-info/RECORD,,\n")
    return site


def test_a_layer_keeps_nothing_of_where_the_builder_s_python_lives(tmp_path: Path) -> None:
    """Two builders whose pythons live at different paths (a checkout's venv, CI's) make the same
    prefix: console scripts point at the image's python, and their RECORD lines hash what is there
    (pip's own check of an installed wheel would otherwise fail)."""
    import base64
    import hashlib

    made = []
    for n, python in enumerate(("/work/main/.venv/bin/python", "/tmp/ci1/.venv/bin/python")):
        stage = tmp_path / str(n)
        site = _staged(stage, python)
        images._finish_prefix(stage)
        script = (stage / images.PREFIX.lstrip("/") / "bin/idna").read_bytes()
        assert script.startswith(f"#!{images.PREFIX}/bin/python\n".encode())
        record = (site / "idna-3.20.dist-info/RECORD").read_text()
        digest = base64.urlsafe_b64encode(hashlib.sha256(script).digest()).rstrip(b"=").decode()
        assert record.splitlines()[0] == f"../../../bin/idna,sha256={digest},{len(script)}"
        made.append((script, record))
    assert made[0] == made[1]
