"""The ``read`` tool: a file's lines, numbered, a window at a time.

Numbered lines let the model cite and edit precisely; the total line count
tells it whether there is more to read. Files are streamed line by line in a
worker thread, so a large file costs memory only for the window shown.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import attrs
import trio

from .._errors import InvalidToolArguments
from .._paths import open_checked
from .._tools import JSONSchema, ToolContext, ToolOutput
from ._common import ProfileTool, error, get_int, get_str, resolve_shown

__all__ = ["ReadTool"]

DEFAULT_LINE_LIMIT = 2000
MAX_LINE_CHARS = 2000
# Bytes of a line kept for display: room for MAX_LINE_CHARS of UTF-8.
_LINE_BYTES = 4 * MAX_LINE_CHARS
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
        raw_path, first, last = window_arguments(args)
        path, shown = await resolve_shown(raw_path, ctx, self.profile)
        # Abandoned on cancel: a read has no side effects, so a cancelled run
        # need not wait for a big file to be scanned.
        return await trio.to_thread.run_sync(
            _read_window,
            _Target(path, shown, Path(ctx.working_dir), self.profile.confine_to_working_dir),
            first,
            last,
            self.profile.max_output_chars,
            abandon_on_cancel=True,
        )


def window_arguments(args: Mapping[str, Any]) -> tuple[str, int, int]:
    """The path and the first and last line a read call asks for."""
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
    return raw_path, first, last


def _bounded_lines(f: BinaryIO) -> Iterator[tuple[bytes, int]]:
    """Each line's first ``_LINE_BYTES`` bytes and its whole length (newline excluded).

    Memory stays bounded by the cap, whatever the file: a 150 MB file of
    one line is read a chunk at a time, not into one string.
    """
    while True:
        chunk = f.readline(_LINE_BYTES)
        if not chunk:
            return
        length = len(chunk)
        last = chunk
        if len(chunk) == _LINE_BYTES and not chunk.endswith(b"\n"):
            while more := f.readline(_LINE_BYTES):  # skip the rest of a long line
                length += len(more)
                last = more
                if more.endswith(b"\n"):
                    break
        yield chunk, length - last.endswith(b"\n")


@attrs.frozen(slots=True)
class _Target:
    path: Path
    shown: str
    working_dir: Path
    confine: bool


def _read_window(target: _Target, first: int, last: int, max_chars: int) -> ToolOutput:
    path, shown = target.path, target.shown
    if path.is_dir():
        return error(f"read: {shown} is a directory; use the list tool to see its contents")
    if not path.exists():
        return error(f"read: {shown} does not exist")
    try:
        # Non-blocking: opening a FIFO for reading would otherwise wait for a
        # writer forever. Only regular files are read. Confined, the open
        # follows no symlink, so a swap after the check cannot redirect it.
        fd = open_checked(
            path, target.working_dir, os.O_RDONLY | os.O_NONBLOCK, confine=target.confine
        )
    except OSError as exc:
        return error(f"read: cannot open {shown}: {exc.strerror}")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return error(f"read: {shown} is not a regular file (a FIFO, socket or device); not read")
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as f:
        return window_of(f, shown, first, last, max_chars)


def window_of(f: BinaryIO, shown: str, first: int, last: int, max_chars: int) -> ToolOutput:
    """Lines ``first``..``last`` of an open file, numbered, within ``max_chars``."""
    sniff = f.read(_BINARY_SNIFF)
    if b"\x00" in sniff:
        size = f.seek(0, os.SEEK_END)
        return error(f"read: {shown} is a binary file ({size} bytes); not shown", binary=True)
    f.seek(0)
    lines: list[str] = []
    used = 0
    total = 0
    cut_at: int | None = None
    for total, (raw, length) in enumerate(_bounded_lines(f), start=1):
        if total < first or total > last or cut_at is not None:
            continue
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        if len(text) > MAX_LINE_CHARS or length > len(raw):
            text = text[:MAX_LINE_CHARS] + f"... [line truncated, {length} bytes]"
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
