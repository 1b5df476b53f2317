#!/usr/bin/env bash
# The main job: install what is missing, then run the qcloop demo on this machine.
# Extra arguments go to `qc demo` (try: ./demo.sh --help).
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh
exec .venv/bin/qc demo "$@"
