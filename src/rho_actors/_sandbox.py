"""Running shell commands inside a bubblewrap sandbox.

Parsing a command can only ever approximate what it will do; the kernel
knows. Under bubblewrap (``bwrap``) the whole file system is mounted
read-only, the working directory is writable only when the profile allows
file writes, ``/tmp`` is a private tmpfs, and the network is unshared when
the profile has no network. A ``readonly`` profile then holds even against a
command that slips past the parser.

Why bubblewrap rather than Landlock or seccomp alone: a read-only view of
the file system, a private network and a private PID namespace are three
namespaces, which bubblewrap sets up in one well-audited step, and it is
what other Linux agent sandboxes build on. Landlock could confine writes
without namespaces, but it has no answer for process visibility and only
covers TCP; seccomp filters syscalls, not paths. Without bubblewrap a
profile whose ``sandbox`` is ``"required"`` refuses to run commands.

The command runs with every capability dropped (``--cap-drop ALL``), so
even an agent process running as root cannot remount its working directory
writable, and, where the kernel allows unprivileged user namespaces, as an
unprivileged user of a fresh user namespace that may not create another
(``--disable-userns``). Processes run in their own PID namespace
(``--unshare-pid``), so killing the sandbox's process group tears down
everything inside it: the namespace's init dies with its parent
(``--die-with-parent``) and takes every descendant with it, even those that
left the process group. ``--new-session`` keeps a sandboxed process from
pushing keystrokes into a terminal (TIOCSTI).

The number of processes is bounded by the kernel twice over: an
``RLIMIT_NPROC`` set inside the sandbox (``prlimit``), which holds for
every user but root, and, where a ``pids`` cgroup can be created (root, or
a delegated cgroup), a cgroup per command with ``pids.max``. A fork bomb
then fails to fork instead of filling the machine's process table.

bubblewrap may be installed and still not work, typically in containers
without unprivileged user namespaces, so availability is decided by a real
trial run, once per process.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import attrs
import trio

__all__ = ["SandboxProbe", "bwrap_available", "probe_bwrap", "sandboxed", "wrap_command"]

logger = logging.getLogger("rho_actors.sandbox")

# Long enough for a cold start on a loaded machine; a working bwrap takes ~10 ms.
_PROBE_TIMEOUT = 10.0
# The unprivileged user a sandboxed command runs as inside its user namespace.
_NOBODY = 65534
_CGROUP_PREFIX = "rho-actors-"


@attrs.frozen(slots=True)
class SandboxProbe:
    """Whether bubblewrap works here, and if not, why not (for error messages)."""

    available: bool
    reason: str
    executable: str | None = None
    user_namespace: bool = False
    """Whether commands run as ``nobody`` in their own user namespace."""
    prlimit: str | None = None
    """The ``prlimit`` executable that sets ``RLIMIT_NPROC`` inside the sandbox."""
    pids_cgroup: str | None = None
    """A directory under which a ``pids`` cgroup per command can be made."""


_probe: SandboxProbe | None = None


async def probe_bwrap() -> SandboxProbe:
    """Find ``bwrap`` and try it for real; the answer is cached for the process."""
    global _probe
    if _probe is not None:
        return _probe
    result = await _run_probe()
    _probe = result
    return result


async def bwrap_available() -> bool:
    """True when commands can be sandboxed with bubblewrap on this machine."""
    return (await probe_bwrap()).available


def _forget_probe() -> None:
    """Drop the cached answer (tests that fake a missing bwrap use this)."""
    global _probe
    _probe = None


async def _run_probe() -> SandboxProbe:
    executable = await trio.to_thread.run_sync(shutil.which, "bwrap")
    if executable is None:
        return SandboxProbe(False, "bwrap (bubblewrap) is not installed")
    working_dir = Path(await trio.to_thread.run_sync(_temp_dir))
    failure = ""
    # The strongest form first; a kernel without unprivileged user namespaces
    # (or a bwrap older than 0.8) still gets every other protection.
    for user_namespace in (True, False):
        argv = wrap_command(
            ["/bin/sh", "-c", "exit 0"],
            working_dir=working_dir,
            writable=False,
            network=False,
            executable=executable,
            user_namespace=user_namespace,
        )
        failure = await _trial(argv)
        if not failure:
            prlimit = await trio.to_thread.run_sync(shutil.which, "prlimit")
            cgroup = await trio.to_thread.run_sync(_find_pids_cgroup)
            return SandboxProbe(True, "bwrap works", executable, user_namespace, prlimit, cgroup)
    return SandboxProbe(False, failure)


async def _trial(argv: list[str]) -> str:
    """'' when ``argv`` runs and exits 0, else why not."""
    with trio.move_on_after(_PROBE_TIMEOUT):
        try:
            completed = await trio.run_process(
                argv,
                check=False,
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                capture_stderr=True,
            )
        except OSError as exc:
            return f"bwrap could not be started: {exc}"
        if completed.returncode == 0:
            return ""
        detail = completed.stderr.decode("utf-8", "replace").strip() or "no message"
        return f"bwrap is installed but failed (exit {completed.returncode}): {detail}"
    return f"bwrap did not finish a trial run within {_PROBE_TIMEOUT:g} s"


def _temp_dir() -> str:
    return os.path.realpath(tempfile.gettempdir())


def wrap_command(
    argv: Sequence[str],
    *,
    working_dir: Path,
    writable: bool,
    network: bool,
    executable: str | None = None,
    user_namespace: bool = True,
    max_processes: int | None = None,
    prlimit: str | None = None,
) -> list[str]:
    """``argv`` wrapped to run under bubblewrap with ``working_dir`` as its cwd.

    ``working_dir`` should be absolute and free of symlinks (resolve it first,
    off the event loop); bubblewrap binds exactly that path. It is bound
    *after* the ``/tmp`` tmpfs so that a working directory under ``/tmp``
    stays visible.
    """
    wd = os.path.abspath(working_dir)
    bind = "--bind" if writable else "--ro-bind"
    wrapped = [
        executable or shutil.which("bwrap") or "bwrap",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
        bind,
        wd,
        wd,
        "--chdir",
        wd,
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--die-with-parent",
        "--new-session",
    ]
    if user_namespace:
        uid = str(_NOBODY)
        wrapped += ["--unshare-user", "--uid", uid, "--gid", uid, "--disable-userns"]
    wrapped += ["--cap-drop", "ALL"]
    if not network:
        wrapped.append("--unshare-net")
    wrapped.append("--")
    if max_processes is not None and prlimit is not None:
        wrapped += [prlimit, f"--nproc={max_processes}:{max_processes}", "--"]
    wrapped.extend(argv)
    return wrapped


@asynccontextmanager
async def sandboxed(
    argv: Sequence[str],
    *,
    probe: SandboxProbe,
    working_dir: Path,
    writable: bool,
    network: bool,
    max_processes: int,
) -> AsyncIterator[list[str]]:
    """The command line that runs ``argv`` in the sandbox, for the block's duration.

    When the probe found a ``pids`` cgroup hierarchy, the block owns a fresh
    cgroup capped at ``max_processes``: the command line first moves itself
    into it, then execs bubblewrap, so no process of the command is ever
    outside it. The cgroup is removed when the block ends (the caller has
    stopped the command by then).
    """
    wrapped = wrap_command(
        argv,
        working_dir=working_dir,
        writable=writable,
        network=network,
        executable=probe.executable,
        user_namespace=probe.user_namespace,
        max_processes=max_processes,
        prlimit=probe.prlimit,
    )
    if probe.pids_cgroup is None:
        yield wrapped
        return
    cgroup = await trio.to_thread.run_sync(_make_cgroup, probe.pids_cgroup, max_processes)
    if cgroup is None:
        yield wrapped
        return
    try:
        # `echo 0` moves the writing shell itself, which then becomes bwrap.
        yield ["/bin/sh", "-c", 'echo 0 > "$0/cgroup.procs" && exec "$@"', cgroup, *wrapped]
    finally:
        with trio.CancelScope(shield=True):
            await _remove_cgroup(cgroup)


_serial = itertools.count()


def _find_pids_cgroup() -> str | None:
    """Where this process may create ``pids`` cgroups, tried for real; else None."""
    for parent in _pids_cgroup_candidates():
        probe = _make_cgroup(parent, 1)
        if probe is not None:
            with suppress(OSError):
                os.rmdir(probe)
            _sweep(parent)
            return parent
    return None


def _pids_cgroup_candidates() -> list[str]:
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    found: list[str] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if controllers == "":  # cgroup v2: pids must be enabled for children
            for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                here = os.path.join(root, rel)
                if "pids" in _read(os.path.join(here, "cgroup.subtree_control")).split():
                    found.append(here)
        elif "pids" in controllers.split(","):
            found.append(os.path.join("/sys/fs/cgroup/pids", rel))
    return found


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def _make_cgroup(parent: str, max_processes: int) -> str | None:
    path = os.path.join(parent, f"{_CGROUP_PREFIX}{os.getpid()}-{next(_serial)}")
    try:
        os.mkdir(path)
    except OSError:
        return None
    try:
        with open(os.path.join(path, "pids.max"), "w", encoding="ascii") as f:
            f.write(str(max_processes))
    except OSError:
        with suppress(OSError):
            os.rmdir(path)
        return None
    return path


async def _remove_cgroup(path: str) -> None:
    # The namespace's processes are killed by now, but the kernel may still
    # be reaping them: a cgroup with members cannot be removed (EBUSY).
    for _ in range(50):
        try:
            await trio.to_thread.run_sync(os.rmdir, path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                break
        await trio.sleep(0.02)
    logger.warning("could not remove the pids cgroup %s; the next start sweeps it", path)


def _sweep(parent: str) -> None:
    """Remove empty cgroups left by processes of ours that are gone."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if not name.startswith(_CGROUP_PREFIX):
            continue
        owner = name[len(_CGROUP_PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
            with suppress(OSError):
                os.rmdir(os.path.join(parent, name))
