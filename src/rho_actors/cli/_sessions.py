"""``rho-actors sessions list|show|resume|export``: the store, from the outside.

Everything here reads what the Store actor wrote: ``meta.json`` for
listing (no replay needed) and ``trace.jsonl`` replayed into a ``State``
for transcripts and exports, so what you see is what a resume would load.
Ids are long; every command accepts a unique prefix, as git does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

import attrs
import trio
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from .._session_store import SessionStore
from .._store._backend import SessionInfo
from ._chat import chat, chat_options
from ._common import (
    EXIT_OK,
    ago,
    one_line,
    open_store,
    output_path,
    plural,
    resolve_session,
    short_id,
)
from ._terminal import format_args, status_style

PROMPT_PREVIEW = 60
# A tool result longer than this many lines is shortened in `show` (see --full).
RESULT_PREVIEW_LINES = 12


def list_main(args: argparse.Namespace) -> int:
    """Newest first; ``--status`` and ``--limit`` narrow it, ``--json`` is for scripts.

    Piped, the table keeps its full width (no 80-column wrapping mid-id).
    """
    store = open_store(args)
    infos = sorted(store.list(), key=lambda info: info.updated_at or info.created_at, reverse=True)
    if args.status:
        infos = [info for info in infos if info.status == args.status]
    if args.limit is not None:
        infos = infos[: args.limit]
    if args.json:
        rows = [
            {
                "id": info.id,
                "status": info.status,
                "created_at": info.created_at.isoformat(),
                "updated_at": info.updated_at.isoformat() if info.updated_at else None,
                "model": info.model,
                "profile": info.profile,
                "runs": info.run_count,
                "tokens": info.total_tokens,
                "first_prompt": info.first_prompt,
                "error": info.error,
            }
            for info in infos
        ]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return EXIT_OK
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    if not infos:
        console.print(f"no sessions in {store.location}")
        return EXIT_OK
    console.print(sessions_table(infos, title=str(store.location)))
    return EXIT_OK


def sessions_table(infos: list[SessionInfo], *, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for name in ("id", "status", "model", "profile"):
        table.add_column(name, no_wrap=True)
    table.add_column("runs", justify="right", no_wrap=True)
    table.add_column("tokens", justify="right", no_wrap=True)
    table.add_column("updated", justify="right", no_wrap=True)
    table.add_column("first prompt", no_wrap=True, overflow="ellipsis")
    for info in infos:
        table.add_row(
            short_id(info.id),
            Text(info.status, style=status_style(info.status)),
            info.model,
            info.profile,
            str(info.run_count),
            f"{info.total_tokens:,}",
            ago(info.updated_at or info.created_at),
            one_line(info.first_prompt, PROMPT_PREVIEW),
        )
    return table


# --- show ----------------------------------------------------------------


def show_main(args: argparse.Namespace) -> int:
    store = open_store(args)
    info = resolve_session(store, args.id)
    state = store.load_state(info.id)
    # Long messages wrap (piped, at the usual 80 columns) and are never cut;
    # only tool results are shortened, unless --full.
    console = Console(highlight=False)
    console.print(
        Text(
            f"session {info.id} · {info.status} · model {info.model} · profile {info.profile} · "
            f"{plural(state.run_count, 'run')} · {state.usage.get('total_tokens', 0):,} tokens",
            style="bold",
        )
    )
    for message in state.messages:
        console.print(render_message(message, full=args.full))
    return EXIT_OK


def render_message(message: dict[str, Any], *, full: bool) -> RenderableType:
    """One transcript entry: who spoke, what they said, which tools they called."""
    role = str(message.get("role", "?"))
    content = message.get("content")
    if content is None or isinstance(content, str):
        text = (content or "").rstrip("\n")
    else:
        text = json.dumps(content, ensure_ascii=False)
    parts: list[RenderableType] = []
    match role:
        case "tool":
            parts.append(Text(f"tool result ({message.get('tool_call_id')})", style="dim bold"))
            parts.append(_indented(Text(_shorten(text, full), style="dim")))
        case _:
            parts.append(Text(role, style=_ROLE_STYLES.get(role, "bold")))
            if text:
                parts.append(_indented(Text(text)))
            for call in message.get("tool_calls") or []:
                parts.append(_indented(Text(_call_line(call), style="cyan")))
    return Group(*parts)


def _indented(text: Text) -> Padding:
    return Padding(text, (0, 0, 0, 2), expand=False)


_ROLE_STYLES = {"user": "bold green", "assistant": "bold blue", "system": "bold magenta"}


def _call_line(call: dict[str, Any]) -> str:
    function = call.get("function") or {}
    raw = function.get("arguments") or ""
    try:
        args = json.loads(raw) if raw else {}
    except ValueError:
        args = {"(unparsed)": raw}
    shown = format_args(args) if isinstance(args, dict) else one_line(raw, 160)
    return f"→ {function.get('name')} {shown}  ({call.get('id')})"


def _shorten(text: str, full: bool) -> str:
    lines = text.splitlines()
    if full or len(lines) <= RESULT_PREVIEW_LINES:
        return text
    hidden = len(lines) - RESULT_PREVIEW_LINES
    return "\n".join([*lines[:RESULT_PREVIEW_LINES], f"… {hidden} more lines (--full shows them)"])


# --- resume --------------------------------------------------------------


def resume_main(args: argparse.Namespace) -> int:
    options = chat_options(args)
    info = resolve_session(options.store, args.id)
    return trio.run(chat, options, None, info.id)


# --- export --------------------------------------------------------------


def export_main(args: argparse.Namespace) -> int:
    store = open_store(args)
    info = resolve_session(store, args.id)
    text = json.dumps(export_record(store, info), indent=2, ensure_ascii=False) + "\n"
    output = output_path(args.output)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
    return EXIT_OK


def export_record(store: SessionStore, info: SessionInfo) -> dict[str, Any]:
    """The session as plain JSON: its listing, and its replayed conversation."""
    state = store.load_state(info.id)
    return {
        "id": info.id,
        "info": attrs.asdict(info, value_serializer=_jsonable),
        "messages": state.messages,
        "usage": state.usage,
        "status": state.status,
        "run_count": state.run_count,
    }


def _jsonable(_instance: object, _field: object, value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value
