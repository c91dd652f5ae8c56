"""``rho-actors``: the argument parser, and dispatch to one module per command.

The whole command-line surface is declared here so ``--help`` and this file
say the same thing; the commands' behaviour lives in their own modules
(``_run``, ``_chat``, ``_dispatch``, ``_sessions``, ``_monitor``,
``_profiles``, ``_demo``). Each of those exposes ``main(args) -> int`` and
does its async work under ``trio.run``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeAlias

from .. import __version__
from . import (
    _chat,
    _demo,
    _dispatch,
    _mcp,
    _monitor,
    _profiles,
    _run,
    _sandboxes,
    _sessions,
    _store,
    _worker,
)
from ._common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    ArgumentParser,
    add_agent_flags,
    add_store_flag,
    add_timeout_flag,
    report_error,
    unwrap_group,
)

Handler = Callable[[argparse.Namespace], int]

if TYPE_CHECKING:
    Subcommands: TypeAlias = argparse._SubParsersAction[ArgumentParser]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
        )
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:
        return _reader_went_away()
    except BaseExceptionGroup as group:
        if isinstance(unwrap_group(group), KeyboardInterrupt):
            return _interrupted()
        return report_error(group, debug=args.debug)
    except Exception as exc:
        return report_error(exc, debug=args.debug)


def _interrupted() -> int:
    """Ctrl-C before a command installed its own handling (or after it removed it)."""
    print("\ninterrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


def _reader_went_away() -> int:
    """``rho-actors sessions list | head``: the reader left; stop quietly, as Unix tools do.

    stdout is pointed at /dev/null so the interpreter's final flush does not
    fail a second time with a traceback.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_ERROR


