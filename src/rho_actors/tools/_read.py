"""The ``read`` tool: a file's lines, numbered, a window at a time.

Numbered lines let the model cite and edit precisely; the total line count
tells it whether there is more to read. Files are streamed line by line in a
worker thread, so a large file costs memory only for the window shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from .._errors import InvalidToolArguments
from .._tools import JSONSchema, ToolContext, ToolOutput
from ._common import ProfileTool, error, get_int, get_str, resolve_shown

__all__ = ["ReadTool"]

DEFAULT_LINE_LIMIT = 2000
MAX_LINE_CHARS = 2000
_BINARY_SNIFF = 8192


@attrs.frozen(slots=True)
class ReadTool(ProfileTool):
    """Reads a text file as numbered lines (``   12\\tcontent``)."""

    @property
    def name(self) -> str:
        return "read"

    @property
    def description(self) -> str:
        return (
            "Read a text file and return its lines numbered from 1. By default the first "
            f"{DEFAULT_LINE_LIMIT} lines; use start_line/end_line (inclusive) or offset/limit "
            "to read another part. The total number of lines is always reported."
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
                "start_line": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "First line to show (1-based).",
                },
                "end_line": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Last line to show (inclusive).",
                },
                "offset": {"type": "integer", "minimum": 1, "description": "Same as start_line."},
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "How many lines to show.",
                },
            },
            "required": ["path"],
            "additionalProperties": False,
        }

    @property
    def readonly(self) -> bool:
        return True

    async def _run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput:
        raw_path = get_str(args, "path", required=True)
        start = get_int(args, "start_line", minimum=1)
        offset = get_int(args, "offset", minimum=1)
        if start is not None and offset is not None and start != offset:
            raise InvalidToolArguments("give start_line or offset, not both")
        first = start or offset or 1
        end = get_int(args, "end_line", minimum=1)
        limit = get_int(args, "limit", minimum=1)
        if end is not None and limit is not None:
            raise InvalidToolArguments("give end_line or limit, not both")
        if end is not None and end < first:
            raise InvalidToolArguments(f"end_line ({end}) is before start_line ({first})")
        last = end if end is not None else first + (limit or DEFAULT_LINE_LIMIT) - 1
        path, shown = await resolve_shown(raw_path, ctx, self.profile)
        return await trio.to_thread.run_sync(
            _read_window, path, shown, first, last, self.profile.max_output_chars
        )


def _read_window(path: Path, shown: str, first: int, last: int, max_chars: int) -> ToolOutput:
    if path.is_dir():
        return error(f"read: {shown} is a directory; use the list tool to see its contents")
    if not path.exists():
        return error(f"read: {shown} does not exist")
    with path.open("rb") as f:
        sniff = f.read(_BINARY_SNIFF)
        if b"\x00" in sniff:
            size = path.stat().st_size
            return error(f"read: {shown} is a binary file ({size} bytes); not shown", binary=True)
        f.seek(0)
        lines: list[str] = []
        used = 0
        total = 0
        cut_at: int | None = None
        for total, raw in enumerate(f, start=1):
            if total < first or total > last or cut_at is not None:
                continue
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            if len(text) > MAX_LINE_CHARS:
                text = text[:MAX_LINE_CHARS] + f"... [line truncated, {len(text)} characters]"
            line = f"{total:>5}\t{text}"
            if used + len(line) + 1 > max_chars and lines:
                cut_at = total
                continue
            lines.append(line)
            used += len(line) + 1
    metadata = {"total_lines": total, "start_line": first}
    if total == 0:
        return ToolOutput(content=f"({shown} is empty)", metadata=metadata)
    if first > total:
        return error(
            f"read: start_line {first} is past the end of {shown} ({total} lines)", **metadata
        )
    shown_last = (cut_at - 1) if cut_at is not None else min(last, total)
    footer = f"[{shown}: lines {first}-{shown_last} of {total}"
    if cut_at is not None:
        footer += f"; output limit reached, continue with start_line={cut_at}"
    elif shown_last < total:
        footer += f"; continue with start_line={shown_last + 1}"
    footer += "]"
    return ToolOutput(
        content="\n".join(lines) + "\n" + footer,
        metadata={**metadata, "end_line": shown_last},
    )
