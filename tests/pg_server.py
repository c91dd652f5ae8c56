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


_INITDB_FLAGS = ("-E", "UTF8", "--no-sync")
_START_FLAGS = ("-w", "-t", "60", "start")


class PgServer:
    """One throw-away server: ``start()``, ``stop()`` (and start again), ``remove()``."""

    def __init__(self) -> None:
        initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
        assert initdb is not None and pg_ctl is not None
        self.pg_ctl = pg_ctl
        self.run_as: list[str] = []
        owner = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                owner = pwd.getpwnam("nobody")
            self.run_as = [
                "setpriv",
                f"--reuid={owner.pw_uid}",
                f"--regid={owner.pw_gid}",
                "--clear-groups",
            ]
        self.base = tempfile.mkdtemp(prefix="rho-actors-pg-")
        self.data = os.path.join(self.base, "data")
        if owner is not None:
            os.chown(self.base, owner.pw_uid, owner.pw_gid)
        self.port = _free_port()
        self.env = {**os.environ, "LC_ALL": "C"}
        subprocess.run(
            [
                *self.run_as,
                initdb,
                "-D",
                self.data,
                "-U",
                "rho",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            env=self.env,
            cwd=self.base,
        )
        self.url = f"postgresql://rho@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = os.path.join(self.base, "server.log")
        started = subprocess.run(
            [
                *self.run_as,
                self.pg_ctl,
                "-D",
                self.data,
                "-o",
                options,
                "-l",
                log,
                "-w",
                "-t",
                "60",
                "start",
            ],
            capture_output=True,
            env=self.env,
            cwd=self.base,
        )
        if started.returncode != 0:
            detail = started.stderr.decode()
            if os.path.exists(log):
                with open(log, encoding="utf-8", errors="replace") as f:
                    detail = f.read()[-2000:]
            raise RuntimeError(f"pg_ctl start failed: {detail}")

    def stop(self) -> None:
        subprocess.run(
            [*self.run_as, self.pg_ctl, "-D", self.data, "-m", "immediate", "-w", "stop"],
            capture_output=True,
            env=self.env,
            cwd=self.base,
        )

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """A running server's admin URL (database ``postgres``); stopped on exit."""
    existing = os.environ.get(ENV)
    if existing:
        yield existing
        return
    server = PgServer()
    try:
        server.start()
        yield server.url
    finally:
        server.remove()


def fresh_database(admin_url: str) -> str:
    """A new empty database on the server; its URL."""
    import psycopg

    name = f"rho_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"
