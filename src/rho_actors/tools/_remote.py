"""The built-in tools on a Daytona sandbox: same names, schemas and rules, remote files.

Each remote tool is the local tool's subclass: the model sees the same
name, description and parameters, and the profile is judged the same way
*before* anything is sent (the restricted-shell checker, file-write modes,
confinement to the working directory, approvals). Only the doing moves:
commands run in the sandbox, files are read and written there, and nothing
touches the local file system. The sandbox comes from the call's
``ToolContext.sandbox`` capability, created on first use.

Confinement is to the sandbox's working directory, judged on the path's
text (``..`` and absolute paths outside it are refused); a symlink inside
the sandbox can still lead elsewhere *in the sandbox*, which is a disposable
machine, never the host.
"""

from __future__ import annotations

import io
import posixpath
import re
from collections.abc import Mapping
from typing import Any

import attrs

from .._daytona import RemoteSandbox, SandboxError
from .._tools import ToolContext, ToolOutput
from ._bash import BashTool
from ._common import (
    ProfileTool,
    error,
    get_int,
    get_str,
    truncate_middle,
)
from ._edit import EditTool, _replace_in
from ._glob import GlobTool, glob_arguments
from ._globs import compile_glob, matches_name_or_path, sort_key
from ._grep import GrepTool, Match, _render, grep_arguments
from ._list import _OPAQUE_DIRS, MAX_DEPTH, MAX_ENTRIES, ListTool, _human_size
from ._read import ReadTool, window_arguments, window_of
from ._sqlite import SqliteTool
from ._write import WriteTool

__all__ = ["remote_tool_classes"]

# How long a search or listing command may run in the sandbox.
_SEARCH_LIMIT = 60.0


async def _sandbox(ctx: ToolContext) -> RemoteSandbox:
    capability = ctx.sandbox
    if capability is None:
        raise SandboxError("this session has no Daytona sandbox (backend is not 'daytona')")
    sandbox: RemoteSandbox = await capability.get()
    return sandbox


async def _resolve(tool: ProfileTool, ctx: ToolContext, raw: str) -> tuple[RemoteSandbox, str, str]:
    """The sandbox, the absolute sandbox path, and the path as the model is shown it."""
    sandbox = await _sandbox(ctx)
    full = await sandbox.resolve(raw, confine=tool.profile.confine_to_working_dir)
    base = await sandbox.work_dir()
    shown = (
        "." if full == base else posixpath.relpath(full, base) if full.startswith(base) else full
    )
    return sandbox, full, shown


@attrs.frozen(slots=True)
class RemoteBashTool(BashTool):
    async def _run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput:
        profile = self.profile
        checked = await self.checked(args)
        if isinstance(checked, ToolOutput):
            return checked
        command, timeout = checked
        sandbox = await _sandbox(ctx)
        cwd = await sandbox.work_dir()
        exit_code, output = await sandbox.run(command, cwd=cwd, time_limit=timeout)
        text = truncate_middle(output, profile.max_output_chars)
        metadata = {
            "exit_code": exit_code,
            "timed_out": exit_code is None,
            "sandboxed": "daytona",
            "sandbox_id": sandbox.id,
        }
        if exit_code is None:
            return error(
                f"{text}\n[timed out after {timeout:g} s; the command was stopped]".lstrip("\n"),
                **metadata,
            )
        text = text or "(no output)"
        if exit_code != 0:
            text = f"{text.rstrip(chr(10))}\n[exit code {exit_code}]"
        return ToolOutput(content=text, metadata=metadata)


@attrs.frozen(slots=True)
class RemoteReadTool(ReadTool):
    async def _run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput:
        raw_path, first, last = window_arguments(args)
        sandbox, full, shown = await _resolve(self, ctx, raw_path)
        info = await sandbox.info(full)
        if info is None:
            return error(f"read: {shown} does not exist")
        if getattr(info, "is_dir", False):
            return error(f"read: {shown} is a directory; use the list tool to see its contents")
        data = await sandbox.read_bytes(full)
        return window_of(io.BytesIO(data), shown, first, last, self.profile.max_output_chars)


@attrs.frozen(slots=True)
class RemoteWriteTool(WriteTool):
    async def _run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput:
        mode = self.profile.file_write
        if mode == "off":
            return error(f"write: file writes are disabled in profile {self.profile.name!r}")
        raw_path = get_str(args, "path", required=True)
        content = get_str(args, "content", required=True)
        sandbox, full, shown = await _resolve(self, ctx, raw_path)
        info = await sandbox.info(full)
        if info is not None and getattr(info, "is_dir", False):
            return error(f"write: {shown} is a directory")
        if info is not None and mode != "full":
            return error(
                f"write: {shown} already exists and this profile only allows creating new files"
            )
        data = content.encode("utf-8")
        await sandbox.write_bytes(full, data)
        verb = "Overwrote" if info is not None else "Created"
        return ToolOutput(
            content=f"{verb} {shown} ({len(data)} bytes)",
            metadata={"path": full, "bytes": len(data), "created": info is None},
        )


@attrs.frozen(slots=True)
class RemoteEditTool(EditTool):
    async def _run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput:
        checked = self.checked(args)
        if isinstance(checked, ToolOutput):
            return checked
        raw_path, old, new, replace_all = checked
        sandbox, full, shown = await _resolve(self, ctx, raw_path)
        info = await sandbox.info(full)
        if info is None:
            return error(f"edit: {shown} does not exist")
        if getattr(info, "is_dir", False):
            return error(f"edit: {shown} is a directory")
        buffer = io.BytesIO(await sandbox.read_bytes(full))
        output = _replace_in(buffer, full, shown, old, new, replace_all)  # type: ignore[arg-type]
        if not output.is_error:
            await sandbox.write_bytes(full, buffer.getvalue())
        return output


