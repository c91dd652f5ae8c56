"""Keeping file tools inside the working directory.

A path is judged by where it *really* leads, not by how it is spelled:
``sub/../../etc`` and a symlink ``link -> /etc`` both leave the working
directory, while ``/abs/path/to/workdir/file`` does not. For a file that does
not exist yet, the existing part of its path is resolved (so a new file under
a symlinked directory is judged by the directory's target), and a dangling
symlink is judged by where it points, since writing through it would create
its target.

The check alone is at the time of the call: a process that swaps a directory
for a symlink between the check and the use could win that race. Tools that
change files therefore open with :func:`open_beneath`, which walks the path
one component at a time from the working directory and follows no symlink,
so a swap makes the open fail instead of leading elsewhere.

The functions here touch the file system (``realpath``); call them from a
worker thread, not the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from ._errors import InvalidToolArguments, ToolDenied

__all__ = ["open_beneath", "open_checked", "resolve_in_workdir"]


def resolve_in_workdir(path: str, working_dir: Path, *, confine: bool) -> Path:
    """The absolute, symlink-free path that ``path`` names, relative to ``working_dir``.

    With ``confine`` the result must be ``working_dir`` itself or inside it,
    else :class:`ToolDenied` says how the path escapes (``..``, an absolute
    path, or a symlink). Empty paths and NUL bytes raise
    :class:`InvalidToolArguments`.
    """
    if not isinstance(path, str) or not path:
        raise InvalidToolArguments("path must be a non-empty string")
    if "\x00" in path:
        raise InvalidToolArguments("path contains a NUL byte")
    root = Path(os.path.realpath(working_dir))
    candidate = Path(path) if os.path.isabs(path) else root / path
    real = Path(os.path.realpath(candidate))
    if not confine or _inside(real, root):
        return real
    lexical = Path(os.path.normpath(candidate))
    if _inside(lexical, root):
        raise ToolDenied(
            f"path {path!r} goes through a symlink that leads outside the working "
            f"directory {root} (to {real})"
        )
    if os.path.isabs(path):
        raise ToolDenied(f"absolute path {path!r} is outside the working directory {root}")
    raise ToolDenied(f"path {path!r} escapes the working directory {root} via '..'")


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def open_beneath(
    root: Path, path: Path, flags: int, mode: int = 0o666, *, make_dirs: bool = False
) -> int:
    """Open ``path`` (inside ``root``) without following any symlink on the way.

    Each directory is opened relative to the one before it with
    ``O_NOFOLLOW``, and so is the file, so a symlink that appears anywhere
    on the path after it was checked makes this fail (:class:`ToolDenied`)
    instead of opening a file outside ``root``. With ``make_dirs``, missing
    directories are created the same way. Returns the file descriptor.
    """
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise ToolDenied(f"{path} is outside the working directory {root}") from None
    if not parts:
        raise IsADirectoryError(str(path))
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            if make_dirs:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=dir_fd)
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=dir_fd)
            except (NotADirectoryError, OSError) as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _swapped(path) from exc
                raise
            os.close(dir_fd)
            dir_fd = next_fd
        try:
            return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
        except OSError as exc:
            # A symlink as the last component: ELOOP, or ENOTDIR for O_DIRECTORY.
            if exc.errno == errno.ELOOP or (
                exc.errno == errno.ENOTDIR and _is_link(parts[-1], dir_fd)
            ):
                raise _swapped(path) from exc
            raise
    finally:
        os.close(dir_fd)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_checked(path: Path, working_dir: Path, flags: int, *, confine: bool) -> int:
    """Open a path that :func:`resolve_in_workdir` returned, for reading.

    Confined, the open goes through :func:`open_beneath` (the working
    directory itself included), so what is read is what was checked. Not
    confined, the path was never judged, and a plain open is as good.
    ``flags`` may include ``O_DIRECTORY`` to open a directory.
    """
    root = Path(os.path.realpath(working_dir))
    if not confine:
        return os.open(path, flags | os.O_CLOEXEC)
    if path == root:
        return os.open(root, flags | os.O_CLOEXEC)
    return open_beneath(root, path, flags)


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def _swapped(path: Path) -> ToolDenied:
    return ToolDenied(
        f"{path} goes through a symlink (it changed after it was checked); not opened"
    )
