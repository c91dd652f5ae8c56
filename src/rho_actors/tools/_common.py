"""What every built-in tool shares: argument reading, paths, output limits, errors.

A tool call must never crash a run: bad input, missing files and refusals all
become a :class:`ToolOutput` with ``is_error=True`` that the model can read
and act on. :func:`guarded` is where that happens, once for all tools, and
:class:`ProfileTool` is the base that routes every built-in tool through it.
"""

from __future__ import annotations

import abc
import os
import stat
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, overload

import attrs
import trio

from .._errors import InvalidToolArguments, ToolError
from .._paths import resolve_in_workdir
from .._profiles import PermissionProfile
from .._tools import JSONSchema, ToolContext, ToolOutput

__all__ = [
    "ProfileTool",
    "display_path",
    "error",
    "get_bool",
    "get_int",
    "get_optional_str",
    "get_str",
    "guarded",
    "head_lines",
    "resolve_path",
    "resolve_shown",
    "static_approval",
    "truncate_lines",
    "truncate_middle",
    "truncated_join",
]


@attrs.frozen(slots=True)
class ProfileTool(abc.ABC):
    """A built-in tool: built with the profile it serves, failures turned into results.

    Subclasses give ``name``, ``description``, ``parameters`` and ``readonly``,
    and implement :meth:`_run`; :meth:`handle` runs it under :func:`guarded`,
    and ``requires_approval`` is :func:`static_approval` for the tool's name.
    """

    profile: PermissionProfile

    @property
    @abc.abstractmethod
    def name(self) -> str: ...

    @property
    @abc.abstractmethod
    def description(self) -> str: ...

    @property
    @abc.abstractmethod
    def parameters(self) -> JSONSchema: ...

    @property
    @abc.abstractmethod
    def readonly(self) -> bool: ...

    @property
    def requires_approval(self) -> bool:
        return static_approval(self.profile, self.name)

    @property
    def uses_subprocess(self) -> bool:
        """Whether calls count against the Registry's global subprocess limit."""
        return False

    async def handle(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput:
        return await guarded(self.name, self._run, args, ctx)

    @abc.abstractmethod
    async def _run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput:
        """The tool's body; may raise, :meth:`handle` turns failures into error results."""


def error(message: str, **metadata: Any) -> ToolOutput:
    return ToolOutput(content=message, is_error=True, metadata=metadata)


async def guarded(
    tool_name: str,
    run: Callable[[Mapping[str, Any], ToolContext], Awaitable[ToolOutput]],
    args: Mapping[str, Any],
    ctx: ToolContext,
) -> ToolOutput:
    """Run a tool body, turning every failure except cancellation into an error result."""
    if not isinstance(args, Mapping):
        return error(f"{tool_name}: arguments must be a JSON object")
    try:
        return await run(args, ctx)
    except ToolError as exc:
        return error(f"{tool_name}: {exc.message}")
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        return error(f"{tool_name}: {exc.strerror or exc}{where}")
    except Exception as exc:
        # The exception's type travels along: the run ends on some (a sandbox
        # that cannot be reached fails every later call the same way).
        return error(
            f"{tool_name} failed: {type(exc).__name__}: {exc}", exception=type(exc).__name__
        )


def get_str(
    args: Mapping[str, Any], key: str, *, default: str | None = None, required: bool = False
) -> str:
    value = get_optional_str(args, key)
    if value is None:
        if required or default is None:
            raise InvalidToolArguments(f"'{key}' is required")
        return default
    return value


def get_optional_str(args: Mapping[str, Any], key: str) -> str | None:
    value = args.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidToolArguments(f"'{key}' must be a string, got {type(value).__name__}")
    return value


@overload
def get_int(
    args: Mapping[str, Any],
    key: str,
    *,
    default: int,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int: ...


@overload
def get_int(
    args: Mapping[str, Any],
    key: str,
    *,
    default: None = None,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None: ...


def get_int(
    args: Mapping[str, Any],
    key: str,
    *,
    default: int | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    value = args.get(key)
    if value is None:
        return default
    # JSON has one number type; accept 3.0 for 3, but not True or 2.5.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidToolArguments(f"'{key}' must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise InvalidToolArguments(f"'{key}' must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        value = maximum
    return value


def get_bool(args: Mapping[str, Any], key: str, *, default: bool = False) -> bool:
    value = args.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidToolArguments(f"'{key}' must be true or false, got {value!r}")
    return value


async def resolve_path(path: str, ctx: ToolContext, profile: PermissionProfile) -> Path:
    """Resolve ``path`` against the working directory, off the event loop."""
    return await trio.to_thread.run_sync(
        lambda: resolve_in_workdir(
            path, Path(ctx.working_dir), confine=profile.confine_to_working_dir
        )
    )


async def resolve_shown(
    path: str, ctx: ToolContext, profile: PermissionProfile
) -> tuple[Path, str]:
    """``path`` resolved as :func:`resolve_path` does, and as the model is shown it."""
    resolved = await resolve_path(path, ctx, profile)
    return resolved, display_path(resolved, Path(ctx.working_dir))


def display_path(path: Path, working_dir: Path) -> str:
    """``path`` relative to the working directory when inside it, else absolute."""
    root = os.path.realpath(working_dir)
    text = str(path)
    if text == root:
        return "."
    if text.startswith(root.rstrip("/") + "/"):
        return text[len(root.rstrip("/")) + 1 :]
    return text


def truncate_middle(text: str, limit: int) -> str:
    """Keep the head and tail of ``text``; say how much of the middle was dropped.

    Both ends matter in tool output: the head shows what started, the tail
    how it ended (the error, the exit status, the summary line).
    """
    if len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - head
    omitted = len(text) - head - tail
    return truncated_join(text[:head], omitted, text[len(text) - tail :])


def truncated_join(head: str, omitted: int, tail: str) -> str:
    """``head`` and ``tail`` around a line saying how many characters were dropped,
    of how many (so the model knows how big the whole was)."""
    total = len(head) + omitted + len(tail)
    return f"{head}\n... [truncated {omitted} of {total} characters] ...\n{tail}"


def head_lines(text: str, limit: int) -> str:
    """The whole lines at the start of ``text`` that fit in ``limit`` characters.

    With no line break in the first ``limit`` characters, those characters.
    """
    return text[:limit].rsplit("\n", 1)[0]


def truncate_lines(text: str, limit: int) -> str:
    """``text``, or when longer than ``limit`` its :func:`head_lines` and a marker."""
    if len(text) <= limit:
        return text
    return head_lines(text, limit) + "\n[output truncated]"


def static_approval(profile: PermissionProfile, tool_name: str) -> bool:
    """Whether *every* call of the tool waits for approval under ``profile``.

    Per-call decisions (``bash`` and ``sqlite`` under ``"dangerous"``) are
    :meth:`PermissionProfile.needs_approval`'s; callers combine both with *or*.
    """
    match profile.approval:
        case "all":
            return True
        case "granular":
            return tool_name in profile.approval_tools
        case "dangerous":
            return tool_name in ("write", "edit")
        case _:
            return False


def modifiable(info: os.stat_result, shown: str, *, confined: bool) -> str | None:
    """Why a file tool must not change the file it opened, or None.

    Only regular files are changed; and where the profile confines tools to
    the working directory, not a file with other hard links, which may be
    the same file under a name outside it.
    """
    if not stat.S_ISREG(info.st_mode):
        return f"{shown} is not a regular file; not changed"
    if confined and info.st_nlink > 1:
        return (
            f"{shown} has {info.st_nlink} hard links (it may also live outside the working "
            "directory); not changed"
        )
    return None
