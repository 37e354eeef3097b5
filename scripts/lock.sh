#!/usr/bin/env bash
# Regenerate the hashed lock files from pyproject.toml (run after changing a dependency, and
# commit the result; tests/project/test_dependencies.py fails while pyproject and the locks disagree):
#   requirements.lock           dependencies + the dev, test and docs extras (+ setuptools, pip): scripts/setup.sh (CI, developers)
#   requirements-operator.lock  dependencies only, pinned to the same versions: operator/Dockerfile
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
# pyproject's build requirement (setuptools) too: qgov itself is installed with --no-build-isolation,
# so nothing unhashed is fetched to build it
"$tool/venv/bin/python" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' \
  > "$tool/build.in"
echo pip >> "$tool/build.in"  # the installer too: scripts/setup.sh installs it from here first
uv pip compile pyproject.toml "$tool/build.in" --extra dev --extra test --extra docs "${target[@]}" -o requirements.lock
sed -i "s#-r $tool/build.in#pyproject.toml (build-system), scripts/setup.sh (pip)#" requirements.lock
# the images' subsets, constrained to the versions above (one version of each package in the project)
"$tool/venv/bin/python" - "$tool" <<'PY'
import sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
build = tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]
open(f"{sys.argv[1]}/operator.in", "w").write("\n".join(project["dependencies"] + build) + "\n")
open(f"{sys.argv[1]}/executor.in", "w").write("\n".join(project["optional-dependencies"]["executor"] + build) + "\n")
PY
for image in operator executor; do
  uv pip compile "$tool/$image.in" -c requirements.lock "${target[@]}" -o "requirements-$image.lock"
  sed -i "s#-r $tool/$image.in#pyproject.toml ($image image)#; s#-c requirements.lock#requirements.lock#" \
    "requirements-$image.lock"
done
for lock in requirements.lock requirements-operator.lock requirements-executor.lock; do
  echo "lock: $lock: $(grep -c '==' "$lock") packages"
done
