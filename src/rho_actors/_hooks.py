"""Lifecycle hooks and guardrails: code that watches, or vetoes, what a run does.

:class:`AgentHooks` has one async method per lifecycle point, each a no-op:
subclass it and override what you need (logging, a WebSocket feed, metrics).
Hooks are registered on an agent (``Agent(hooks=[...])``) or on a
supervisor (``open_supervisor(hooks=[...])``, for every session it hosts).

Guardrails decide: an input guardrail sees the prompt before the model
does, an output guardrail sees the result before the caller does; each
returns None to let it through or a reason to block it. A blocked run ends
with ``status="error"`` and ``result.blocked_by`` naming the guardrail.

A hook or guardrail that raises fails only its own run, with an error that
names it; the session and every other run go on.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ._events import AgentEvent

if TYPE_CHECKING:
    from ._events import RunResult


@attrs.frozen(slots=True)
class HookContext:
    """Which run a hook is called for."""

    session_id: str
    run_id: str | None
    """The handle id of a run started with ``session.start`` (None for ``run()``)."""
    prompt: str | None
    """The run's prompt (None when a paused run resumes)."""


class AgentHooks:
    """Override the points you need; every method is an async no-op here."""

    async def on_run_start(self, ctx: HookContext) -> None:
        """A run is about to call the model for the first time."""

    async def on_run_end(self, ctx: HookContext, result: RunResult) -> None:
        """A run ended, however it ended."""

    async def on_model_start(self, ctx: HookContext, turn: int) -> None:
        """A model call is about to be sent (``turn`` counts from 1)."""

    async def on_model_end(self, ctx: HookContext, event: AgentEvent) -> None:
        """A model call returned (``event`` is its ``api_call_complete``, with usage)."""

    async def on_tool_start(self, ctx: HookContext, event: AgentEvent) -> None:
        """A tool call is about to run (``event.tool_name``, ``event.tool_args``)."""

    async def on_tool_end(self, ctx: HookContext, event: AgentEvent) -> None:
        """A tool call finished (``event.tool_result``)."""

    async def on_approval_request(self, ctx: HookContext, event: AgentEvent) -> None:
        """A tool call waits for approval."""


Guardrail = Callable[[Any], "Awaitable[str | None] | str | None"]
"""``guard(prompt)`` (input) or ``guard(result)`` (output): None, or why it is blocked."""

# Which hook method an event reaches.
EVENT_HOOKS: dict[str, str] = {
    "tool_start": "on_tool_start",
    "tool_end": "on_tool_end",
    "approval_request": "on_approval_request",
    "api_call_complete": "on_model_end",
}


class HookFailed(Exception):
    """A hook or guardrail raised: its run ends with ``status="error"``."""


def describe(target: object, method: str | None = None) -> str:
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{name}.{method}" if method else name


async def call_hook(hooks: Sequence[AgentHooks], method: str, *args: Any) -> None:
    """Call ``method`` on every hook in order; the first that raises fails the run."""
    for hook in hooks:
        try:
            await getattr(hook, method)(*args)
        except Exception as exc:
            raise HookFailed(
                f"hook {describe(hook, method)} raised {type(exc).__name__}: {exc}"
            ) from exc


async def check_guardrails(guardrails: Sequence[Guardrail], value: Any) -> tuple[str, str] | None:
    """The first guardrail that blocks ``value``: (its name, its reason); None if all pass."""
    for guard in guardrails:
        try:
            verdict: Any = guard(value)
            if inspect.isawaitable(verdict):
                verdict = await verdict
        except Exception as exc:
            raise HookFailed(
                f"guardrail {describe(guard)} raised {type(exc).__name__}: {exc}"
            ) from exc
        if verdict is not None and verdict is not False:
            return describe(guard), str(verdict) if verdict is not True else "blocked"
    return None
