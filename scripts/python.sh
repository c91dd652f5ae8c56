#!/bin/sh
# Print the Python the project runs with, creating the project's virtual
# environment first when needed. Sourced by the other scripts, never run alone.
#
# An active virtual environment ($VIRTUAL_ENV) is used as it is; $PYTHON
# names an interpreter to use as it is. Otherwise the project's own `.venv`
# is created (once) and used: system Pythons refuse `pip install` outside a
# virtual environment (PEP 668, "externally-managed-environment").
rho_python() {
    if [ -n "${PYTHON:-}" ]; then
        echo "$PYTHON"
        return
    fi
    if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
        echo "$VIRTUAL_ENV/bin/python"
        return
    fi
    if [ ! -x .venv/bin/python ]; then
        echo "setup: creating the project's virtual environment in .venv" >&2
        if ! python3 -m venv .venv >/dev/null 2>&1; then
            # Debian and Ubuntu ship venv separately; install it if we may.
            if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
                echo "setup: installing python3-venv (apt-get)" >&2
                apt-get update -qq >/dev/null 2>&1 || true
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null 2>&1 || true
            fi
            rm -rf .venv
            python3 -m venv .venv >&2 || {
                echo "setup: cannot create .venv; install python3-venv (Debian/Ubuntu) or set PYTHON" >&2
                exit 1
            }
        fi
    fi
    echo ".venv/bin/python"
}
