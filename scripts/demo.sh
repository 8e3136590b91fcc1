#!/usr/bin/env bash
# Set everything up and run the demo (Ctrl-C stops it). Options go to scripts/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
