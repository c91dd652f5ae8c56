"""The ``grep`` tool: regex search across files, with ripgrep when it is installed.

ripgrep is much faster on big trees, but the tool must behave the same
without it, so both paths share one contract: every file under the search
path except ``.git`` directories and binary files (hidden and git-ignored
files included), symlinks not followed, results ``path:line:content`` with
paths relative to the working directory, sorted by path and line, the
``glob`` filter matching a file's name (or, with a ``/``, its path) the way
``rg --glob`` does. Regex dialects differ at the edges (Rust's ``regex``
against Python's ``re``); plain patterns behave the same.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from .._errors import InvalidToolArguments
from .._tools import JSONSchema, ToolContext, ToolOutput
from ._common import (
    ProfileTool,
    display_path,
    error,
    get_bool,
    get_int,
    get_optional_str,
    get_str,
    resolve_path,
)
from ._globs import sort_key
from ._process import HeadCapture, run_process_group

__all__ = ["GrepTool"]

DEFAULT_MAX_RESULTS = 100
MAX_RESULTS = 2000
MAX_MATCH_CHARS = 300
_SEARCH_TIMEOUT = 60.0
_RG_OUTPUT_BYTES = 16 * 1024 * 1024
_WORKER = Path(__file__).with_name("_grep_worker.py")


@attrs.frozen(slots=True)
class Match:
    path: str
    line: int
    text: str


@attrs.frozen(slots=True)
class GrepTool(ProfileTool):
    """Searches file contents for a regular expression."""

    use_ripgrep: bool | None = attrs.field(default=None, kw_only=True)
    """``None``: use ``rg`` when installed. ``False`` forces the Python search."""

    @property
    def uses_subprocess(self) -> bool:
        return self.use_ripgrep is not False

    @property
    def name(self) -> str:
        return "grep"

    @property
    def description(self) -> str:
        return (
            "Search file contents for a regular expression. Returns matching lines as "
            "path:line:content, sorted by path. Searches every file under 'path' (default: "
            "the working directory) except .git and binary files; 'glob' narrows the files "
            "(e.g. '*.py', 'src/**/*.ts')."
        )

    @property
    def parameters(self) -> JSONSchema:
        return {
            "type": "object",
            "properties": {
                "pattern": {"type": "string", "description": "Regular expression to search for."},
                "path": {
                    "type": "string",
                    "description": "File or directory to search (default '.').",
                },
                "glob": {"type": "string", "description": "Only search files matching this glob."},
                "case_insensitive": {"type": "boolean", "description": "Ignore case."},
                "max_results": {
                    "type": "integer",
                    "minimum": 1,
                    "description": f"At most this many matches (default {DEFAULT_MAX_RESULTS}).",
                },
            },
            "required": ["pattern"],
            "additionalProperties": False,
        }

    @property
    def readonly(self) -> bool:
        return True

    async def _run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput:
        pattern = get_str(args, "pattern", required=True)
        if not pattern:
            raise InvalidToolArguments("'pattern' must not be empty")
        glob = get_optional_str(args, "glob") or None
        ignore_case = get_bool(args, "case_insensitive")
        max_results = get_int(
            args, "max_results", default=DEFAULT_MAX_RESULTS, minimum=1, maximum=MAX_RESULTS
        )
        working_dir = await resolve_path(".", ctx, self.profile)
        target = await resolve_path(get_str(args, "path", default="."), ctx, self.profile)
        if not await trio.Path(target).exists():
            return error(f"grep: {display_path(target, working_dir)} does not exist")
        rg = None
        if self.use_ripgrep is not False:
            rg = await trio.to_thread.run_sync(shutil.which, "rg")
        if self.use_ripgrep and rg is None:
            return error("grep: ripgrep (rg) was requested but is not installed")
        if rg is not None:
            outcome = await _search_rg(rg, pattern, target, working_dir, glob, ignore_case)
        else:
            outcome = await _search_python(pattern, target, working_dir, glob, ignore_case)
        if isinstance(outcome, str):
            return error(f"grep: {outcome}")
        matches = sorted(outcome, key=lambda m: (sort_key(m.path), m.line))
        return _render(matches, pattern, max_results, self.profile.max_output_chars, rg)


def _render(
    matches: list[Match], pattern: str, max_results: int, max_chars: int, rg: str | None
) -> ToolOutput:
    metadata = {"total_matches": len(matches), "engine": "ripgrep" if rg else "python"}
    if not matches:
        return ToolOutput(content=f"No matches for {pattern!r}.", metadata=metadata)
    lines: list[str] = []
    used = 0
    for match in matches[:max_results]:
        text = match.text
        if len(text) > MAX_MATCH_CHARS:
            text = text[:MAX_MATCH_CHARS] + "..."
        line = f"{match.path}:{match.line}:{text}"
        if used + len(line) + 1 > max_chars and lines:
            break
        lines.append(line)
        used += len(line) + 1
    if len(lines) < len(matches):
        lines.append(
            f"[showing {len(lines)} of {len(matches)} matches; narrow the search with "
            "'path' or 'glob', or raise max_results]"
        )
    return ToolOutput(content="\n".join(lines), metadata=metadata)


async def _search_rg(
    rg: str, pattern: str, target: Path, working_dir: Path, glob: str | None, ignore_case: bool
) -> list[Match] | str:
    relative = display_path(target, working_dir)
    argv = [
        rg,
        "--no-config",
        "--null",
        "--line-number",
        "--no-heading",
        "--with-filename",
        "--color",
        "never",
        "--hidden",
        "--no-ignore",
        "--glob",
        "!.git",
    ]
    if glob:
        argv += ["--glob", glob]
    if ignore_case:
        argv.append("--ignore-case")
    argv += ["--regexp", pattern, "--", relative]
    return await _run_search(argv, working_dir, "rg")


async def _search_python(
    pattern: str, target: Path, working_dir: Path, glob: str | None, ignore_case: bool
) -> list[Match] | str:
    """The same search with Python's ``re``, in a child process killed at the deadline."""
    request = {
        "pattern": pattern,
        "target": display_path(target, working_dir),
        "glob": glob,
        "ignore_case": ignore_case,
    }
    argv = [sys.executable, "-I", str(_WORKER), json.dumps(request)]
    return await _run_search(argv, working_dir, "the search")


async def _run_search(argv: list[str], working_dir: Path, what: str) -> list[Match] | str:
    stdout = HeadCapture(_RG_OUTPUT_BYTES)
    stderr = HeadCapture(64 * 1024)
    result = await run_process_group(
        argv, cwd=working_dir, time_limit=_SEARCH_TIMEOUT, stdout=stdout, stderr=stderr
    )
    if result.timed_out:
        return f"search timed out after {_SEARCH_TIMEOUT:g} s"
    if result.returncode not in (0, 1) and not stdout.data:
        message = bytes(stderr.data).decode("utf-8", "replace").strip()
        return message or f"{what} failed with exit code {result.returncode}"
    return _parse_rg_output(bytes(stdout.data), working_dir)


def _parse_rg_output(data: bytes, working_dir: Path) -> list[Match]:
    matches: list[Match] = []
    for raw in data.split(b"\n"):
        name, sep, rest = raw.partition(b"\x00")
        if not sep:
            continue  # "binary file matches" notices and a cut-off last line
        number, _, text = rest.partition(b":")
        if not number.isdigit():
            continue
        path = os.path.normpath(os.path.join(working_dir, name.decode("utf-8", "replace")))
        matches.append(
            Match(
                path=display_path(Path(path), working_dir),
                line=int(number),
                text=text.decode("utf-8", "replace").rstrip("\r"),
            )
        )
    return matches
