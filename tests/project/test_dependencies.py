"""What qgov imports is what pyproject.toml declares, and the executor imports only its own set.

Every third-party import (at module level or inside a function) of governance/, executor/,
qgov_dev/ and the migrations names a distribution the project declares: governance/, executor/
and migrations/ in `dependencies`, qgov_dev/ in `dependencies` plus the `dev` extra. The executor
image installs the `executor` extra only (executor/Dockerfile), so everything executor/ imports,
and every governance module it reaches, must come from that extra, and loading them must not pull
the operator's kopf, SQLAlchemy or Alembic.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OWN = {"governance", "executor", "qgov_dev"}
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
OPERATOR_ONLY = {"kopf", "sqlalchemy", "alembic"}


def dist_name(requirement: str) -> str:
    """PEP 503 normalised distribution name of a requirement line ("psycopg[binary]>=3.1" -> psycopg)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name, requirement
    return re.sub(r"[-_.]+", "-", name.group(0)).lower()


def declared(*extras: str) -> set[str]:
    lines = list(PROJECT["dependencies"])
    for extra in extras:
        lines += PROJECT["optional-dependencies"][extra]
    return {dist_name(line) for line in lines}


def imports(path: Path) -> list[tuple[str, bool]]:
    """(module, absolute?) for every import statement of a file, at any depth; a relative import is
    resolved against the file's package."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, True) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            if node.level == 0:
                found.append((node.module or "", True))
            else:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                found += [(module, False)] + [(f"{module}.{a.name}", False) for a in node.names]
    return found


def third_party(paths: list[Path]) -> dict[str, set[str]]:
    """Top-level third-party import names -> the files that import them."""
    names: dict[str, set[str]] = {}
    for path in paths:
        for module, absolute in imports(path):
            top = module.split(".")[0]
            if absolute and top not in OWN and top not in sys.stdlib_module_names:
                names.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return names


def undeclared(names: dict[str, set[str]], allowed: set[str]) -> list[str]:
    distributions = packages_distributions()
    problems = []
    for name, files in sorted(names.items()):
        dists = {dist_name(d) for d in distributions.get(name, [])}
        if not dists & allowed:
            problems.append(f"{name} (distribution {sorted(dists) or 'not installed'}), imported by {sorted(files)}")
    return problems


def sources(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def executor_closure() -> list[Path]:
    """executor/'s files and every governance module they reach through imports (at any depth, so
    the imports inside functions too), with the packages' __init__ files Python runs on the way."""
    todo, seen = sources("executor"), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module, _ in imports(path):
            parts = module.split(".")
            if parts[0] not in OWN:
                continue
            for i in range(1, len(parts) + 1):
                found = module_file(".".join(parts[:i]))
                if found is not None and found not in seen:
                    todo.append(found)
    return sorted(seen)


def test_every_imported_package_is_declared() -> None:
    runtime = sources("governance") + sources("executor") + sorted((ROOT / "migrations").rglob("*.py"))
    runtime_names = third_party(runtime)
    dev_names = third_party(sources("qgov_dev"))
    # the scan sees what it must: a sample from each part
    assert {"kopf", "sqlalchemy", "alembic", "qiskit", "kubernetes", "aiohttp"} <= set(runtime_names)
    assert {"yaml", "aiohttp"} <= set(dev_names)
    assert undeclared(runtime_names, declared()) == []
    assert undeclared(dev_names, declared("dev")) == []
    # PyYAML is a runtime dependency since `kubectl qgov estimate -f` reads manifests
    assert "yaml" in runtime_names and "pyyaml" in declared()


def test_the_executor_imports_only_its_extra() -> None:
    closure = executor_closure()
    names = {str(p.relative_to(ROOT)) for p in closure}
    assert {"executor/__main__.py", "executor/attempt.py", "governance/providers/__init__.py", "governance/api/specs.py",
            "governance/budget/money.py", "governance/budget/__init__.py"} <= names
    assert not any(n.startswith("qgov_dev/") for n in names)
    imported = third_party(closure)
    assert undeclared(imported, declared.__wrapped__("executor") if hasattr(declared, "__wrapped__")
                      else {dist_name(r) for r in PROJECT["optional-dependencies"]["executor"]}) == []
    assert not OPERATOR_ONLY & set(imported), sorted(OPERATOR_ONLY & set(imported))


def test_the_executor_extra_is_a_part_of_the_dependencies() -> None:
    """`pip install qgov` alone runs the executor too: every executor line is a dependency line."""
    assert set(PROJECT["optional-dependencies"]["executor"]) <= set(PROJECT["dependencies"])


