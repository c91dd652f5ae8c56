"""The capability a ``delegate`` tool gets: start a child session, and nothing else.

The Registry runs tools; it never holds a Session. A run hands each tool
call a :class:`Delegation` instead: how deep the calling session is, the
profile in force, and one operation, :meth:`Delegation.run_child`, which the
session implements (a child session served by the same services, inside the
tool call, so cancelling the parent's run cancels the child).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ._events import RunResult
from ._profiles import PermissionProfile

ChildRunner = Callable[[str, PermissionProfile, bool], Awaitable[RunResult]]


class Delegation:
    """Start a child session of the calling session (see the module docstring)."""

    __slots__ = ("_run_child", "depth", "profile")

    def __init__(self, *, depth: int, profile: PermissionProfile, run_child: ChildRunner) -> None:
        self.depth = depth
        self.profile = profile
        self._run_child = run_child

    async def run_child(
        self, prompt: str, profile: PermissionProfile, *, may_delegate: bool
    ) -> RunResult:
        """Run ``prompt`` in a new child session with ``profile``; its result.

        ``may_delegate`` says whether the child gets a ``delegate`` tool of
        its own. The child's profile must not be wider than the caller's;
        the tool decides which profile, this capability only runs it.
        """
        return await self._run_child(prompt, profile, may_delegate)
