#!/bin/sh
# The README's first-hour path on a clean clone: a fresh HOME, no API key, no
# virtual environment active, exactly the README's two commands, then the
# CLI offline. Not part of the suite (it installs everything anew, a minute
# or two); run it before a release:  sh scripts/check-fresh-setup.sh
set -eu
repo="$(cd "$(dirname "$0")/.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
git clone --quiet "$repo" "$scratch/clone"
cd "$scratch/clone"
mkdir "$scratch/home" "$scratch/work"
echo "notes: deploys happen on Tuesdays" > "$scratch/work/notes.txt"
run() {
    echo "\$ $*"
    env -i PATH="$PATH" HOME="$scratch/home" LANG=C.UTF-8 "$@"
}
run sh scripts/demo.sh | tail -3
run .venv/bin/rho-actors run "what is in this folder?" --working-dir "$scratch/work" | tail -3
run .venv/bin/rho-actors sessions list | tail -4
run sh scripts/test.sh -x -q tests/test_examples.py | tail -2
echo "fresh setup: ok"
