"""The ``list`` tool: a directory's entries with type markers and sizes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from .._paths import open_checked
from .._tools import JSONSchema, ToolContext, ToolOutput
from ._common import ProfileTool, error, get_int, get_str, resolve_shown, truncate_lines

__all__ = ["ListTool"]

MAX_DEPTH = 6
MAX_ENTRIES = 1000
# Listed but never descended into: their contents are noise for a model.
_OPAQUE_DIRS = frozenset({".git", "node_modules", "__pycache__", ".venv", ".mypy_cache"})


@attrs.frozen(slots=True)
class ListTool(ProfileTool):
    """Lists a directory as an indented tree: ``name/`` for directories,
    ``name -> target`` for symlinks, ``name  (size)`` for files."""

    @property
    def name(self) -> str:
        return "list"

    @property
    def description(self) -> str:
        return (
            "List a directory (default: the working directory). Directories end with '/', "
            "symlinks show their target, files their size. 'depth' > 1 lists subdirectories "
            f"too (at most {MAX_DEPTH}); .git, node_modules and caches are not expanded."
        )

    @property
    def parameters(self) -> JSONSchema:
        return {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Directory to list (default '.')."},
                "depth": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Levels to list (default 1).",
                },
            },
            "additionalProperties": False,
        }

    @property
    def readonly(self) -> bool:
        return True

    async def _run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput:
        depth = get_int(args, "depth", default=1, minimum=1, maximum=MAX_DEPTH)
        path, shown = await resolve_shown(get_str(args, "path", default="."), ctx, self.profile)
        if not await trio.Path(path).is_dir():
            if await trio.Path(path).exists():
                return error(f"list: {shown} is not a directory; use read to see a file")
            return error(f"list: {shown} does not exist")
        confine = self.profile.confine_to_working_dir
        lines, count, capped = await trio.to_thread.run_sync(
            _listing, path, Path(ctx.working_dir), confine, depth, abandon_on_cancel=True
        )
        header = f"{shown}/" if shown != "." else "./"
        body = "\n".join(lines) if lines else "  (empty)"
        text = f"{header}\n{body}"
        if capped:
            text += f"\n[stopped after {MAX_ENTRIES} entries; list a subdirectory or lower depth]"
        text = truncate_lines(text, self.profile.max_output_chars)
        return ToolOutput(content=text, metadata={"entries": count})


def _listing(
    root: Path, working_dir: Path, confine: bool, depth: int
) -> tuple[list[str], int, bool]:
    """The tree under ``root``, read through directory descriptors.

    Each subdirectory is opened relative to its parent with ``O_NOFOLLOW``,
    so a directory swapped for a symlink while the listing runs is reported
    as unreadable instead of listing somewhere else.
    """
    lines: list[str] = []
    count = 0

    def walk(dir_fd: int, level: int) -> bool:
        nonlocal count
        try:
            entries = sorted(os.scandir(dir_fd), key=lambda e: e.name)
        except OSError as exc:
            lines.append(f"{'  ' * level}[cannot read: {exc.strerror}]")
            return True
        for entry in entries:
            if count >= MAX_ENTRIES:
                return False
            count += 1
            indent = "  " * level
            if entry.is_symlink():
                try:
                    target = os.readlink(entry.name, dir_fd=dir_fd)
                except OSError:
                    target = "?"
                lines.append(f"{indent}{entry.name} -> {target}")
            elif entry.is_dir(follow_symlinks=False):
                lines.append(f"{indent}{entry.name}/")
                if level < depth and entry.name not in _OPAQUE_DIRS:
                    try:
                        sub = os.open(entry.name, _SUBDIR_FLAGS, dir_fd=dir_fd)
                    except OSError as exc:
                        lines.append(f"{indent}  [cannot read: {exc.strerror}]")
                        continue
                    try:
                        if not walk(sub, level + 1):
                            return False
                    finally:
                        os.close(sub)
            else:
                try:
                    size = entry.stat(follow_symlinks=False).st_size
                except OSError:
                    lines.append(f"{indent}{entry.name}")
                    continue
                lines.append(f"{indent}{entry.name}  ({_human_size(size)})")
        return True

    top = open_checked(root, working_dir, os.O_RDONLY | os.O_DIRECTORY, confine=confine)
    try:
        complete = walk(top, 1)
    finally:
        os.close(top)
    return lines, count, not complete


_SUBDIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")
