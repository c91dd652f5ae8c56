"""A restricted shell opens no network connection through bash's /dev/tcp (issue 13,
class "network")."""

from __future__ import annotations

import pytest

from rho_actors import load_profile
from rho_actors._shell_policy import check_command

REFUSED = [
    "cat < /dev/tcp/127.0.0.1/80",
    "cat </dev//tcp/example.org/443",
    "cat < /dev/udp/10.0.0.1/53",
    "exec 3<>/dev/tcp/127.0.0.1/80",
    "cat <&3",
    "echo hi >&3",
    "f=/dev/tcp/127.0.0.1/80; cat < $f",
    "cat < $(printf /dev/tcp/127.0.0.1/80)",
]


@pytest.mark.parametrize("command", REFUSED)
def test_socket_redirects_are_refused_and_need_approval(command: str) -> None:
    """Refused under readonly; under developer the same call counts as dangerous."""
    assert not check_command(command, load_profile("readonly")).allowed
    assert load_profile("developer").needs_approval("bash", {"command": command})


@pytest.mark.parametrize("command", ["cat < README.md", "ls 2>&1", "grep a <<< abc", "wc -l <&0"])
def test_ordinary_redirects_still_pass(command: str) -> None:
    """The control: reading a named file, standard descriptors and here-strings are fine."""
    assert check_command(command, load_profile("readonly")).allowed
