"""Running shell commands inside a bubblewrap sandbox.

Parsing a command can only ever approximate what it will do; the kernel
knows. Under bubblewrap (``bwrap``) the whole file system is mounted
read-only, the working directory is writable only when the profile allows
file writes, ``/tmp`` is a private tmpfs, and the network is unshared when
the profile has no network. A ``readonly`` profile then holds even against a
command that slips past the parser.

Processes run in their own PID namespace (``--unshare-pid``), so killing the
sandbox's process group tears down everything inside it: the namespace's
init dies with its parent (``--die-with-parent``) and takes every descendant
with it, even those that left the process group. ``--new-session`` keeps a
sandboxed process from pushing keystrokes into a terminal (TIOCSTI).

bubblewrap may be installed and still not work, typically in containers
without unprivileged user namespaces, so availability is decided by a real
trial run, once per process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import attrs
import trio

__all__ = ["SandboxProbe", "bwrap_available", "probe_bwrap", "wrap_command"]

# Long enough for a cold start on a loaded machine; a working bwrap takes ~10 ms.
_PROBE_TIMEOUT = 10.0


@attrs.frozen(slots=True)
class SandboxProbe:
    """Whether bubblewrap works here, and if not, why not (for error messages)."""

    available: bool
    reason: str
    executable: str | None = None


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
    argv = wrap_command(
        ["/bin/sh", "-c", "exit 0"],
        working_dir=Path(await trio.to_thread.run_sync(_temp_dir)),
        writable=False,
        network=False,
        executable=executable,
    )
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
            return SandboxProbe(False, f"bwrap could not be started: {exc}")
        if completed.returncode == 0:
            return SandboxProbe(True, "bwrap works", executable)
        detail = completed.stderr.decode("utf-8", "replace").strip() or "no message"
        return SandboxProbe(
            False, f"bwrap is installed but failed (exit {completed.returncode}): {detail}"
        )
    return SandboxProbe(False, f"bwrap did not finish a trial run within {_PROBE_TIMEOUT:g} s")


def _temp_dir() -> str:
    return os.path.realpath(tempfile.gettempdir())


def wrap_command(
    argv: Sequence[str],
    *,
    working_dir: Path,
    writable: bool,
    network: bool,
    executable: str | None = None,
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
    if not network:
        wrapped.append("--unshare-net")
    wrapped.append("--")
    wrapped.extend(argv)
    return wrapped
