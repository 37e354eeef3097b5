#!/usr/bin/env bash
# Build ghcr.io/qgov/operator:0.1.0 and ghcr.io/qgov/executor:0.1.0 into OCI archives without a
# Docker daemon (mmdebstrap + pip from the hashed locks; qgov_dev/images.py says how), reproducibly.
# Usage: scripts/build-images.sh [--out DIR] [--no-cache]    (default out: dist/images)
# Load one with:  skopeo copy oci-archive:dist/images/operator.tar docker-daemon:ghcr.io/qgov/operator:0.1.0
#            or:  docker load -i dist/images/operator.tar
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=${PYTHON:-python3}
exec "$PY" -m qgov_dev.images build "$@"
