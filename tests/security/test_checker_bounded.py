"""No shell input can hold the checker (issue 13, class "denial of service")."""

from __future__ import annotations

import time

import pytest

from rho_actors import load_profile
from rho_actors._shell_policy import check_command

# Far above what any of these takes now (milliseconds), far below what they
# took before (the 22-level case: minutes).
BOUND_SECONDS = 5.0

PATHOLOGICAL = {
    "ambiguous $(( nesting": "echo " + "$((" * 22,
    "deep $(( nesting": "echo " + "$((" * 20_000,
    "deep $( nesting": "echo " + "$(" * 5_000 + "x" + ")" * 5_000,
    "a megabyte": "echo " + "a " * 500_000,
    "many expansions": "echo " + "$x " * 50_000,
}


@pytest.mark.parametrize("command", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
@pytest.mark.parametrize("profile", ["readonly", "developer"])
def test_pathological_commands_are_judged_quickly(command: str, profile: str) -> None:
    """Each is refused (restricted) or judged (unrestricted) at once, never a crash."""
    started = time.perf_counter()
    verdict = check_command(command, load_profile(profile))
    assert time.perf_counter() - started < BOUND_SECONDS
    if profile == "readonly":
        assert not verdict.allowed
        assert "cannot check this command" in verdict.reason or "allowlist" in verdict.reason


def test_ordinary_commands_still_pass() -> None:
    """The control: real commands are read and allowed as before."""
    readonly = load_profile("readonly")
    assert check_command("ls -la | grep foo | wc -l", readonly).allowed
    assert check_command("echo $((1 + 2))", load_profile("developer")).allowed
