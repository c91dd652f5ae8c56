"""A throw-away PostgreSQL server for the tests: initdb, pg_ctl start, pg_ctl stop.

``scripts/install-test-deps.sh`` installs PostgreSQL (Debian's package puts
its programs in ``/usr/lib/postgresql/<version>/bin``). The server runs as an
unprivileged user (``initdb`` refuses to run as root: as root, the
``postgres`` user the package creates, else ``nobody``), from a temporary
data directory, on a free loopback port, with trust authentication on
loopback only. ``RHO_ACTORS_TEST_POSTGRES`` names an existing server instead
(a ``postgresql://`` URL whose user may create databases).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

ENV = "RHO_ACTORS_TEST_POSTGRES"


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unavailable_reason() -> str | None:
    if os.environ.get(ENV):
        return None
    for name in ("initdb", "pg_ctl"):
        if _binary(name) is None:
            return (
                f"PostgreSQL's {name} is not installed (scripts/install-test-deps.sh installs it)"
            )
    return None


@contextmanager
def postgres_server() -> Iterator[str]:
    """A running server's admin URL (database ``postgres``); stopped on exit."""
    existing = os.environ.get(ENV)
    if existing:
        yield existing
        return
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    assert initdb is not None and pg_ctl is not None
    run_as: list[str] = []
    owner = None
    if os.geteuid() == 0:
        user = "postgres"
        try:
            owner = pwd.getpwnam(user)
        except KeyError:
            user, owner = "nobody", pwd.getpwnam("nobody")
        run_as = ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--clear-groups"]
    base = tempfile.mkdtemp(prefix="rho-actors-pg-")
    data = os.path.join(base, "data")
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    env = {**os.environ, "LC_ALL": "C"}
    subprocess.run(
        [*run_as, initdb, "-D", data, "-U", "rho", "-A", "trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
        env=env,
        cwd=base,
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    log = os.path.join(base, "server.log")
    started = subprocess.run(
        [*run_as, pg_ctl, "-D", data, "-o", options, "-l", log, "-w", "-t", "60", "start"],
        capture_output=True,
        env=env,
        cwd=base,
    )
    if started.returncode != 0:
        detail = started.stderr.decode()
        if os.path.exists(log):
            with open(log, encoding="utf-8", errors="replace") as f:
                detail = f.read()[-2000:]
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"pg_ctl start failed: {detail}")
    try:
        yield f"postgresql://rho@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run_as, pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"],
            capture_output=True,
            env=env,
            cwd=base,
        )
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(admin_url: str) -> str:
    """A new empty database on the server; its URL."""
    import psycopg

    name = f"rho_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"
