#!/bin/sh
# Set up (idempotent) and run the offline demo: no API key needed, the model
# is rho_actors' embedded scripted server.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
. scripts/python.sh
PY=$(rho_python)
exec "$PY" -m rho_actors demo "$@"
