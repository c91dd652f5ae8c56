"""CancellationToken bookkeeping: listeners come and go as runs start and end."""

from __future__ import annotations

from collections.abc import Callable

from rho_actors import CancellationToken
from rho_actors._run import RunControl


def test_unsubscribed_runs_are_not_called_and_the_rest_are_called_once() -> None:
    token = CancellationToken()
    calls: list[tuple[str, str]] = []

    def listener(i: int) -> Callable[[str], None]:
        return lambda reason: calls.append((f"run{i}", reason))

    offs = [token.subscribe(listener(i)) for i in range(5)]
    offs[1]()
    offs[3]()
    offs[3]()  # unsubscribing twice is harmless
    token.cancel("stop")
    token.cancel("again")  # the first reason stands; nobody is called twice
    assert calls == [("run0", "stop"), ("run2", "stop"), ("run4", "stop")]
    offs[0]()  # after the cancel, too
    late: list[str] = []
    token.subscribe(late.append)
    assert late == ["stop"] and token.is_cancelled() and token.reason == "stop"


def test_every_finished_run_leaves_the_token() -> None:
    """A long-lived token does not collect the runs that finished on it."""
    token = CancellationToken()
    offs = [token.subscribe(lambda reason: None) for _ in range(10_000)]
    for off in offs:
        off()
    assert not token._listeners


async def test_cancelling_a_run_drops_its_held_connection_once() -> None:
    """RunControl.cancel closes the open model stream's socket itself, after cancelling."""
    control = RunControl()
    dropped: list[bool] = []

    def drop() -> None:
        dropped.append(control.scope.cancel_called)

    control.hold_connection(drop)
    control.cancel("first")
    control.cancel("second")
    assert dropped == [True]  # once, and the scope was already cancelled
    assert control.cancel_reason == "first"

    finished = RunControl()
    finished.hold_connection(drop)
    finished.hold_connection(None)  # the stream ended before the cancel
    finished.cancel("late")
    assert dropped == [True]