@attrs.frozen(slots=True)
class RemoteListTool(ListTool):
    async def _run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput:
        depth = get_int(args, "depth", default=1, minimum=1, maximum=MAX_DEPTH)
        sandbox, full, shown = await _resolve(self, ctx, get_str(args, "path", default="."))
        info = await sandbox.info(full)
        if info is None:
            return error(f"list: {shown} does not exist")
        if not getattr(info, "is_dir", False):
            return error(f"list: {shown} is not a directory; use read to see a file")
        lines: list[str] = []

        async def walk(path: str, level: int) -> bool:
            for entry in sorted(await sandbox.list_dir(path), key=lambda e: str(e.name)):
                if len(lines) >= MAX_ENTRIES:
                    return False
                indent = "  " * level
                if getattr(entry, "is_dir", False):
                    lines.append(f"{indent}{entry.name}/")
                    descend = level < depth and entry.name not in _OPAQUE_DIRS
                    if descend and not await walk(posixpath.join(path, entry.name), level + 1):
                        return False
                else:
                    size = int(getattr(entry, "size", 0) or 0)
                    lines.append(f"{indent}{entry.name}  ({_human_size(size)})")
            return True

        complete = await walk(full, 1)
        header = f"{shown}/" if shown != "." else "./"
        text = f"{header}\n" + ("\n".join(lines) if lines else "  (empty)")
        if not complete:
            text += f"\n[stopped after {MAX_ENTRIES} entries; list a subdirectory or lower depth]"
        text = truncate_middle(text, self.profile.max_output_chars)
        return ToolOutput(content=text, metadata={"entries": len(lines)})


@attrs.frozen(slots=True)
class RemoteGrepTool(GrepTool):
    """grep -E in the sandbox: POSIX extended regular expressions there, not Python's."""

    async def _run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput:
        pattern, glob, ignore_case, max_results = grep_arguments(args)
        sandbox, full, _shown = await _resolve(self, ctx, get_str(args, "path", default="."))
        base = await sandbox.work_dir()
        flags = "-rnIE" + ("i" if ignore_case else "")
        command = (
            f"grep {flags} --exclude-dir=.git -e {_q(pattern)} -- {_q(full)} | head -c 16000000"
        )
        exit_code, output = await sandbox.run(command, cwd=base, time_limit=_SEARCH_LIMIT)
        if exit_code is None:
            return error(f"grep: search timed out after {_SEARCH_LIMIT:g} s")
        matches: list[Match] = []
        matcher = compile_glob(glob) if glob else None
        for line in output.splitlines():
            found = re.match(r"(.*?):(\d+):(.*)", line)
            if found is None:
                continue
            path = found.group(1)
            rel = posixpath.relpath(path, base) if path.startswith(base) else path
            if full != base and not path.startswith(full) and path != full:
                continue
            if (
                matcher is not None
                and glob is not None
                and not matches_name_or_path(matcher, glob, rel)
            ):
                continue
            matches.append(Match(path=rel, line=int(found.group(2)), text=found.group(3)))
        matches.sort(key=lambda m: (sort_key(m.path), m.line))
        out = _render(matches, pattern, max_results, self.profile.max_output_chars, None)
        return attrs.evolve(out, metadata={**out.metadata, "engine": "daytona grep -E"})


@attrs.frozen(slots=True)
class RemoteGlobTool(GlobTool):
    async def _run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput:
        pattern, matcher, max_results = glob_arguments(args)
        sandbox, full, shown = await _resolve(self, ctx, get_str(args, "path", default="."))
        command = f"cd {_q(full)} && find . -path ./.git -prune -o -type f -print | head -n 200000"
        exit_code, output = await sandbox.run(command, cwd=full, time_limit=_SEARCH_LIMIT)
        if exit_code is None:
            return error(f"glob: search timed out after {_SEARCH_LIMIT:g} s")
        found = sorted(
            (rel for rel in (line.removeprefix("./") for line in output.splitlines()) if rel),
            key=sort_key,
        )
        found = [rel for rel in found if matcher.match(rel)]
        if not found:
            return ToolOutput(content=f"No files match {pattern!r}.", metadata={"total": 0})
        prefix = "" if shown == "." else shown.rstrip("/") + "/"
        shown_paths = [prefix + rel for rel in found[:max_results]]
        text = "\n".join(shown_paths)
        if len(shown_paths) < len(found):
            text += f"\n[showing {len(shown_paths)} of {len(found)} files; narrow the pattern]"
        return ToolOutput(
            content=truncate_middle(text, self.profile.max_output_chars),
            metadata={"total": len(found)},
        )


@attrs.frozen(slots=True)
class RemoteSqliteTool(SqliteTool):
    async def _run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput:
        return error(
            "sqlite: not available on the Daytona backend (the database would be opened on "
            "this machine, not in the sandbox); run sqlite3 through bash in the sandbox instead"
        )


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def remote_tool_classes() -> tuple[type[ProfileTool], ...]:
    """The remote tools, in the order of the local ones."""
    return (
        RemoteReadTool,
        RemoteGrepTool,
        RemoteGlobTool,
        RemoteListTool,
        RemoteBashTool,
        RemoteWriteTool,
        RemoteEditTool,
        RemoteSqliteTool,
    )
