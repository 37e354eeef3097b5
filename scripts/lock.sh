#!/usr/bin/env bash
# Regenerate the hashed lock files from pyproject.toml (run after changing a dependency, and
# commit the result; tests/test_dependencies.py fails while pyproject and the locks disagree):
#   requirements.lock           dependencies + the dev and test extras: scripts/setup.sh (CI, developers)
#                               and operator/Dockerfile (which installs only what it needs from it)
#   requirements-executor.lock  the executor extra, pinned to the same versions: executor/Dockerfile
# For CPython 3.11 on Linux x86_64 (the images' and CI's), whatever machine runs this. Every
# package is pinned with its sha256 hashes, so `pip install --require-hashes -r <lock>` installs
# exactly these files or nothing. uv does the resolving, in a throwaway venv (pinned below).
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
tool=$(mktemp -d)
trap 'rm -rf "$tool"' EXIT
python3 -m venv "$tool/venv"
"$tool/venv/bin/python" -m pip install -q "uv==$UV_VERSION"
uv() { "$tool/venv/bin/uv" "$@"; }
target=(--python-version 3.11 --python-platform x86_64-unknown-linux-gnu --generate-hashes --no-header
        --quiet)
uv pip compile pyproject.toml --extra dev --extra test "${target[@]}" -o requirements.lock
# the executor extra, constrained to the versions above (one version of each package in the project)
"$tool/venv/bin/python" - "$tool/executor.in" <<'PY'
import sys, tomllib
extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["executor"]
open(sys.argv[1], "w").write("\n".join(extras) + "\n")
PY
uv pip compile "$tool/executor.in" -c requirements.lock "${target[@]}" -o requirements-executor.lock
sed -i "s#$tool/executor.in#pyproject.toml (executor extra)#" requirements-executor.lock
echo "lock: $(grep -c '==' requirements.lock) packages in requirements.lock, $(grep -c '==' requirements-executor.lock) in requirements-executor.lock"
