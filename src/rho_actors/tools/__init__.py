"""The built-in tools: shell, files, search and SQLite, each shaped by a profile.

Every tool is built with the :class:`~rho_actors.PermissionProfile` it serves
and enforces it itself (a ``WriteTool`` under ``file_write: off`` refuses,
even if someone registers it by hand). :func:`builtin_tools` gives the tools
a profile enables, in the order the model should see them.

Approval is decided per call: a tool's ``requires_approval`` is true when
*every* call needs approval under the profile; calls that need it only
sometimes (``bash`` running something that is not read-only, a mutating
``sqlite`` query under ``approval: dangerous``) are found by
``profile.needs_approval(name, args)``. Callers combine the two with *or*.
"""

from __future__ import annotations

import functools

from .._profiles import PermissionProfile
from .._tools import ToolHandler
from ._bash import BashTool as BashTool
from ._edit import EditTool as EditTool
from ._glob import GlobTool as GlobTool
from ._grep import GrepTool as GrepTool
from ._list import ListTool as ListTool
from ._read import ReadTool as ReadTool
from ._remote import remote_tool_classes
from ._sqlite import SqliteTool as SqliteTool
from ._write import WriteTool as WriteTool

__all__ = [
    "BashTool",
    "EditTool",
    "GlobTool",
    "GrepTool",
    "ListTool",
    "ReadTool",
    "SqliteTool",
    "WriteTool",
    "builtin_tools",
]

_TOOL_CLASSES = (ReadTool, GrepTool, GlobTool, ListTool, BashTool, WriteTool, EditTool, SqliteTool)


def builtin_tools(profile: PermissionProfile, *, remote: bool = False) -> list[ToolHandler]:
    """The built-in tools ``profile`` allows, each configured by it.

    With ``remote``, the same tools acting in the session's Daytona sandbox.
    The tools are immutable, so one set per profile is shared by every agent
    that uses it: building an Agent stays cheap when thousands are made.
    """
    return list(_builtin_tools(profile, remote))


@functools.lru_cache(maxsize=64)
def _builtin_tools(profile: PermissionProfile, remote: bool) -> tuple[ToolHandler, ...]:
    tools: list[ToolHandler] = []
    for cls in remote_tool_classes() if remote else _TOOL_CLASSES:
        tool = cls(profile)
        if profile.allows_tool(tool.name):
            tools.append(tool)
    return tuple(tools)
