#!/usr/bin/env bash
# The test suite: install what is missing (including Chromium for the UI test), check the code
# (ruff lint everywhere; ruff format on the contracts and the edge; mypy on those and the station),
# then run pytest.
# Extra arguments go to pytest (e.g. ./test.sh -k outbox).
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh --tests
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet qcloop edge
.venv/bin/mypy --no-error-summary
exec .venv/bin/python -m pytest -q "$@"
