#!/usr/bin/env bash
# The main job: set up, then start the dev cluster with the operator, run the samples, show kubectl get/describe.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/qgov dev --demo "$@"
