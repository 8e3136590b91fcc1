#!/usr/bin/env bash
# Set everything up and run the whole test suite (unit, integration, system) and linters.
# Options go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/mypy
shellcheck scripts/*.sh .ci/run
exec .venv/bin/python -m pytest "$@"
