"""The Python footprint of a dependency set: what `pip install` of it puts into a clean venv.

    python bench/footprint.py [executor|dependencies|dev ...]

Resolves the requirement lines of pyproject.toml (`dependencies`, or an extra) through the
distributions installed in this interpreter's environment (their Requires-Dist, extras followed)
and sums the installed files of each (their RECORD), so it measures offline what a clean venv
would hold with the same versions. No Docker engine is needed: the executor image's Python layer
is `pip install` of the `executor` extra plus qgov's own files (executor/Dockerfile).
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement  # comes with pytest (.[test]), as setup installs

ROOT = Path(__file__).resolve().parents[1]


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(lines: list[str]) -> dict[str, int]:
    """distribution -> bytes on disk, for the requirement lines and everything they require."""
    sizes: dict[str, int] = {}
    todo = [(Requirement(line), frozenset(Requirement(line).extras)) for line in lines]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, extras = todo.pop()
        key = (normal(req.name), extras)
        if key in done:
            continue
        done.add(key)
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            print(f"  (not installed here: {req.name})", file=sys.stderr)
            continue
        if normal(req.name) not in sizes:
            base = Path(str(dist.locate_file("")))
            sizes[normal(req.name)] = sum((base / f).stat().st_size for f in dist.files or []
                                          if (base / f).is_file())
        for line in dist.requires or []:
            sub = Requirement(line)
            # a line without an extra marker always counts; one with `extra == "x"` when x was asked for
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras | {""}):
                todo.append((sub, frozenset(sub.extras)))
    return sizes


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    sets = sys.argv[1:] or ["dependencies", "executor"]
    for name in sets:
        lines = project["dependencies"] if name == "dependencies" else project["optional-dependencies"][name]
        if name != "executor" and name != "dependencies":  # an extra adds to the dependencies
            lines = project["dependencies"] + lines
        sizes = closure(lines)
        total = sum(sizes.values())
        biggest = ", ".join(f"{d} {s / 1e6:.0f}" for d, s in sorted(sizes.items(), key=lambda x: -x[1])[:6])
        print(f"{name}: {len(sizes)} distributions, {total / 1e6:.0f} MB (largest, MB: {biggest})")


if __name__ == "__main__":
    main()
