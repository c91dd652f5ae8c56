#!/bin/sh
# Set up (idempotent) and run the whole test suite.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
exec "${PYTHON:-python3}" -m pytest -q "$@"
