"""The ``delegate`` tool: hand a sub-task to a child agent session.

The child is a real session actor, served by the same services (Registry,
Store, model pools) as its parent and living inside the parent's tool call:
cancelling the parent's run cancels the tool call, which cancels the child.
Its token usage is reported back and added to the parent's. A child may only
be as permissive as its parent (the parent's profile, or ``readonly``), and
delegation depth is bounded so agents cannot recurse without end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .._profiles import BUILTIN_TOOL_NAMES
from .._tools import JSONSchema, ToolContext, ToolOutput

if TYPE_CHECKING:
    from .._session import Session

__all__ = ["DEFAULT_MAX_DEPTH", "DelegateTool"]

# A root session is depth 0; its children are depth 1, and so on.
DEFAULT_MAX_DEPTH = 2


@attrs.frozen(slots=True)
class DelegateTool:
    """Runs a prompt in a child session and returns its answer."""

    max_depth: int = DEFAULT_MAX_DEPTH

    @property
    def name(self) -> str:
        return "delegate"

    @property
    def description(self) -> str:
        return (
            "Delegate a self-contained sub-task to a sub-agent with a fresh conversation. "
            "Give it everything it needs in 'prompt'; it returns its final answer. Use "
            "profile 'readonly' for investigation that must not change anything."
        )

    @property
    def parameters(self) -> JSONSchema:
        return {
            "type": "object",
            "properties": {
                "prompt": {"type": "string", "description": "The sub-task, self-contained."},
                "profile": {
                    "type": "string",
                    "description": "The sub-agent's permission profile: the parent's own "
                    "(default) or 'readonly'.",
                },
            },
            "required": ["prompt"],
            "additionalProperties": False,
        }

    @property
    def requires_approval(self) -> bool:
        return False

    @property
    def readonly(self) -> bool:
        # Children may write (with the parent's profile); never run them in
        # parallel with other calls of the same turn.
        return False

    async def handle(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput:
        from .._agent import Agent
        from .._session import Session

        parent = ctx.extras.get("session")
        if not isinstance(parent, Session):
            return ToolOutput(content="delegate: no parent session", is_error=True)
        if parent.depth + 1 > self.max_depth:
            return ToolOutput(
                content=f"delegate: maximum delegation depth ({self.max_depth}) reached; "
                "do this part yourself",
                is_error=True,
            )
        prompt = str(args["prompt"])
        requested = args.get("profile")
        profile = parent.profile
        if requested is not None and requested != profile.name:
            if requested != "readonly":
                return ToolOutput(
                    content=f"delegate: a sub-agent may use the parent's profile "
                    f"({profile.name!r}) or 'readonly', not {requested!r}",
                    is_error=True,
                )
            from .._profiles import load_profile

            profile = load_profile("readonly")
        config = attrs.evolve(
            parent.agent.config,
            profile=profile,
            working_dir=str(parent.working_dir),
            auto_approve=parent.auto_approve,
        )
        child_agent = Agent(config)
        for handler in parent.agent.registry:
            # Custom tools carry over; built-ins come from the child's profile.
            if handler.name not in BUILTIN_TOOL_NAMES and handler.name != "delegate":
                child_agent.registry.register(handler)
        if parent.depth + 1 >= self.max_depth:
            child_agent.registry.unregister("delegate")
        child = _child_session(child_agent, parent)
        services = parent._require_services()
        async with trio.open_nursery() as nursery:
            await nursery.start(child.serve, services)
            result = await child.run(prompt=prompt)
            nursery.cancel_scope.cancel(reason="delegated run finished")
        metadata: dict[str, Any] = {
            "child_session": child.id,
            "child_status": result.status,
            "child_usage": dict(result.usage),
        }
        if result.status == "completed":
            return ToolOutput(content=result.text, metadata=metadata)
        detail = result.error or result.cancel_reason or ""
        if result.status == "paused":
            detail = "it needed an approval that nobody could give"
        return ToolOutput(
            content=f"delegate: the sub-agent ended with status {result.status}"
            + (f" ({detail})" if detail else "")
            + (f"; its last text: {result.text}" if result.text else ""),
            is_error=True,
            metadata=metadata,
        )


def _child_session(agent: Any, parent: Session) -> Session:
    from .._session import Session

    child = Session(agent)
    child.depth = parent.depth + 1
    child.approval_callback = parent.approval_callback
    child.approval_timeout = parent.approval_timeout
    child.run_timeout = parent.run_timeout
    return child
