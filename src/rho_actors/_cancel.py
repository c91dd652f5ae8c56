"""``CancellationToken``: one switch that cancels any number of runs.

A token is level-triggered: once cancelled it stays cancelled, and a run
started with an already-cancelled token ends at once with
``status="cancelled"``. Runs attach themselves while in flight; cancelling
the token sends each of them a ``Cancel`` message carrying the token's
reason.
"""

from __future__ import annotations

from collections.abc import Callable

DEFAULT_REASON = "cancelled by token"


class CancellationToken:
    """Cancel every run that carries this token, now and later."""

    __slots__ = ("_listeners", "_next_key", "_reason")

    def __init__(self) -> None:
        self._reason: str | None = None
        # Keyed so a finished run unsubscribes in O(1): one token may carry
        # tens of thousands of runs.
        self._listeners: dict[int, Callable[[str], None]] = {}
        self._next_key = 0

    def cancel(self, reason: str = DEFAULT_REASON) -> None:
        """Cancel; the first reason given is the one runs report."""
        if self._reason is not None:
            return
        self._reason = reason
        listeners, self._listeners = self._listeners, {}
        for listener in listeners.values():
            listener(reason)

    def is_cancelled(self) -> bool:
        return self._reason is not None

    @property
    def reason(self) -> str:
        """Why the token was cancelled ("" while it is not)."""
        return self._reason or ""

    def subscribe(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener(reason)`` on cancellation (at once if already cancelled).

        Returns a function that unsubscribes; runs call it when they end so a
        long-lived token does not collect finished runs.
        """
        if self._reason is not None:
            listener(self._reason)
            return lambda: None
        key = self._next_key
        self._next_key += 1
        self._listeners[key] = listener

        def unsubscribe() -> None:
            self._listeners.pop(key, None)

        return unsubscribe

    def __repr__(self) -> str:
        state = f"cancelled: {self._reason!r}" if self._reason is not None else "active"
        return f"CancellationToken({state})"
