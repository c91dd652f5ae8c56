"""Keeping file tools inside the working directory.

A path is judged by where it *really* leads, not by how it is spelled:
``sub/../../etc`` and a symlink ``link -> /etc`` both leave the working
directory, while ``/abs/path/to/workdir/file`` does not. For a file that does
not exist yet, the existing part of its path is resolved (so a new file under
a symlinked directory is judged by the directory's target), and a dangling
symlink is judged by where it points, since writing through it would create
its target.

This is a check at the time of the call. A process that swaps a directory for
a symlink between the check and the use can still win that race; the
bubblewrap sandbox, not this module, is the boundary against that.

The functions here touch the file system (``realpath``); call them from a
worker thread, not the event loop.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._errors import InvalidToolArguments, ToolDenied

__all__ = ["resolve_in_workdir"]


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
