"""The ``glob`` tool: find files by name pattern, such as ``**/*.py``."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from .._errors import InvalidToolArguments
from .._paths import open_checked
from .._tools import JSONSchema, ToolContext, ToolOutput
from ._common import ProfileTool, display_path, error, get_int, get_str, head_lines, resolve_path
from ._globs import GlobMatcher, compile_glob, sort_key, walk_files

__all__ = ["GlobTool"]

DEFAULT_MAX_RESULTS = 500
MAX_RESULTS = 5000


@attrs.frozen(slots=True)
class GlobTool(ProfileTool):
    """Lists files whose path (relative to the search directory) matches a glob."""

    @property
    def name(self) -> str:
        return "glob"

    @property
    def description(self) -> str:
        return (
            "Find files by glob pattern, relative to the working directory (or to 'path'). "
            "'*' and '?' match within one directory level, '**' across levels: '*.md' finds "
            "top-level Markdown files, '**/*.py' all Python files, 'src/**/test_*.py' tests "
            "under src. Results are sorted; .git is skipped."
        )

    @property
    def parameters(self) -> JSONSchema:
        return {
            "type": "object",
            "properties": {
                "pattern": {"type": "string", "description": "Glob pattern, e.g. '**/*.py'."},
                "path": {
                    "type": "string",
                    "description": "Directory to search from (default '.').",
                },
                "max_results": {
                    "type": "integer",
                    "minimum": 1,
                    "description": f"At most this many paths (default {DEFAULT_MAX_RESULTS}).",
                },
            },
            "required": ["pattern"],
            "additionalProperties": False,
        }

    @property
    def readonly(self) -> bool:
        return True

    async def _run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput:
        pattern, regex, max_results = glob_arguments(args)
        base = await resolve_path(get_str(args, "path", default="."), ctx, self.profile)
        working_dir = await resolve_path(".", ctx, self.profile)
        if not await trio.Path(base).is_dir():
            return error(f"glob: {display_path(base, working_dir)} is not a directory")
        stop = threading.Event()
        try:
            # Abandoned on cancel, and told to stop: a huge tree never holds a call.
            found = await trio.to_thread.run_sync(
                _find,
                base,
                Path(ctx.working_dir),
                self.profile.confine_to_working_dir,
                regex,
                stop,
                abandon_on_cancel=True,
            )
        finally:
            stop.set()
        metadata = {"total": len(found)}
        if not found:
            return ToolOutput(content=f"No files match {pattern!r}.", metadata=metadata)
        found.sort(key=sort_key)
        shown = [display_path(base / rel, working_dir) for rel in found[:max_results]]
        text = "\n".join(shown)
        if len(text) > self.profile.max_output_chars:
            text = head_lines(text, self.profile.max_output_chars)
            shown = text.split("\n")
        if len(shown) < len(found):
            text += f"\n[showing {len(shown)} of {len(found)} files; narrow the pattern]"
        return ToolOutput(content=text, metadata=metadata)


def glob_arguments(args: Mapping[str, Any]) -> tuple[str, GlobMatcher, int]:
    """The pattern, its matcher, and the result limit a call asks for."""
    pattern = get_str(args, "pattern", required=True).strip()
    if not pattern:
        raise InvalidToolArguments("'pattern' must not be empty")
    if pattern.startswith("/") or ".." in pattern.split("/"):
        raise InvalidToolArguments(
            "'pattern' is relative to the search directory; use 'path' to search elsewhere"
        )
    max_results = get_int(
        args, "max_results", default=DEFAULT_MAX_RESULTS, minimum=1, maximum=MAX_RESULTS
    )
    try:
        matcher = compile_glob(pattern.removeprefix("./"))
    except ValueError as exc:
        raise InvalidToolArguments(f"invalid glob {pattern!r}: {exc}") from None
    return pattern, matcher, max_results


def _find(
    base: Path, working_dir: Path, confine: bool, matcher: GlobMatcher, stop: threading.Event
) -> list[str]:
    found: list[str] = []
    top = open_checked(base, working_dir, os.O_RDONLY | os.O_DIRECTORY, confine=confine)
    try:
        for _, _, rel in walk_files(top):
            if stop.is_set():
                break
            if matcher.match(rel):
                found.append(rel)
    finally:
        os.close(top)
    return found
