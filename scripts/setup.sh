#!/bin/sh
# Install rho_actors with its development tools into the current Python,
# plus the system tools the tests exercise (bubblewrap, ripgrep).
# Idempotent: re-running it only checks that everything is there.
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
sh scripts/install-test-deps.sh
