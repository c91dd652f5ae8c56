"""Compaction: replacing old history with a model-written summary.

The cut point is chosen so the result is always a valid conversation: we
keep the last ``keep_user_turns`` user messages and everything after them
verbatim, and a cut never falls between an assistant tool call and its
results (it only ever falls just before a user message). System messages are
never summarised away.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from ._events import CompactResult
from ._llm import ModelClient
from ._state import State, _encode_message, _estimate

DEFAULT_CONTEXT_WINDOW = 128_000
DEFAULT_THRESHOLD = 0.7
KEEP_USER_TURNS = 2

# Context windows of well-known models; anything else gets the default.
KNOWN_CONTEXT_WINDOWS: dict[str, int] = {
    "gpt-5": 400_000,
    "gpt-5-mini": 400_000,
    "gpt-5-nano": 400_000,
    "gpt-4.1": 1_047_576,
    "gpt-4.1-mini": 1_047_576,
    "gpt-4o": 128_000,
    "gpt-4o-mini": 128_000,
    "o3": 200_000,
    "o4-mini": 200_000,
}

SUMMARY_INSTRUCTIONS = (
    "Summarise the conversation above so that work can continue from the summary alone. "
    "Keep: the user's goals and constraints, decisions made, facts learned (file names, "
    "commands, results, errors), and what remains to be done. Be concise and concrete."
)


@functools.lru_cache(maxsize=256)
def context_window_for(model: str) -> int:
    """The model's context window (its family's by prefix; else a default).
    Cached: every Session asks, and there are only so many model names."""
    if model in KNOWN_CONTEXT_WINDOWS:
        return KNOWN_CONTEXT_WINDOWS[model]
    for name, window in KNOWN_CONTEXT_WINDOWS.items():
        if model.startswith(name + "-"):
            return window
    return DEFAULT_CONTEXT_WINDOW


def split_for_compaction(
    messages: list[dict[str, Any]], keep_user_turns: int = KEEP_USER_TURNS
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split into (to summarise, to keep), system messages excluded from both.

    The kept part starts at a user message, so no tool call is separated
    from its results. If there are too few user turns to leave anything to
    summarise, the first part is empty.
    """
    body = [m for m in messages if m.get("role") != "system"]
    user_positions = [i for i, m in enumerate(body) if m.get("role") == "user"]
    if len(user_positions) <= keep_user_turns:
        return [], body
    cut = user_positions[-keep_user_turns] if keep_user_turns > 0 else len(body)
    return body[:cut], body[cut:]


async def summarise(
    client: ModelClient,
    state: State,
    *,
    instructions: str | None,
    trigger: str,
    keep_user_turns: int = KEEP_USER_TURNS,
    overhead: int = 0,
) -> tuple[CompactResult, dict[str, int]] | None:
    """Ask the model for a summary and install it; None when there is nothing to compact.

    The state is only changed after the summary arrived: a failed or
    cancelled summary request leaves the history exactly as it was.
    ``overhead`` is the tokens every request carries besides its messages
    (the tool schemas), counted in both sizes reported.
    """
    old, keep = split_for_compaction(state.messages, keep_user_turns)
    if not old:
        return None
    tokens_before = state.estimate_tokens(overhead)
    system = [m for m in state.messages if m.get("role") == "system"][:1]
    request = [
        *system,
        *old,
        {
            "role": "user",
            "content": SUMMARY_INSTRUCTIONS
            + (f"\n\nAdditional instructions: {instructions}" if instructions else ""),
        },
    ]
    # Tool calls in the summarised part are sent as plain transcript text:
    # the summary request offers no tools, and some servers reject tool
    # calls without tool definitions.
    encoded = [_encode_message(_as_transcript(m)) for m in request]
    turn = await client.complete(encoded)
    summary = turn.text.strip()
    if not summary:
        raise ValueError("the model returned an empty summary")
    tokens_after = _estimate([*system, {"role": "user", "content": summary}, *keep]) + overhead
    state.replace_with_summary(summary, tokens_before, tokens_after, keep=keep, trigger=trigger)
    return CompactResult(summary, tokens_before, tokens_after, trigger), turn.usage


def _as_transcript(message: dict[str, Any]) -> dict[str, Any]:
    role = message.get("role")
    if role == "tool":
        return {
            "role": "user",
            "content": f"[tool result {message.get('tool_call_id')}]\n{message.get('content')}",
        }
    if role == "assistant" and message.get("tool_calls"):
        calls = "\n".join(
            f"[tool call {c.get('function', {}).get('name')}] "
            f"{c.get('function', {}).get('arguments')}"
            for c in message["tool_calls"]
        )
        text = message.get("content") or ""
        return {"role": "assistant", "content": f"{text}\n{calls}".strip()}
    if not isinstance(message.get("content"), str | None):
        return {"role": role, "content": json.dumps(message.get("content"))}
    return message
