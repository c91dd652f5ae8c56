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
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from .._errors import InvalidToolArguments
from .._paths import open_checked
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
        pattern, glob, ignore_case, max_results = grep_arguments(args)
        working_dir = await resolve_path(".", ctx, self.profile)
        target = await resolve_path(get_str(args, "path", default="."), ctx, self.profile)
        shown = display_path(target, working_dir)
        if not await trio.Path(target).exists():
            return error(f"grep: {shown} does not exist")
        rg = None
        if self.use_ripgrep is not False:
            rg = await trio.to_thread.run_sync(shutil.which, "rg")
        if self.use_ripgrep and rg is None:
            return error("grep: ripgrep (rg) was requested but is not installed")
        confine = self.profile.confine_to_working_dir
        try:
            fd = await trio.to_thread.run_sync(
                lambda: open_checked(target, working_dir, _TARGET_FLAGS, confine=confine)
            )
        except OSError as exc:
            return error(f"grep: cannot open {shown}: {exc.strerror}")
        try:
            place = _place(fd, shown, working_dir)
            if isinstance(place, str):
                return error(f"grep: {place}")
            if rg is not None:
                outcome = await _search_rg(rg, pattern, place, glob, ignore_case)
            else:
                outcome = await _search_python(pattern, place, glob, ignore_case)
        finally:
            os.close(fd)
        if isinstance(outcome, str):
            return error(f"grep: {outcome}")
        matches = sorted(outcome, key=lambda m: (sort_key(m.path), m.line))
        return _render(matches, pattern, max_results, self.profile.max_output_chars, rg)


def grep_arguments(args: Mapping[str, Any]) -> tuple[str, str | None, bool, int]:
    """The pattern, glob filter, case folding and result limit a call asks for."""
    pattern = get_str(args, "pattern", required=True)
    if not pattern:
        raise InvalidToolArguments("'pattern' must not be empty")
    glob = get_optional_str(args, "glob") or None
    ignore_case = get_bool(args, "case_insensitive")
    max_results = get_int(
        args, "max_results", default=DEFAULT_MAX_RESULTS, minimum=1, maximum=MAX_RESULTS
    )
    return pattern, glob, ignore_case, max_results


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


@attrs.frozen(slots=True)
class _Place:
    """Where a search runs: the target as the child sees it, and how names map back.

    On Linux the child runs in (or reads) the very directory or file opened
    and checked here, through ``/proc/self/fd``: a path swapped for a symlink
    after the check cannot send the search elsewhere.
    """

    cwd: str
    target: str
    shown: str
    is_dir: bool
    pass_fds: tuple[int, ...]

    def name(self, printed: str) -> str:
        if not self.is_dir:
            return self.shown
        rel = os.path.normpath(printed)
        if rel == ".":
            return self.shown
        return rel if self.shown == "." else f"{self.shown.rstrip('/')}/{rel}"


_TARGET_FLAGS = os.O_RDONLY | os.O_NONBLOCK


def _place(fd: int, shown: str, working_dir: Path) -> _Place | str:
    mode = os.fstat(fd).st_mode
    is_dir = stat.S_ISDIR(mode)
    if not is_dir and not stat.S_ISREG(mode):
        return f"{shown} is not a regular file or directory"
    magic = f"/proc/self/fd/{fd}"
    if not os.path.isdir("/proc/self/fd"):  # no /proc: the checked path, as is
        return _Place(str(working_dir), shown, ".", True, ())
    if is_dir:
        return _Place(magic, ".", shown, True, (fd,))
    return _Place(str(working_dir), magic, shown, False, (fd,))


async def _search_rg(
    rg: str, pattern: str, place: _Place, glob: str | None, ignore_case: bool
) -> list[Match] | str:
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
    argv += ["--regexp", pattern, "--", place.target]
    return await _run_search(argv, place, "rg")


async def _search_python(
    pattern: str, place: _Place, glob: str | None, ignore_case: bool
) -> list[Match] | str:
    """The same search with Python's ``re``, in a child process killed at the deadline."""
    request = {
        "pattern": pattern,
        "target": place.target,
        "glob": glob,
        "ignore_case": ignore_case,
        "prefix": ".",
    }
    argv = [sys.executable, "-I", str(_WORKER), json.dumps(request)]
    return await _run_search(argv, place, "the search")


async def _run_search(argv: list[str], place: _Place, what: str) -> list[Match] | str:
    stdout = HeadCapture(_RG_OUTPUT_BYTES)
    stderr = HeadCapture(64 * 1024)
    result = await run_process_group(
        argv,
        cwd=Path(place.cwd),
        time_limit=_SEARCH_TIMEOUT,
        stdout=stdout,
        stderr=stderr,
        pass_fds=place.pass_fds,
    )
    if result.timed_out:
        return f"search timed out after {_SEARCH_TIMEOUT:g} s"
    if result.returncode not in (0, 1) and not stdout.data:
        message = bytes(stderr.data).decode("utf-8", "replace").strip()
        return message or f"{what} failed with exit code {result.returncode}"
    return _parse_rg_output(bytes(stdout.data), place)


def _parse_rg_output(data: bytes, place: _Place) -> list[Match]:
    matches: list[Match] = []
    for raw in data.split(b"\n"):
        name, sep, rest = raw.partition(b"\x00")
        if not sep:
            continue  # "binary file matches" notices and a cut-off last line
        number, _, text = rest.partition(b":")
        if not number.isdigit():
            continue
        matches.append(
            Match(
                path=place.name(name.decode("utf-8", "replace")),
                line=int(number),
                text=text.decode("utf-8", "replace").rstrip("\r"),
            )
        )
    return matches
