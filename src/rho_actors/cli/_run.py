"""``rho-actors run PROMPT``: one run, shown as it happens.

The session is hosted by a supervisor with the store, exactly as a library
user would host it, so the run is persisted (``sessions show`` replays it)
and visible to ``monitor`` in other terminals.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import trio

from .._agent import Agent
from .._cancel import CancellationToken
from .._events import RunResult
from .._session import Session
from .._session_store import SessionStore
from .._supervisor import open_supervisor
from ._common import (
    UsageError,
    build_agent,
    config_from_flags,
    maybe_offline,
    open_store,
    output_path,
    run_timeout,
)
from ._terminal import (
    INTERRUPT_REASON,
    EventPrinter,
    Terminal,
    approval_callback,
    describe_result,
    exit_code_for,
    open_terminal,
    status_style,
)


@attrs.frozen(kw_only=True)
class Outcome:
    """A finished run and what the output file needs to know about it."""

    session_id: str
    result: RunResult
    seconds: float


def main(args: argparse.Namespace) -> int:
    prompt = _read_prompt(args.prompt)
    agent = build_agent(config_from_flags(args))
    store = open_store(args)
    output = output_path(args.output)
    timeout = run_timeout(args)
    outcome = trio.run(_run, agent, store, prompt, args.yes, timeout)
    if output is not None:
        if outcome.result.status == "completed":
            write_output(output, outcome)
        else:
            # A failed run has no answer: an empty or partial file would look
            # like one to whatever reads it next.
            print(
                f"--output: nothing written to {output} (the run ended {outcome.result.status})",
                file=sys.stderr,
            )
    return exit_code_for(outcome.result.status)


def _read_prompt(prompt: str) -> str:
    """The prompt argument; ``-`` reads it from stdin (for long prompts and pipes)."""
    if prompt == "-":
        prompt = sys.stdin.read()
    if not prompt.strip():
        raise UsageError("PROMPT: expected a non-empty prompt")
    return prompt


async def _run(
    agent: Agent, store: SessionStore, prompt: str, assume_yes: bool, run_timeout: float | None
) -> Outcome:
    async with (
        maybe_offline(agent) as agent,
        open_terminal() as term,
        open_supervisor(store=store) as supervisor,
    ):
        session = await supervisor.start_session(agent)
        session.run_timeout = run_timeout  # the run ends "cancelled: deadline exceeded"
        return await run_turn(term, session, prompt, assume_yes=assume_yes)


async def run_turn(term: Terminal, session: Session, prompt: str, *, assume_yes: bool) -> Outcome:
    """One prompt on ``session``, streamed to the terminal; the first Ctrl-C cancels it.

    Ctrl-C cancels through ``session.cancel`` (the message the actor reads
    while the run is in flight) and through a token given to the run: the
    token is level-triggered, so a Ctrl-C that lands before the run has
    reached the actor still cancels it instead of being lost.
    """
    session.approval_callback = approval_callback(term, assume_yes=assume_yes)
    token = CancellationToken()

    async def cancel() -> None:
        token.cancel(INTERRUPT_REASON)
        await session.cancel(INTERRUPT_REASON)

    printer = EventPrinter(term)
    started = time.perf_counter()
    with term.interrupts.cancelling(cancel):
        result = await session.run(prompt, on_event=printer, token=token)
    seconds = time.perf_counter() - started
    line = describe_result(result, session.id, seconds, shown_errors=printer.errors)
    term.note(line, style=status_style(result.status))
    return Outcome(session_id=session.id, result=result, seconds=seconds)


def write_output(path: Path, outcome: Outcome) -> None:
    """``--output``: the final text, or the whole result as JSON for a ``.json`` path."""
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(result_record(outcome), indent=2, ensure_ascii=False) + "\n")
    else:
        text = outcome.result.text
        path.write_text(text if text.endswith("\n") or not text else text + "\n")


def result_record(outcome: Outcome) -> dict[str, Any]:
    result = outcome.result
    return {
        "session_id": outcome.session_id,
        "status": result.status,
        "text": result.text,
        "usage": result.usage,
        "turns": result.turns,
        "error": result.error,
        "cancel_reason": result.cancel_reason,
        "pending_approvals": [p.tool_name for p in result.pending_approvals],
        "seconds": round(outcome.seconds, 3),
    }
