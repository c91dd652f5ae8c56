"""``rho-actors chat``: a conversation on one persisted session, with slash commands.

Every turn is a run on the same session, recorded in the store as it goes,
so a chat can be left at any point and picked up with ``/resume ID`` or
``rho-actors sessions resume ID``. There is no input while a run streams, so
cancelling is Ctrl-C, not a command.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable

import attrs
import trio
from rich.table import Table

from .._agent import Agent
from .._config import AgentConfig
from .._errors import ConfigError, RhoError
from .._session import Session
from .._session_store import SessionStore
from .._supervisor import Supervisor, open_supervisor
from ._common import (
    EXIT_OK,
    CliError,
    build_agent,
    config_from_flags,
    maybe_offline,
    open_store,
    plural,
    resolve_session,
    run_timeout,
    short_id,
    stored_config,
)
from ._run import run_turn
from ._terminal import INTERRUPT_REASON, Terminal, open_terminal

HELP = """\
commands:
  /usage          tokens used so far, and how full the context is
  /compact [how]  summarise older turns now (optional instructions)
  /profile NAME   switch the permission profile from the next turn
  /resume ID      continue another stored session here
  /cancel         (Ctrl-C cancels the run in progress; a second Ctrl-C quits)
  /help           this list
  /exit           leave (so does Ctrl-D)"""


@attrs.frozen(kw_only=True)
class ChatOptions:
    """What the REPL needs besides its session: how to build agents and answer approvals."""

    store: SessionStore
    make_agent: Callable[[AgentConfig | None], Agent]
    assume_yes: bool
    # Each turn's deadline in seconds (--timeout); None: none.
    timeout: float | None = None


def main(args: argparse.Namespace) -> int:
    agent = build_agent(config_from_flags(args))
    options = chat_options(args)
    return trio.run(chat, options, agent, None)


def chat_options(args: argparse.Namespace) -> ChatOptions:
    """A stored session's config comes back with the command's flags on top."""

    def make_agent(base: AgentConfig | None) -> Agent:
        return build_agent(config_from_flags(args, base=base))

    return ChatOptions(
        store=open_store(args),
        make_agent=make_agent,
        assume_yes=args.yes,
        timeout=run_timeout(args) if hasattr(args, "timeout") else None,
    )


async def chat(options: ChatOptions, agent: Agent | None, resume_id: str | None) -> int:
    """Run the REPL on a new session (``agent``) or on the stored one ``resume_id``."""
    _enable_line_editing()
    async with contextlib.AsyncExitStack() as stack:
        if agent is not None:
            agent = await stack.enter_async_context(maybe_offline(agent))
        term = await stack.enter_async_context(open_terminal())
        supervisor = await stack.enter_async_context(open_supervisor(store=options.store))
        if resume_id is not None:
            session = await _resume(supervisor, options, resume_id)
        else:
            assert agent is not None
            session = await supervisor.start_session(agent)
            session.run_timeout = options.timeout
        repl = Repl(term, supervisor, options, session)
        await repl.loop()
    return EXIT_OK


def _enable_line_editing() -> None:
    """Arrow keys and history at the prompt, when a person is typing."""
    if sys.stdin is not None and sys.stdin.isatty():
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401 - importing it is what turns input() editing on


async def _resume(supervisor: Supervisor, options: ChatOptions, prefix: str) -> Session:
    store = options.store
    info = await trio.to_thread.run_sync(resolve_session, store, prefix)
    config = await trio.to_thread.run_sync(stored_config, store, info.id)
    agent = await trio.to_thread.run_sync(options.make_agent, config)
    session = await supervisor.resume_session(info.id, agent)
    session.run_timeout = options.timeout
    return session


class Repl:
    """Reads lines, runs prompts, answers slash commands; one session at a time."""

    def __init__(
        self, term: Terminal, supervisor: Supervisor, options: ChatOptions, session: Session
    ) -> None:
        self.term = term
        self.supervisor = supervisor
        self.options = options
        self.session = session

    async def loop(self) -> None:
        self._introduce()
        # A prompt is for a person; piped input would only interleave it with the output.
        interactive = sys.stdin is not None and sys.stdin.isatty()
        while True:
            line = await self.term.ask("you> " if interactive else "")
            if line is None:
                if interactive:
                    self.term.write_text("\n")  # Ctrl-D leaves the cursor after the prompt
                break
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                if not await self.command(line):
                    break
                continue
            await run_turn(self.term, self.session, line, assume_yes=self.options.assume_yes)
        self.term.note(
            f"session saved: rho-actors sessions resume {short_id(self.session.id)}", style="dim"
        )

    def _introduce(self) -> None:
        session = self.session
        state = session.state
        self.term.note(
            f"session {session.id} · model {session.agent.config.model} · "
            f"profile {session.profile.name} · {plural(len(state.messages), 'message')} so far",
            style="bold",
        )
        if state.pending_approvals:
            names = ", ".join(p.tool_name for p in state.pending_approvals)
            self.term.note(
                f"this session was paused waiting for approval of {names}; "
                "a new prompt denies those calls",
                style="yellow",
            )
        self.term.note("/help for commands · Ctrl-C cancels a run · /exit or Ctrl-D leaves")

    async def command(self, line: str) -> bool:
        """Handle one slash command; False means leave the REPL."""
        name, _, rest = line.partition(" ")
        rest = rest.strip()
        match name:
            case "/exit" | "/quit":
                return False
            case "/help":
                self.term.note(HELP)
            case "/usage":
                self._show_usage()
            case "/compact":
                await self._compact(rest or None)
            case "/cancel":
                self.term.note("nothing is running: Ctrl-C cancels a run while it streams")
            case "/profile":
                await self._switch_profile(rest)
            case "/resume":
                await self._resume(rest)
            case _:
                self.term.note(f"unknown command {name} (/help lists them)", style="yellow")
        return True

    def _show_usage(self) -> None:
        session = self.session
        state = session.state
        table = Table(title=f"session {short_id(session.id)}", title_justify="left")
        table.add_column("measure")
        table.add_column("value", justify="right")
        for key, value in state.usage.items():
            table.add_row(key.replace("_", " "), f"{value:,}")
        table.add_row("runs", str(state.run_count))
        table.add_row("compactions", str(state.compactions))
        estimate = session.context_tokens()
        share = estimate / session.context_window if session.context_window else 0.0
        table.add_row("context", f"~{estimate:,} of {session.context_window:,} ({share:.0%})")
        self.term.end_line()
        self.term.err.print(table)

    async def _compact(self, instructions: str | None) -> None:
        session = self.session

        async def cancel() -> None:
            await session.cancel(INTERRUPT_REASON)

        try:
            with self.term.interrupts.cancelling(cancel):
                result = await session.compact(instructions)
        except RhoError as exc:
            text = str(exc)
            # The error may say so already ("compaction failed: ..."): once is enough.
            prefix = "" if text.startswith("compaction failed") else "compaction failed: "
            self.term.note(f"{prefix}{text}", style="red")
            return
        if not result.summary:
            self.term.note("nothing to compact yet: the last two turns are always kept")
            return
        self.term.note(
            f"compacted: ~{result.tokens_before:,} → ~{result.tokens_after:,} tokens",
            style="magenta",
        )

    async def _switch_profile(self, name: str) -> None:
        if not name:
            self.term.note(f"profile: {self.session.profile.name} (/profile NAME to switch)")
            return
        try:
            await self.session.reconfigure(profile=name)
        except ConfigError as exc:
            self.term.note(f"cannot switch profile: {exc}", style="red")
            return
        self.term.note(f"profile {name} from the next turn", style="green")

    async def _resume(self, prefix: str) -> None:
        if not prefix:
            self.term.note("usage: /resume ID (see `rho-actors sessions list`)", style="yellow")
            return
        if self.session.id.startswith(prefix):
            self.term.note("that is this session")
            return
        try:
            session = await _resume(self.supervisor, self.options, prefix)
        except (CliError, RhoError) as exc:
            self.term.note(f"cannot resume: {exc}", style="red")
            return
        await self.supervisor.stop_session(self.session)
        self.session = session
        self._introduce()
