"""``rho-actors monitor``: the sessions of a store as a live table, from any process.

The monitor reads only what sessions publish in their ``meta.json`` (status,
turns, tokens, current tool, last update), so it never touches a
running session and works across processes and users. ``--cancel ID`` asks
whichever process runs that session to cancel its run
(``SessionStore.request_cancel``): the request goes through the store, the
running supervisor picks it up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import trio
from rich.console import Console, JustifyMethod
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .._session_store import SessionStore
from .._store._backend import SessionInfo
from ._common import EXIT_OK, ago, open_store, plural, resolve_session, short_id
from ._terminal import open_terminal, status_style


def main(args: argparse.Namespace) -> int:
    store = open_store(args)
    if args.cancel is not None:
        return _request_cancel(store, args.cancel, args.reason)
    if args.once:
        Console(highlight=False).print(sessions_table(store, store.list(), args.limit))
        return EXIT_OK
    trio.run(_watch, store, args.interval, args.limit)
    return EXIT_OK


def _request_cancel(store: SessionStore, prefix: str, reason: str) -> int:
    info = resolve_session(store, prefix)
    store.request_cancel(info.id, reason)
    print(f"cancel requested for session {info.id} ({info.status}): {reason}")
    return EXIT_OK


async def _watch(store: SessionStore, interval: float, limit: int) -> None:
    """Refresh the table every ``interval`` seconds until Ctrl-C (which is how you leave)."""
    stop = trio.Event()

    async def leave() -> None:
        stop.set()

    async with open_terminal() as term:
        with (
            term.interrupts.cancelling(leave, notice=None),
            Live(console=term.out, auto_refresh=False) as live,
        ):
            while not stop.is_set():
                infos = await store.alist()
                # A table taller than the terminal would be cut at the bottom.
                rows = min(limit, max(term.out.height - 7, 3))
                live.update(sessions_table(store, infos, rows), refresh=True)
                with trio.move_on_after(interval):
                    await stop.wait()


def sessions_table(store: SessionStore, infos: list[SessionInfo], limit: int) -> Table:
    """Running sessions first, then the most recently updated; at most ``limit`` rows."""
    now = time.time()
    ordered = sorted(infos, key=lambda i: (i.status != "running", -_updated(i).timestamp()))
    running = sum(1 for info in infos if info.status == "running")
    table = Table(
        title=f"{store.location} · {plural(len(infos), 'session')} · {running} running",
        title_justify="left",
        caption=f"{len(infos) - limit} more not shown" if len(infos) > limit else None,
    )
    for name, justify in _COLUMNS:
        table.add_column(name, justify=justify, no_wrap=True)
    for info in ordered[:limit]:
        table.add_row(
            short_id(info.id),
            Text(info.status, style=status_style(info.status)),
            info.model,
            str(info.turns),
            f"{info.total_tokens:,}",
            info.current_tool or "",
            ago(_updated(info), now),
        )
    return table


_COLUMNS: tuple[tuple[str, JustifyMethod], ...] = (
    ("session", "left"),
    ("status", "left"),
    ("model", "left"),
    ("turns", "right"),
    ("tokens", "right"),
    ("tool", "left"),
    ("updated", "right"),
)


def _updated(info: SessionInfo) -> dt.datetime:
    return info.updated_at or info.created_at
