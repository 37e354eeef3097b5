#!/usr/bin/env bash
# Set up, then run the whole test suite: on the emulator and on a real Kubernetes control plane
# (etcd, kube-apiserver, controller-manager, scheduler, plus helm and promtool for the chart and
# alert-rule tests, built from the Go module proxy by
# scripts/kube-binaries.sh and cached under ~/.cache/qgov/kube: ~15-20 min the first time on
# 2 cores, nothing after). The suite starts its own PostgreSQL and clusters on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "test: upstream Kubernetes, etcd, helm and promtool (built once, then cached)" >&2
QGOV_KUBE_BIN_DIRS=$(bash scripts/kube-binaries.sh kubernetes etcd helm promtool)
echo "test: using $QGOV_KUBE_BIN_DIRS" >&2
exec .venv/bin/python -m pytest -q "$@"
