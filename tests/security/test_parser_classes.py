"""The restricted-shell parser, as a first filter, is sound in what it claims (issue
13, classes "parser bypasses" and "allowlisted commands that write").

Each attack runs for real: under the restricted shell (parser only, no
sandbox, so nothing else could stop it) it must be refused and leave no
trace; the control runs the same command unrestricted and sees it act. The
sed and awk rules also get a fuzz test whose oracle is the real program: any
script the checker accepts is run, and must create no file.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import attrs
import pytest

from rho_actors import ToolContext, load_profile
from rho_actors._command_rules import awk_program_problem, sed_script_problem
from rho_actors._shell_policy import check_command
from rho_actors.tools import BashTool

PARSER_ONLY = attrs.evolve(load_profile("readonly"), sandbox="off")
UNRESTRICTED = load_profile("unrestricted")

# Each creates the file `pwned` in the working directory when it runs.
ATTACKS = {
    "BASH_CMDS hash table": "BASH_CMDS=([ls]=/usr/bin/touch); ls pwned",
    "BASH_ALIASES": "BASH_ALIASES=([ls]='touch pwned'); ls",
    "array subscript arithmetic": "x='b[$(touch pwned)]'; a=([$x]=1)",
    "for variable PATH": "mkdir -p bin 2>/dev/null; for PATH in ./bin; do ls; done; touch pwned",
    "sh -c with dash grammar": "sh -c 'touch pwned'",
    "env dash -c": "env dash -c 'touch pwned'",
    "awk fake string hides system": 'awk \'BEGIN { x = 1 / 2; y = "/"; system("touch pwned") }\'',
    "awk print continued over a newline": 'awk \'BEGIN { print "x",\n "y" > "pwned" }\'',
    "sed label ends at a blank": "echo a | sed -n ':a w pwned'",
    "sed v then w": "echo a | sed -n 'v 4.2 w pwned'",
    "sed escaped backslash before w": "echo a | sed -n 'a x\\\\\nw pwned'",
    "tree -R -H": "tree -R -H . -L 1 >/dev/null",
}


def _ctx(work: Path) -> ToolContext:
    return ToolContext(session_id="s", call_id="c", working_dir=work)


@pytest.mark.parametrize("name", sorted(ATTACKS))
async def test_attack_is_refused_and_leaves_nothing(name: str, tmp_path: Path) -> None:
    command = ATTACKS[name]
    out = await BashTool(PARSER_ONLY).handle({"command": command}, _ctx(tmp_path))
    assert out.is_error and "refused" in out.content, out.content
    assert os.listdir(tmp_path) == []
    # Under developer, the same call is dangerous: it waits for approval.
    assert load_profile("developer").needs_approval("bash", {"command": command})


# Aliases need an interactive shell and tree may be missing; the PATH loop
# needs a planted ./bin/ls: their refusal is what matters.
_NO_CONTROL = ("tree", "for variable", "BASH_ALIASES")


@pytest.mark.parametrize("name", [n for n in sorted(ATTACKS) if not n.startswith(_NO_CONTROL)])
async def test_control_the_attack_is_real(name: str, tmp_path: Path) -> None:
    """The same command unrestricted does create the file, so the test can fail."""
    await BashTool(UNRESTRICTED).handle({"command": ATTACKS[name]}, _ctx(tmp_path))
    assert (tmp_path / "pwned").exists(), ATTACKS[name]


@pytest.mark.parametrize(
    "command",
    [
        "for f in a b; do echo $f; done",
        "bash -c 'ls -la'",
        "awk '{ print $1 }' /etc/hostname",
        "awk '$3 > 100' /etc/passwd",
        "awk -F: '100 < $3 { print $1 }' /etc/passwd",
        "sed -n '1,5p;/x/b end; :end' /etc/hostname",
        "sed 's/a/b/g' /etc/hostname",
        "tree -L 2",
    ],
)
def test_ordinary_commands_still_pass(command: str) -> None:
    assert check_command(command, PARSER_ONLY).allowed, check_command(command, PARSER_ONLY).reason


SED_PIECES = [
    *("p", "w o1", "W o2", "s/a/b/w o3", "e touch o4", "s/a/b/e", ":a", "ba", "b a", "v"),
    *("v 4.2", "a text\\\\", "a\\", "i x\\", "\n", ";", " ", "\t", "{", "}", "1", "$", "/a/"),
    *("\\\\", "y/ab/cd/", "#c\n", "s/x/\\\n/", "tx", "T", "q", "l 5", "=", "w", "e", "2,3"),
    *("s/a/w/g", "0~2", "N", "D", "}w o5", "c\\", "x", "w o6\n"),
]

AWK_PIECES = [
    *('print > "o1"', 'print >> "o2"', 'print | "cat > o3"', 'system("touch o4")'),
    *('"touch o5" | getline', "/", "\n", "{", "}", "(", ")", '"', "1", "a", " ", "x = 1 / 2"),
    *("/re/", "print", 'printf "%s"', ">", ";", "#", "BEGIN", "getline", "$1", ",", "\\\n"),
    *('"o7"', "if (1)", "||", "|", "&&", 's = "/"', 'o = "o8"', "print >o", "fflush()"),
]


def _fuzz(pieces: list[str], seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 7))) for _ in range(count)]


def _runs_clean(argv: list[str], work: Path) -> bool:
    subprocess.run(argv, cwd=work, input=b"a\nx\nb\n", capture_output=True, timeout=5, check=False)
    return not any(work.iterdir())


def test_fuzz_sed_scripts_the_checker_accepts_write_nothing(tmp_path: Path) -> None:
    accepted = 0
    for script in _fuzz(SED_PIECES, seed=13, count=1500):
        if sed_script_problem(script) is not None:
            continue
        accepted += 1
        work = tmp_path / f"s{accepted}"
        work.mkdir()
        assert _runs_clean(["sed", "-n", "-e", script], work), repr(script)
    assert accepted > 100  # the fuzz reaches the interesting cases


@pytest.mark.parametrize("awk", [a for a in ("mawk", "gawk", "original-awk") if shutil.which(a)])
def test_fuzz_awk_programs_the_checker_accepts_write_nothing(awk: str, tmp_path: Path) -> None:
    accepted = 0
    for program in _fuzz(AWK_PIECES, seed=13, count=1500):
        if awk_program_problem(program) is not None:
            continue
        accepted += 1
        work = tmp_path / f"a{accepted}"
        work.mkdir()
        assert _runs_clean([awk, program], work), repr(program)
    assert accepted > 100
