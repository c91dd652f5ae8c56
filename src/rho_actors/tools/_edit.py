"""The ``edit`` tool: replace one exact piece of text in a file.

Requiring ``old_string`` to match exactly once makes the model say precisely
which occurrence it means; a count of zero or several comes back as an error
that says how many, so the model can widen its context and try again.
Line endings and encoding are preserved byte for byte outside the edit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import attrs
import trio

from .._errors import InvalidToolArguments
from .._paths import open_beneath
from .._tools import JSONSchema, ToolContext, ToolOutput
from ._common import ProfileTool, error, get_bool, get_str, modifiable, resolve_shown

__all__ = ["EditTool"]


@attrs.frozen(slots=True)
class EditTool(ProfileTool):
    """Replaces ``old_string`` with ``new_string`` in a UTF-8 text file."""

    @property
    def name(self) -> str:
        return "edit"

    @property
    def description(self) -> str:
        return (
            "Edit a file by replacing old_string with new_string. old_string must match the "
            "file exactly (including whitespace and indentation) and occur exactly once, "
            "unless replace_all is true. Include enough surrounding lines to make it unique."
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
                "old_string": {"type": "string", "description": "Exact text to replace."},
                "new_string": {"type": "string", "description": "Replacement text."},
                "replace_all": {
                    "type": "boolean",
                    "description": "Replace every occurrence (default false).",
                },
            },
            "required": ["path", "old_string", "new_string"],
            "additionalProperties": False,
        }

    @property
    def readonly(self) -> bool:
        return False

    def checked(self, args: Mapping[str, Any]) -> tuple[str, str, str, bool] | ToolOutput:
        """Path, old and new text and ``replace_all``, or why the profile refuses."""
        if self.profile.file_write != "full":
            return error(
                f"edit: changing existing files is not allowed in profile {self.profile.name!r} "
                f"(file_write is {self.profile.file_write!r})"
            )
        raw_path = get_str(args, "path", required=True)
        old = get_str(args, "old_string", required=True)
        new = get_str(args, "new_string", required=True)
        replace_all = get_bool(args, "replace_all")
        if not old:
            raise InvalidToolArguments("'old_string' must not be empty; use write to create a file")
        if old == new:
            raise InvalidToolArguments("'old_string' and 'new_string' are identical")
        return raw_path, old, new, replace_all

    async def _run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput:
        checked = self.checked(args)
        if isinstance(checked, ToolOutput):
            return checked
        raw_path, old, new, replace_all = checked
        path, shown = await resolve_shown(raw_path, ctx, self.profile)
        root = Path(ctx.working_dir)  # made real in the worker thread
        confined_to = root if self.profile.confine_to_working_dir else None
        return await trio.to_thread.run_sync(_edit, path, shown, old, new, replace_all, confined_to)


def _edit(
    path: Path, shown: str, old: str, new: str, replace_all: bool, confined_to: Path | None
) -> ToolOutput:
    if not path.exists():
        return error(f"edit: {shown} does not exist")
    if path.is_dir():
        return error(f"edit: {shown} is a directory")
    # One descriptor for reading and writing: what was checked is what changes.
    if confined_to is not None:
        fd = open_beneath(Path(os.path.realpath(confined_to)), path, os.O_RDWR)
    else:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    with os.fdopen(fd, "r+b") as f:
        refusal = modifiable(os.fstat(f.fileno()), shown, confined=confined_to is not None)
        if refusal is not None:
            return error(f"edit: {refusal}")
        return _replace_in(f, path, shown, old, new, replace_all)


def _replace_in(
    f: BinaryIO, path: Path, shown: str, old: str, new: str, replace_all: bool
) -> ToolOutput:
    raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return error(f"edit: {shown} is not valid UTF-8 text")
    count = text.count(old)
    if count == 0:
        return error(
            f"edit: old_string was not found in {shown} (0 matches); check whitespace and "
            "indentation, or read the file again",
            matches=0,
        )
    if count > 1 and not replace_all:
        return error(
            f"edit: old_string occurs {count} times in {shown}; include more surrounding "
            "text to make it unique, or set replace_all",
            matches=count,
        )
    updated = text.replace(old, new) if replace_all else text.replace(old, new, 1)
    f.seek(0)
    f.truncate(0)
    f.write(updated.encode("utf-8"))
    replaced = count if replace_all else 1
    noun = "occurrence" if replaced == 1 else "occurrences"
    return ToolOutput(
        content=f"Replaced {replaced} {noun} in {shown}",
        metadata={"path": str(path), "replacements": replaced},
    )
