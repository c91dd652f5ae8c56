"""What every command shares: exit codes, one-line errors, agents and stores from flags.

A user of the command line should never see a traceback for a mistake they
can fix. Every failure ends up in :func:`report_error`, which prints one line
saying which file or flag was wrong and what was expected, and picks the exit
code; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shlex
import sys
import time
import traceback
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import attrs

from .._agent import Agent
from .._config import AgentConfig
from .._errors import ConfigError, RhoError, StoreError
from .._session_store import SessionStore
from .._store._backend import SessionInfo

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
# 128 + SIGINT, what shells report for a command stopped by Ctrl-C.
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A failure the user can act on: printed as one line, never with a traceback."""

    def __init__(self, message: str, *, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(CliError):
    """A bad flag, argument or input file: exit code 2, like argparse's own errors."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=EXIT_USAGE)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its errors shortened to the one line we promise.

    argparse prints the whole usage block before the error; for a command
    with a dozen flags that buries the one line that matters.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def report_error(exc: BaseException, *, debug: bool) -> int:
    """Print ``exc`` as one line on stderr and return the exit code it deserves."""
    exc = unwrap_group(exc)
    if debug:
        traceback.print_exception(exc)
    match exc:
        case CliError():
            code = exc.exit_code
            message = str(exc)
        case ConfigError():
            code, message = EXIT_USAGE, str(exc)
        case RhoError() | OSError():
            code, message = EXIT_ERROR, _describe(exc)
        case _:
            code = EXIT_ERROR
            message = f"internal error: {type(exc).__name__}: {exc}"
            if not debug:
                message += " (run with --debug for the traceback)"
    print(f"rho-actors: error: {message}", file=sys.stderr)
    return code


def _describe(exc: BaseException) -> str:
    """An OSError as ``file: reason``, which is what the user can act on."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def unwrap_group(exc: BaseException) -> BaseException:
    """The single real error inside nested one-member exception groups.

    trio wraps a child task's exception in a group; the user wants to read
    the error, not the tree of tasks it crossed.
    """
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


# --- agents from flags ---------------------------------------------------


def add_agent_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that say which agent to run; the same on run, chat and dispatch."""
    group = parser.add_argument_group("agent")
    group.add_argument("--config", metavar="FILE", help="an AgentConfig YAML file")
    group.add_argument("--profile", help="permission profile: a name or a YAML path")
    group.add_argument("--model", help="model name (default: $RHO_ACTORS_MODEL or the config's)")
    group.add_argument("--base-url", metavar="URL", help="an OpenAI-compatible endpoint")
    group.add_argument("--working-dir", metavar="DIR", help="where the tools work")
    group.add_argument(
        "--var",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        type=parse_var,
        help="a system-prompt template variable (repeatable)",
    )
    group.add_argument("--system-prompt", metavar="TEXT_OR_FILE", help="the system prompt")
    group.add_argument(
        "--mcp",
        metavar="NAME=COMMAND",
        action="append",
        default=[],
        type=parse_mcp,
        help="an MCP server (a stdio command line, or an http(s):// URL); repeatable",
    )


def parse_mcp(text: str) -> dict[str, Any]:
    """``--mcp name=command args...`` or ``--mcp name=https://host/mcp``."""
    name, sep, target = text.partition("=")
    if not sep or not name.strip() or not target.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=COMMAND or NAME=URL, got {text!r}")
    if target.startswith(("http://", "https://")):
        return {"name": name.strip(), "url": target.strip()}
    words = shlex.split(target)
    return {"name": name.strip(), "command": words[0], "args": words[1:]}


def parse_var(text: str) -> tuple[str, str]:
    """``--var name=value``; argparse turns the ArgumentTypeError into a usage error."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value


def add_store_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="LOCATION",
        help="a sessions directory, sqlite:FILE or postgresql://... (default: "
        "$RHO_ACTORS_STORE, else $RHO_ACTORS_SESSIONS_DIR or ~/.config/rho-actors/sessions)",
    )


def config_from_flags(args: argparse.Namespace, base: AgentConfig | None = None) -> AgentConfig:
    """The AgentConfig the flags describe: ``--config``, else ``base``, then each flag on top."""
    if getattr(args, "config", None) is not None:
        config = AgentConfig.from_file(args.config)
    elif base is not None:
        config = base
    else:
        config = AgentConfig()
    changes: dict[str, Any] = {}
    base_url = getattr(args, "base_url", None)
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        raise UsageError(f"--base-url: expected an http:// or https:// URL, got {base_url!r}")
    for flag in ("profile", "model", "base_url", "system_prompt"):
        value = getattr(args, flag, None)
        if value is not None:
            changes[flag] = value
    prompt = getattr(args, "system_prompt", None)
    if prompt is not None and _names_a_file(prompt) and not Path(prompt).expanduser().is_file():
        raise UsageError(
            f"--system-prompt: no such file {prompt!r} (give the prompt's text, or the path "
            "of a template that exists)"
        )
    if getattr(args, "working_dir", None) is not None:
        changes["working_dir"] = str(existing_dir(args.working_dir, "--working-dir"))
    servers = getattr(args, "mcp", None) or []
    if servers:
        changes["mcp_servers"] = [*config.mcp_servers, *servers]
    variables = dict(getattr(args, "var", []) or [])
    if variables:
        changes["vars"] = {**config.vars, **variables}
    return attrs.evolve(config, **changes) if changes else config


def _names_a_file(text: str) -> bool:
    """Whether a --system-prompt value reads as a path rather than as prompt text:
    one word, with a directory separator or a template's suffix."""
    if not text or any(c.isspace() for c in text):
        return False
    return "/" in text or text.lower().endswith((".md", ".txt", ".j2", ".jinja", ".prompt"))


OFFLINE_NOTICE = "no OPENAI_API_KEY and no --base-url: using the embedded offline model"


def wants_offline(agent: Agent) -> bool:
    """No key and no endpoint anywhere: the embedded offline model answers."""
    return agent.config.base_url is None and not (
        agent.config.api_key or os.environ.get("OPENAI_API_KEY")
    )


@contextlib.asynccontextmanager
async def maybe_offline(agent: Agent) -> AsyncIterator[Agent]:
    """``agent``, or, when nothing is configured, the same agent pointed at the
    embedded offline model (started for the block, announced in one line)."""
    if not wants_offline(agent):
        yield agent
        return
    from ..testing import offline_responder, open_scripted_server

    print(OFFLINE_NOTICE, file=sys.stderr, flush=True)
    async with open_scripted_server(default=offline_responder) as server:
        yield Agent(attrs.evolve(agent.config, base_url=server.base_url, model="offline"))


# Config keys that a flag of the same name (dashed) sets.
_FLAG_KEYS = ("profile", "model", "base_url", "system_prompt", "working_dir")


def build_agent(config: AgentConfig) -> Agent:
    """An Agent whose config errors surface now, as exit code 2, not mid-run.

    Building the agent loads its profile; asking for the model settings
    checks the endpoint; resolving the system prompt reads its template.
    """
    try:
        agent = Agent(config)
        agent.model_settings()
        _ = agent.system_prompt
    except ConfigError as exc:
        # A value that came from a flag is reported by the flag's name.
        if exc.file is None and exc.key in _FLAG_KEYS and config.source is None:
            detail = str(exc).split(": ", 1)[-1]
            raise UsageError(f"--{exc.key.replace('_', '-')}: {detail}") from None
        raise
    if config.working_dir is not None:
        existing_dir(config.working_dir, f"{config.source or 'config'}: key 'working_dir'")
    return agent


def existing_dir(path: str, what: str) -> Path:
    """``path`` resolved, or a usage error naming ``what`` (the flag, or the file and key)."""
    resolved = Path(path).expanduser()
    if not resolved.is_dir():
        raise UsageError(f"{what}: no such directory {path!r}")
    return resolved.resolve()


def output_path(value: str | None) -> Path | None:
    """``--output FILE``, checked before any work is done that it would then fail to save."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.parent.is_dir():
        raise UsageError(f"--output: no such directory {str(path.parent)!r}")
    if path.is_dir():
        raise UsageError(f"--output: {value!r} is a directory (expected a file)")
    return path


# --- stores and session ids --------------------------------------------


def open_store(args: argparse.Namespace) -> SessionStore:
    """The ``--store`` location (a directory, ``sqlite:PATH`` or ``postgresql://...``),
    else the default one (``$RHO_ACTORS_STORE``, else the sessions directory)."""
    location = getattr(args, "store", None)
    try:
        return SessionStore(location) if location else SessionStore()
    except StoreError as exc:
        raise UsageError(f"--store: {exc}") from None


def resolve_session(store: SessionStore, prefix: str) -> SessionInfo:
    """The one stored session whose id starts with ``prefix`` (ids are long; prefixes do)."""
    infos = store.list()
    exact = [info for info in infos if info.id == prefix]
    matches = exact or [info for info in infos if info.id.startswith(prefix)]
    if not matches:
        raise UsageError(
            f"no session {prefix!r} in {store.location} (see `rho-actors sessions list`)"
        )
    if len(matches) > 1:
        shown = ", ".join(info.id[:12] for info in matches[:5])
        raise UsageError(f"session id {prefix!r} is ambiguous: it matches {shown}")
    return matches[0]


def stored_config(store: SessionStore, session_id: str) -> AgentConfig:
    """The AgentConfig a session was created with, from its stored ``config.yaml``."""
    return store.agent_for(session_id).config


def short_id(session_id: str) -> str:
    return session_id[:12]


def one_line(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: max(limit - 1, 0)] + "…"


def ago(when: dt.datetime, now: float | None = None) -> str:
    """``when`` relative to now, as a person says it: "3 s ago", "5 min ago"."""
    seconds = max((time.time() if now is None else now) - when.timestamp(), 0.0)
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.0f} h ago"
    return when.astimezone().strftime("%Y-%m-%d")


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def join_nonempty(parts: Sequence[str], sep: str = " · ") -> str:
    return sep.join(p for p in parts if p)


def add_timeout_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        default=None,
        help=f"end {what} after this long (default: $RHO_ACTORS_TIMEOUT_SECONDS, else none)",
    )


def run_timeout(args: argparse.Namespace) -> float | None:
    """``--timeout``, else ``$RHO_ACTORS_TIMEOUT_SECONDS``: a run's deadline in seconds."""
    timeout: float | None = args.timeout
    source = "--timeout"
    if timeout is None and os.environ.get("RHO_ACTORS_TIMEOUT_SECONDS"):
        source = "RHO_ACTORS_TIMEOUT_SECONDS"
        try:
            timeout = float(os.environ[source])
        except ValueError:
            raise UsageError(
                f"{source}: expected a number of seconds, got {os.environ[source]!r}"
            ) from None
    if timeout is not None and not timeout > 0:
        raise UsageError(f"{source}: expected a positive number of seconds, got {timeout:g}")
    return timeout
