#!/bin/sh
# Install the system tools the test suite exercises for real:
#   bubblewrap (bwrap)  the shell tool's OS sandbox
#   ripgrep (rg)        the grep tool's fast path (a Python fallback is tested too)
#   postgresql          the PostgreSQL store's tests start a throw-away server
#                       (tests/pg_server.py: initdb + pg_ctl, as an unprivileged user)
#
# Idempotent and quiet: installs only what is missing, never prompts, and
# exits 0 when it cannot install (no apt-get, not root): the tests that need
# these tools skip themselves when the tools are absent.
set -u

missing=""
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
command -v rg >/dev/null 2>&1 || missing="$missing ripgrep"
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    missing="$missing postgresql"
fi

if [ -z "$missing" ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: apt-get not available; not installing:$missing" >&2
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-test-deps: not root and no passwordless sudo; not installing:$missing" >&2
        exit 0
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086  # $missing is a list of package names
if ! $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1; then
    # The package lists may be missing or stale on a fresh machine.
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
    $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1 ||
        echo "install-test-deps: could not install:$missing" >&2
fi
exit 0
