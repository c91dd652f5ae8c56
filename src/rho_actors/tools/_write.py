"""The ``write`` tool: create a file, or replace one when the profile allows it.

``create-only`` is enforced with ``O_EXCL``, so a file that appears between
the check and the write is not overwritten either.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from .._paths import open_beneath
from .._tools import JSONSchema, ToolContext, ToolOutput
from ._common import ProfileTool, error, get_str, modifiable, resolve_shown

__all__ = ["WriteTool"]


@attrs.frozen(slots=True)
class WriteTool(ProfileTool):
    """Writes a whole file (UTF-8), creating missing parent directories."""

    @property
    def name(self) -> str:
        return "write"

    @property
    def description(self) -> str:
        if self.profile.file_write == "create-only":
            return (
                "Create a new file with the given content (UTF-8). Existing files cannot be "
                "overwritten under this profile. Missing parent directories are created."
            )
        return (
            "Write a file with the given content (UTF-8), replacing it if it exists. Missing "
            "parent directories are created. For small changes to an existing file, prefer edit."
        )

    @property
    def parameters(self) -> JSONSchema:
        return {
            "type": "object",
            "properties": {
                "path": {
                    "type": "string",
                    "description": "File path, relative to the working directory.",
                },
                "content": {
                    "type": "string",
                    "description": "The complete new content of the file.",
                },
            },
            "required": ["path", "content"],
            "additionalProperties": False,
        }

    @property
    def readonly(self) -> bool:
        return False

    async def _run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput:
        mode = self.profile.file_write
        if mode == "off":
            return error(f"write: file writes are disabled in profile {self.profile.name!r}")
        raw_path = get_str(args, "path", required=True)
        content = get_str(args, "content", required=True)
        path, shown = await resolve_shown(raw_path, ctx, self.profile)
        root = Path(ctx.working_dir)  # made real in the worker thread
        confine = self.profile.confine_to_working_dir
        return await trio.to_thread.run_sync(
            _write, path, shown, content, mode == "full", root if confine else None
        )


def _write(
    path: Path, shown: str, content: str, overwrite: bool, confined_to: Path | None
) -> ToolOutput:
    if path.is_dir():
        return error(f"write: {shown} is a directory")
    existed = path.exists()
    if existed and not overwrite:
        return error(
            f"write: {shown} already exists and this profile only allows creating new files"
        )
    data = content.encode("utf-8")
    if confined_to is not None:
        confined_to = Path(os.path.realpath(confined_to))
    # No O_TRUNC: the file is checked before anything in it changes.
    flags = os.O_WRONLY | os.O_CREAT | (0 if overwrite else os.O_EXCL)
    try:
        if confined_to is not None:
            fd = open_beneath(confined_to, path, flags, make_dirs=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, flags, 0o666)
    except FileExistsError:
        return error(
            f"write: {shown} already exists and this profile only allows creating new files"
        )
    with os.fdopen(fd, "wb") as f:
        refusal = modifiable(os.fstat(f.fileno()), shown, confined=confined_to is not None)
        if refusal is not None:
            return error(f"write: {refusal}")
        f.truncate(0)
        f.write(data)
    lines = content.count("\n") + (1 if content and not content.endswith("\n") else 0)
    verb = "Overwrote" if existed else "Created"
    return ToolOutput(
        content=f"{verb} {shown} ({len(data)} bytes, {lines} lines)",
        metadata={"path": str(path), "bytes": len(data), "created": not existed},
    )
