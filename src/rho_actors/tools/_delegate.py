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
from typing import Any

import attrs

from .._delegation import Delegation
from .._profiles import load_profile
from .._tools import JSONSchema, ToolContext, ToolOutput

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
        delegation = ctx.delegation
        if not isinstance(delegation, Delegation):
            return ToolOutput(content="delegate: no parent session", is_error=True)
        if delegation.depth + 1 > self.max_depth:
            return ToolOutput(
                content=f"delegate: maximum delegation depth ({self.max_depth}) reached; "
                "do this part yourself",
                is_error=True,
            )
        prompt = str(args["prompt"])
        if not prompt.strip():
            return ToolOutput(
                content="delegate: the prompt is empty; say what the sub-agent should do",
                is_error=True,
            )
        requested = args.get("profile")
        profile = delegation.profile
        if requested is not None and requested != profile.name:
            if requested != "readonly":
                return ToolOutput(
                    content=f"delegate: a sub-agent may use the parent's profile "
                    f"({profile.name!r}) or 'readonly', not {requested!r}",
                    is_error=True,
                )
            # Never wider than the parent in any dimension, even if the
            # built-in readonly would be (a parent without a shell, say).
            profile = load_profile("readonly").restricted_to(delegation.profile)
        result = await delegation.run_child(
            prompt, profile, may_delegate=delegation.depth + 1 < self.max_depth
        )
        metadata: dict[str, Any] = {
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
