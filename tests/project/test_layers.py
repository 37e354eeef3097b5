"""The layers of the whole package hold (`.importlinter`, checked by import-linter): the adapters
(handlers, webhook, leader, CLI) above the pure cores, the ledger at the bottom, the executor above
the providers and never imported by them, no kopf or Kubernetes client in a pure core; and no
circle of imports anywhere in governance and executor (imports inside functions count)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_import_contracts_are_kept() -> None:
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "4 kept, 0 broken" in out.stdout, out.stdout[-2000:]


def test_no_module_of_governance_or_executor_is_part_of_an_import_circle() -> None:
    import grimp

    graph = grimp.build_graph("governance", "executor", exclude_type_checking_imports=True, cache_dir=None)
    circles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if graph.chain_exists(importer=imported, imported=module):
                circles.append(f"{module} -> {imported} -> ... -> {module}")
    assert circles == [], "\n".join(circles)


def test_governance_and_executor_type_check_strictly() -> None:
    """`mypy --strict` (pyproject's [tool.mypy]) over governance and executor finds nothing; the
    modules not yet strict are listed there and only that list may hold errors."""
    out = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert out.stdout.startswith("Success: no issues found"), out.stdout[-2000:]


def test_ruff_finds_nothing() -> None:
    """ruff's checks ([tool.ruff] in pyproject.toml: pyflakes, pycodestyle, bugbear) pass over the
    whole repository."""
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]


def test_no_module_is_exempt_from_strict_typing() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["strict"] is True
    exempt = [m for o in config.get("overrides", []) if o.get("ignore_errors") for m in o["module"]]
    assert exempt == [], exempt  # every module of governance and executor is checked strictly


def test_benchmarks_and_the_test_bed_never_import_the_test_suite() -> None:
    """bench/ and qgov_dev/ are run on their own (a benchmark against another checkout, the demo):
    what they share with the tests lives in qgov_dev (harness, chaos), never in tests/."""
    import ast

    offenders = []
    for path in sorted([*ROOT.glob("bench/*.py"), *ROOT.glob("qgov_dev/**/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n == "tests" or n.startswith("tests.")]
    assert offenders == []
