"""Ctrl-C: the first press cancels cleanly, the second one leaves at once.

trio turns SIGINT into ``KeyboardInterrupt`` by default, which would tear
through a run instead of cancelling it: the model would not be told, the
trace would not say "cancelled". So while a command runs, SIGINT goes to a
signal receiver (``trio.open_signal_receiver``) and becomes a *request*:

* the first Ctrl-C runs the command's current cancel action (cancel the run,
  cancel the fan-out's token, stop the monitor) and the command ends the
  normal way, reporting "cancelled";
* a second Ctrl-C, or one when there is nothing to cancel (an idle chat
  prompt), exits with status 130 at once. That is safe for the data: the
  Store acknowledges records only once written, and acknowledged records
  survive even a ``kill -9``.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, NoReturn

import trio

from ._common import EXIT_INTERRUPTED

CancelAction = Callable[[], Awaitable[None]]
NOTICE = "cancelling… (press Ctrl-C again to quit at once)"


class Interrupts:
    """The Ctrl-C policy of one command; start :meth:`watch` in the command's nursery."""

    def __init__(self, notify: Callable[[str], None]) -> None:
        self._notify = notify
        self._action: CancelAction | None = None
        self._notice: str | None = None
        self._fired = False

    @contextmanager
    def cancelling(self, action: CancelAction, *, notice: str | None = NOTICE) -> Iterator[None]:
        """While the block runs, the first Ctrl-C calls ``action`` instead of exiting.

        ``notice`` is shown when it does (None: nothing to say, e.g. when
        Ctrl-C is simply how one leaves the monitor).
        """
        saved = self._action, self._notice
        self._action, self._notice, self._fired = action, notice, False
        try:
            yield
        finally:
            (self._action, self._notice), self._fired = saved, False

    async def watch(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # The cancel action runs in a task of its own, so that a second
        # Ctrl-C is seen at once even if the action has to wait (a full
        # mailbox, a slow store).
        async with trio.open_nursery() as nursery:
            with trio.open_signal_receiver(signal.SIGINT) as signals:
                task_status.started()
                async for _ in signals:
                    self._on_interrupt(nursery)

    def _on_interrupt(self, nursery: trio.Nursery) -> None:
        action = self._action
        if action is None or self._fired:
            hard_exit()
        self._fired = True
        if self._notice is not None:
            self._notify(self._notice)
        nursery.start_soon(action)


# stdin's terminal settings while a command holds the terminal (see below).
_saved_terminal: tuple[int, list[Any]] | None = None


@contextmanager
def terminal_settings_restored() -> Iterator[None]:
    """Put stdin's terminal settings back as they were, however the command ends.

    A line read abandoned by Ctrl-C leaves readline's no-echo,
    character-at-a-time mode in force; the shell the user returns to would
    not show what they type. Restored when the block ends, and by
    :func:`hard_exit`, which skips every ``finally``.
    """
    global _saved_terminal
    try:
        import termios
    except ImportError:  # not a POSIX system: nothing to restore
        yield
        return
    previous = _saved_terminal
    if sys.stdin is not None and sys.stdin.isatty():
        fd = sys.stdin.fileno()
        _saved_terminal = (fd, termios.tcgetattr(fd))
    try:
        yield
    finally:
        _restore_terminal()
        _saved_terminal = previous


def _restore_terminal() -> None:
    if _saved_terminal is None:
        return
    import termios

    fd, settings = _saved_terminal
    # A terminal that went away has nothing to restore.
    with suppress(termios.error, OSError):
        termios.tcsetattr(fd, termios.TCSADRAIN, settings)


# A live display hides the cursor; leaving without its cleanup must show it again.
SHOW_CURSOR = "\x1b[?25h"


def hard_exit() -> NoReturn:
    """Leave now, with 130, without waiting for anything (the second Ctrl-C)."""
    _restore_terminal()
    for stream, text in ((sys.stdout, ""), (sys.stderr, "\ninterrupted\n")):
        try:
            if stream.isatty():
                text = SHOW_CURSOR + text
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed pipe must not keep us from leaving
    os._exit(EXIT_INTERRUPTED)
