#!/usr/bin/env bash
# The main job: set up, then run the qgov demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/qgov demo "$@"
