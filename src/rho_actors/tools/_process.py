"""Running a child process as a group that can always be stopped.

A shell command is rarely one process: ``make`` spawns compilers, ``cmd &``
leaves background jobs, pipelines are several processes at once. Each call
runs in a new session (``start_new_session=True``), so all of them share one
process group, and stopping the call means stopping the group: SIGTERM,
a short grace period, then SIGKILL, and the leader is reaped. This happens
when the command ends (leftover background jobs are not allowed to outlive
the call), when it times out, and when the caller is cancelled.

Liveness is read from ``/proc`` where it exists, ignoring zombies: in
containers whose PID 1 does not reap orphans, a dead background job stays a
zombie in the group forever and must not hold the kill sequence up.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs
import trio

from .._secrets import environment_without_secrets
from ._common import truncate_middle, truncated_join

__all__ = ["HeadCapture", "MiddleCapture", "ProcessResult", "run_process_group"]

# How long leftover processes get between SIGTERM and SIGKILL.
DEFAULT_GRACE = 2.0
# SIGTERM to SIGKILL when the call was cancelled rather than timed out.
_CANCEL_GRACE = 0.05
# After the command exits, how long to wait for output still in flight.
_DRAIN_TIMEOUT = 1.0
_POLL_INTERVAL = 0.02
_CONTINUATION_BYTES = bytes(range(0x80, 0xC0))


def _count_chars(data: bytes | bytearray) -> int:
    """Characters in UTF-8 ``data``: every byte that is not a continuation byte."""
    return len(bytes(data).translate(None, _CONTINUATION_BYTES))


class MiddleCapture:
    """Keeps the first and last ``limit`` characters of a stream, in bounded memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._cap = limit * 4  # enough bytes for `limit` characters of any UTF-8
        self._head = bytearray()
        self._tail = bytearray()
        self._skipped_chars = 0

    def feed(self, data: bytes | bytearray) -> None:
        room = self._cap - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        self._tail += data
        excess = len(self._tail) - self._cap
        if excess > 0:
            self._skipped_chars += _count_chars(self._tail[:excess])
            del self._tail[:excess]

    def text(self) -> tuple[str, int]:
        """The kept text (head and tail joined) and the count of characters dropped."""
        if not self._skipped_chars:
            full = bytes(self._head + self._tail).decode("utf-8", "replace")
            return truncate_middle(full, self.limit), max(0, len(full) - self.limit)
        tail = self._tail
        while tail and 0x80 <= tail[0] < 0xC0:  # starts mid-character
            del tail[0]
        head_text = bytes(self._head).decode("utf-8", "replace")
        tail_text = bytes(tail).decode("utf-8", "replace")
        keep_head = self.limit // 2
        keep_tail = self.limit - keep_head
        omitted = (
            max(0, len(head_text) - keep_head)
            + self._skipped_chars
            + max(0, len(tail_text) - keep_tail)
        )
        return (
            truncated_join(head_text[:keep_head], omitted, tail_text[len(tail_text) - keep_tail :]),
            omitted,
        )


