#!/usr/bin/env bash
# The test suite: install what is missing (including Chromium for the UI test), then run pytest.
# Extra arguments go to pytest (e.g. ./test.sh -k outbox).
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh --tests
exec .venv/bin/python -m pytest -q "$@"
