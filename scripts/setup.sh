#!/bin/sh
# Install rho_actors with its development tools, plus the system tools the
# tests exercise (bubblewrap, ripgrep, PostgreSQL), into the project's
# virtual environment (.venv, made here; see scripts/python.sh).
# Idempotent: re-running it installs again only when pyproject.toml changed.
set -eu
cd "$(dirname "$0")/.."
. scripts/python.sh
PY=$(rho_python)
STAMP="$(dirname "$PY")/../.rho-actors-setup"
WANT=$(cksum pyproject.toml | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && "$PY" -c "import rho_actors" 2>/dev/null; then
    echo "setup: rho-actors and its development tools are installed ($PY)"
else
    echo "setup: installing rho-actors and its development tools into $PY (a minute or two the first time)"
    "$PY" -m pip install --disable-pip-version-check --quiet --upgrade pip || true
    "$PY" -m pip install --disable-pip-version-check --progress-bar on -e '.[dev]'
    echo "$WANT" > "$STAMP"
fi
sh scripts/install-test-deps.sh
