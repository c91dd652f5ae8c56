#!/bin/sh
# Set up (idempotent) and run the whole test suite.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
. scripts/python.sh
PY=$(rho_python)
exec "$PY" -m pytest -q "$@"