def build_parser() -> ArgumentParser:
    # --debug is accepted before or after the command name; SUPPRESS keeps a
    # subcommand's default from overwriting the one given before it.
    common = ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks for errors",
    )
    common.add_argument(
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log what the library does (retries, reconnects, store faults) to stderr",
    )
    parser = ArgumentParser(
        prog="rho-actors",
        description="A trio-native actor supervisor for LLM agents.",
        epilog="Run `rho-actors demo` for an offline tour (no API key needed).",
    )
    parser.add_argument("--version", action="version", version=f"rho-actors {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument(
        "--verbose", action="store_true", help="log what the library does to stderr"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(commands, common)
    _add_chat(commands, common)
    _add_dispatch(commands, common)
    _add_sessions(commands, common)
    _add_monitor(commands, common)
    _add_profiles(commands, common)
    _add_sandboxes(commands, common)
    _add_store(commands, common)
    _add_worker(commands, common)
    _add_mcp(commands, common)
    _add_demo(commands, common)
    return parser


def _command(
    commands: Subcommands,
    common: ArgumentParser,
    name: str,
    handler: Handler,
    help: str,
) -> ArgumentParser:
    parser = commands.add_parser(name, help=help, description=help, parents=[common])
    parser.set_defaults(handler=handler)
    return parser


def _add_run(commands: Subcommands, common: ArgumentParser) -> None:
    run = _command(commands, common, "run", _run.main, "run one prompt, streaming as it happens")
    add_timeout_flag(run, "the run")
    run.add_argument("prompt", metavar="PROMPT", help="the prompt ('-' reads it from stdin)")
    add_agent_flags(run)
    add_store_flag(run)
    run.add_argument(
        "--output",
        metavar="FILE",
        help="write the final text there (a .json FILE gets the whole result)",
    )
    run.add_argument("--yes", action="store_true", help="approve every call that asks")


def _add_chat(commands: Subcommands, common: ArgumentParser) -> None:
    chat = _command(commands, common, "chat", _chat.main, "a multi-turn conversation (a REPL)")
    add_agent_flags(chat)
    add_store_flag(chat)
    add_timeout_flag(chat, "each turn")
    chat.add_argument("--yes", action="store_true", help="approve every call that asks")


def _add_dispatch(commands: Subcommands, common: ArgumentParser) -> None:
    dispatch = _command(
        commands, common, "dispatch", _dispatch.main, "run many prompts at once (a fan-out)"
    )
    dispatch.add_argument(
        "file",
        metavar="FILE",
        help="tasks: YAML (a list, or {tasks: [...]}) or JSONL; each has a prompt "
        "and optionally id, profile, model, working_dir",
    )
    dispatch.add_argument(
        "--concurrency",
        type=_positive_int,
        default=8,
        metavar="N",
        help="runs in flight at once (default: 8)",
    )
    dispatch.add_argument(
        "--output", metavar="FILE", help="results as JSONL, one line per task as it finishes"
    )
    add_agent_flags(dispatch)
    add_timeout_flag(dispatch, "each run")
    add_store_flag(dispatch)
    dispatch.add_argument("--no-store", action="store_true", help="do not persist the sessions")
    dispatch.add_argument(
        "--wait",
        action="store_true",
        help="with a database --store: follow the queued runs and collect their results",
    )
    dispatch.add_argument(
        "--local",
        action="store_true",
        help="with a database --store: run here instead of queueing for workers",
    )


def _add_sessions(commands: Subcommands, common: ArgumentParser) -> None:
    sessions = commands.add_parser(
        "sessions", help="list, show, resume and export stored sessions", parents=[common]
    )
    actions = sessions.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = _command(actions, common, "list", _sessions.list_main, "list stored sessions")
    add_store_flag(listing)
    listing.add_argument("--limit", type=_positive_int, metavar="N", help="the N newest only")
    listing.add_argument(
        "--status",
        choices=(
            "idle",
            "running",
            "completed",
            "error",
            "cancelled",
            "paused",
            "interrupted",
            "corrupt",
        ),
        help="only sessions with this status",
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = _command(actions, common, "show", _sessions.show_main, "show a session's transcript")
    show.add_argument("id", metavar="ID", help="a session id or a unique prefix of one")
    show.add_argument("--full", action="store_true", help="do not shorten long tool results")
    add_store_flag(show)
    resume = _command(
        actions, common, "resume", _sessions.resume_main, "continue a session in the chat REPL"
    )
    resume.add_argument("id", metavar="ID", help="a session id or a unique prefix of one")
    add_agent_flags(resume)
    add_store_flag(resume)
    resume.add_argument("--yes", action="store_true", help="approve every call that asks")
    export = _command(actions, common, "export", _sessions.export_main, "a session as JSON")
    export.add_argument("id", metavar="ID", help="a session id or a unique prefix of one")
    export.add_argument("--output", metavar="FILE", help="write there instead of stdout")
    add_store_flag(export)


def _add_monitor(commands: Subcommands, common: ArgumentParser) -> None:
    monitor = _command(
        commands, common, "monitor", _monitor.main, "a live table of the sessions in a store"
    )
    add_store_flag(monitor)
    monitor.add_argument("--once", action="store_true", help="print the table once and exit")
    monitor.add_argument(
        "--interval", type=_positive_float, default=1.0, metavar="SECONDS", help="refresh period"
    )
    monitor.add_argument(
        "--limit", type=_positive_int, default=40, metavar="N", help="rows shown (default: 40)"
    )
    monitor.add_argument(
        "--cancel", metavar="ID", help="ask the process running this session to cancel its run"
    )
    monitor.add_argument(
        "--reason", default="cancelled from rho-actors monitor", help="the reason given"
    )


def _add_profiles(commands: Subcommands, common: ArgumentParser) -> None:
    profiles = commands.add_parser(
        "profiles", help="what each permission profile allows", parents=[common]
    )
    actions = profiles.add_subparsers(dest="action", required=True, metavar="ACTION")
    _command(actions, common, "list", _profiles.list_main, "the profiles you can name")
    show = _command(actions, common, "show", _profiles.show_main, "every field of a profile")
    show.add_argument("name", metavar="NAME", help="a profile name or a YAML path")


def _add_mcp(commands: Subcommands, common: ArgumentParser) -> None:
    mcp = commands.add_parser("mcp", help="the MCP servers an agent uses", parents=[common])
    actions = mcp.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = _command(actions, common, "list", _mcp.list_main, "each server's tools")
    listing.add_argument(
        "config_file", nargs="?", metavar="CONFIG", help="an AgentConfig YAML file"
    )
    add_agent_flags(listing)


def _add_worker(commands: Subcommands, common: ArgumentParser) -> None:
    worker = _command(
        commands, common, "worker", _worker.main, "run the runs queued in a database store"
    )
    add_store_flag(worker)
    worker.add_argument(
        "--concurrency", type=_positive_int, default=4, metavar="N", help="runs at once"
    )
    worker.add_argument(
        "--lease",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="session lease; another worker takes over this long after a crash (default 10)",
    )
    listing = _command(
        commands, common, "workers", _worker.list_main, "the workers of a database store"
    )
    add_store_flag(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")


def _add_store(commands: Subcommands, common: ArgumentParser) -> None:
    store = commands.add_parser("store", help="the session store itself", parents=[common])
    actions = store.add_subparsers(dest="action", required=True, metavar="ACTION")
    migrate = _command(
        actions,
        common,
        "migrate",
        _store.migrate_main,
        "bring a database store's schema up to date",
    )
    add_store_flag(migrate)


def _add_sandboxes(commands: Subcommands, common: ArgumentParser) -> None:
    sandboxes = commands.add_parser(
        "sandboxes", help="the Daytona sandboxes rho-actors made", parents=[common]
    )
    actions = sandboxes.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = _command(
        actions, common, "list", _sandboxes.list_main, "sandboxes by session and host process"
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    _command(
        actions, common, "sweep", _sandboxes.sweep_main, "delete sandboxes whose process is gone"
    )


def _add_demo(commands: Subcommands, common: ArgumentParser) -> None:
    demo = _command(
        commands, common, "demo", _demo.main, "an offline tour against an embedded scripted model"
    )
    demo.add_argument(
        "--sessions",
        type=_positive_int,
        default=24,
        metavar="N",
        help="sessions in the fan-out (default: 24)",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


if __name__ == "__main__":
    sys.exit(main())