def test_loading_the_executor_does_not_load_the_operators_libraries() -> None:
    """Import every module of the executor's import chain (its lazy imports included) in a fresh
    interpreter: kopf, SQLAlchemy and Alembic stay unloaded."""
    modules = [".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
               for p in executor_closure() if p.name != "__main__.py" or p.parent.name == "executor"]
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted({k.split('.')[0] for k in sys.modules})))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=300, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert {"executor", "governance", "qiskit"} <= loaded  # it did import the chain
    assert not OPERATOR_ONLY & loaded, sorted(OPERATOR_ONLY & loaded)


def test_the_runtime_package_does_not_import_the_dev_tools_at_module_level() -> None:
    """governance/ runs without qgov_dev (the images do not carry it): only a function may import it,
    as `qgov dev` does when it runs."""

    def module_level(node: ast.AST) -> list[ast.AST]:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return []
        return [node] + [n for child in ast.iter_child_nodes(node) for n in module_level(child)]

    found, lazy = [], []
    for path in sources("governance"):
        tree = ast.parse(path.read_text(), str(path))
        top = {id(n) for n in module_level(tree)}
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            if any(n.split(".")[0] == "qgov_dev" for n in names):
                (found if id(node) in top else lazy).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []
    assert [where.split(":")[0] for where in lazy] == ["governance/cli.py"]  # `qgov dev`, its one user


# ---------------------------------------------------------------------- the hashed locks (scripts/lock.sh)

LOCKS = {"requirements.lock": ("dependencies", "dev", "test", "docs", "build"),
         "requirements-operator.lock": ("dependencies", "build"),
         "requirements-executor.lock": ("executor", "build")}


def locked(name: str) -> dict[str, tuple[str, list[str]]]:
    """A lock file's pins: distribution -> (version, its sha256 hashes)."""
    pins: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in (ROOT / name).read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9._-]+)==([^\s\\;]+)", line)
        if pin:
            current = dist_name(pin.group(1))
            pins[current] = (pin.group(2), [])
        elif current and (digest := re.search(r"--hash=sha256:([0-9a-f]{64})", line)):
            pins[current][1].append(digest.group(1))
    return pins


def requirements(*parts: str) -> list[str]:
    lines: list[str] = []
    for part in parts:
        if part == "dependencies":
            lines += PROJECT["dependencies"]
        elif part == "build":
            lines += tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
        else:
            lines += PROJECT["optional-dependencies"][part]
    return lines


def test_every_lock_pins_what_pyproject_asks_for_within_its_bounds_with_hashes() -> None:
    from packaging.requirements import Requirement

    for name, parts in LOCKS.items():
        pins = locked(name)
        assert pins, name
        for line in requirements(*parts):
            requirement = Requirement(line)
            dist = dist_name(requirement.name)
            assert dist in pins, f"{name} lacks {dist} ({line}): run scripts/lock.sh"
            assert requirement.specifier.contains(pins[dist][0], prereleases=True), \
                f"{name} pins {dist}=={pins[dist][0]}, pyproject asks {line}: run scripts/lock.sh"
        unhashed = [dist for dist, (_, hashes) in pins.items() if not hashes]
        assert unhashed == [], f"{name}: pinned without a hash: {unhashed}"
    assert not pins_of("requirements-executor.lock") & OPERATOR_ONLY  # the executor image stays lean


def pins_of(name: str) -> set[str]:
    return set(locked(name))


def test_the_image_locks_are_parts_of_the_development_lock_at_the_same_versions() -> None:
    main = locked("requirements.lock")
    for name in ("requirements-operator.lock", "requirements-executor.lock"):
        for dist, (version, _) in locked(name).items():
            assert main.get(dist, ("missing",))[0] == version, f"{name}: {dist}=={version}, requirements.lock differs"
    # kubernetes 37 needs python-dateutil>=3, which ibm-cloud-sdk-core refuses (pyproject's comment)
    assert int(main["kubernetes"][0].split(".")[0]) < 37


def test_ci_and_both_images_install_from_the_locks_and_the_images_base_by_digest() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "pip install -q --require-hashes --no-deps -r requirements.lock" in setup
    assert "pip" in locked("requirements.lock")  # the installer is the locked one too (setup.sh installs it first)
    assert "--no-deps --no-build-isolation -e ." in setup
    for image, lock in (("operator", "requirements-operator.lock"), ("executor", "requirements-executor.lock")):
        dockerfile = (ROOT / image / "Dockerfile").read_text()
        assert f"pip install --require-hashes --no-deps -r {lock}" in dockerfile, image
        assert "pip install --no-deps --no-build-isolation ." in dockerfile, image
        assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim@sha256:[0-9a-f]{64}$", dockerfile, re.M), image
        froms = re.findall(r"^FROM (.+)$", dockerfile, re.M)
        assert froms == ["${PYTHON_IMAGE}"], (image, froms)  # nothing by tag
