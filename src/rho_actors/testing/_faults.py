"""Fault injection: full disks and short writes for the store, crashes for actors.

:class:`DiskFaults` is a drop-in for ``os.write`` that a
:class:`~rho_actors.DirectoryBackend` writes through (its documented ``write``
argument), so a test sees exactly what a user would on a full disk::

    faults = DiskFaults()
    store = SessionStore(backend=DirectoryBackend(root, write=faults))
    ...
    faults.fill()          # the next write stops part way with ENOSPC
    faults.free()          # space again
"""

from __future__ import annotations

import errno
import os

import trio

from .._session import Session

__all__ = ["DiskFaults", "crash_next_run"]


class DiskFaults:
    """``os.write`` with a disk that can fill up and writes that can come up short.

    * ``fill(after=n)``: later writes succeed for ``n`` more bytes in all, then
      the write in progress stops part way and every write fails with
      ``ENOSPC`` until :meth:`free`.
    * ``max_chunk``: every write writes at most this many bytes (a short
      write, as a pipe or a signal can cause); callers must continue.
    """

    def __init__(self, *, max_chunk: int | None = None) -> None:
        self.max_chunk = max_chunk
        self._room: int | None = None
        self.failures = 0

    def fill(self, after: int = 0) -> None:
        """Let ``after`` more bytes through, then report the disk full."""
        self._room = after

    def free(self) -> None:
        self._room = None

    def __call__(self, fd: int, data: memoryview | bytes) -> int:
        size = len(data)
        if self.max_chunk is not None:
            size = min(size, self.max_chunk)
        if self._room is not None:
            if self._room == 0:
                self.failures += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            size = min(size, self._room)
        written = os.write(fd, data[:size])
        if self._room is not None:
            self._room -= written
        return written


def crash_next_run(
    session: Session, error: BaseException, *, after: trio.Event | None = None
) -> None:
    """Make the session actor crash on its next run, as a bug in its machinery would.

    The run's caller gets ``ActorCrashed``; the supervisor restarts the
    session per its spec (or gives up). With ``after``, the crash waits for
    that event first (so a test can queue more prompts behind it). Model
    and tool errors are not crashes: they end runs with ``status="error"``.
    """
    session._fault = (error, after)