class HeadCapture:
    """Keeps the first ``limit`` bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.overflow = 0

    def feed(self, data: bytes | bytearray) -> None:
        room = self.limit - len(self.data)
        if room > 0:
            self.data += data[:room]
        self.overflow += max(0, len(data) - max(room, 0))


Capture = MiddleCapture | HeadCapture


@attrs.frozen(slots=True)
class ProcessResult:
    """How a process group ended. ``returncode`` is negative for a signal."""

    returncode: int
    timed_out: bool


DUMPABLE_ENV = "RHO_ACTORS_DUMPABLE"
_PR_SET_DUMPABLE = 4
_guarded = False


def guard_process_secrets() -> None:
    """Make this process non-dumpable before the first tool child runs (Linux).

    A tool's command runs as a child of the agent process, and without a
    sandbox it could read ``/proc/<agent pid>/environ`` (or ``ps axeww``),
    which holds the environment the agent started with: its API key. A
    non-dumpable process's ``/proc`` entries belong to root, so a child
    running as the same non-root user cannot read them. Side effects: no
    core dumps, and debuggers of the same user cannot attach; set
    ``RHO_ACTORS_DUMPABLE=1`` to keep the process dumpable (for py-spy, say).
    Root can always read them: that is what the sandbox is for.
    """
    global _guarded
    if _guarded:
        return
    _guarded = True
    if sys.platform != "linux" or os.environ.get(DUMPABLE_ENV) == "1":
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


async def run_process_group(
    argv: Sequence[str],
    *,
    cwd: Path,
    time_limit: float,
    stdout: Capture,
    stderr: Capture | None = None,
    env: Mapping[str, str] | None = None,
    grace: float = DEFAULT_GRACE,
    pass_fds: Sequence[int] = (),
) -> ProcessResult:
    """Run ``argv`` in its own process group; output goes to the captures.

    With ``stderr=None`` the two streams are merged, in the order written.
    Without ``env`` the child gets this process's environment minus anything
    that looks secret (API keys, tokens, passwords).
    Whatever happens (exit, timeout, cancellation), no process of the group
    is left running when this returns or raises.
    """
    guard_process_secrets()
    process = await trio.lowlevel.open_process(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if stderr is None else subprocess.PIPE,
        cwd=str(cwd),
        env=dict(env) if env is not None else environment_without_secrets(),
        start_new_session=True,
        pass_fds=tuple(pass_fds),
    )
    pgid = process.pid  # a new session's leader leads its process group too
    streams_done = trio.Event()
    try:
        with trio.move_on_after(time_limit) as deadline:
            async with trio.open_nursery() as nursery:

                async def pump_all() -> None:
                    async with trio.open_nursery() as pumps:
                        assert process.stdout is not None
                        pumps.start_soon(_pump, process.stdout, stdout)
                        if stderr is not None:
                            assert process.stderr is not None
                            pumps.start_soon(_pump, process.stderr, stderr)
                    streams_done.set()

                nursery.start_soon(pump_all)
                await process.wait()
                # The command is done; its leftover background jobs are not allowed
                # to outlive it (and would hold the output pipe open).
                await _stop_group(process, pgid, grace)
                with trio.move_on_after(_DRAIN_TIMEOUT):
                    await streams_done.wait()
                nursery.cancel_scope.cancel(reason="process group finished")
        timed_out = deadline.cancelled_caught
    finally:
        # Cancelled: nobody will read the output, and the caller must get
        # control back at once, so the group has a moment, not the full grace.
        if trio.current_effective_deadline() == -math.inf:
            grace = min(grace, _CANCEL_GRACE)
        with trio.CancelScope(shield=True):
            await _stop_group(process, pgid, grace)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    await stream.aclose()
    returncode = process.returncode
    assert returncode is not None
    return ProcessResult(returncode=returncode, timed_out=timed_out)


async def _pump(stream: trio.abc.ReceiveStream, capture: Capture) -> None:
    while True:
        try:
            data = await stream.receive_some(65536)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return
        if not data:
            return
        capture.feed(data)


async def _stop_group(process: trio.Process, pgid: int, grace: float) -> None:
    """SIGTERM the group, wait up to ``grace``, SIGKILL what is left, reap the leader."""
    if process.poll() is not None and not await _group_alive(pgid):
        return
    _signal_group(pgid, signal.SIGTERM)
    with trio.move_on_after(grace):
        # Polling: there is no event for "the last process of a group exited".
        while process.poll() is None or await _group_alive(pgid):  # noqa: ASYNC110
            await trio.sleep(_POLL_INTERVAL)
        return
    _signal_group(pgid, signal.SIGKILL)
    # SIGKILL cannot be ignored; this loop ends as soon as the kernel has
    # torn the processes down. The bound only guards against a stuck kernel.
    with trio.move_on_after(5.0):
        # Polling: there is no event for "the last process of a group exited".
        while process.poll() is None or await _group_alive(pgid):  # noqa: ASYNC110
            await trio.sleep(_POLL_INTERVAL)


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass
    except PermissionError:  # pragma: no cover - the group is ours; defensive only
        pass


async def _group_alive(pgid: int) -> bool:
    return await trio.to_thread.run_sync(group_has_live_members, pgid)


def group_has_live_members(pgid: int) -> bool:
    """Whether any non-zombie process belongs to process group ``pgid``."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name (field 2) may contain spaces and parentheses; the
        # fields after its closing parenthesis are: state, ppid, pgrp, ...
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) >= 3 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False
