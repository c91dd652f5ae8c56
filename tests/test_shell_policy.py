"""The restricted shell: which commands run, which are refused, and why."""

from __future__ import annotations

import shlex

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rho_actors._profiles import BUILTIN_PROFILES, PermissionProfile
from rho_actors._shell_policy import ShellVerdict, check_command
from rho_actors._shell_syntax import ShellSyntaxError, parse_script

READONLY = BUILTIN_PROFILES["readonly"]
DEVELOPER = BUILTIN_PROFILES["developer"]
UNRESTRICTED = BUILTIN_PROFILES["unrestricted"]

ALLOWED = [
    "ls -la",
    "ls -la | grep foo && echo ok; cat x",
    "cat README.md | head -20 | sort -k2 -n | uniq -c",
    "grep -rn 'TODO' src --include='*.py'",
    "rg -n foo src",
    "find . -name '*.py' -type f",
    "git log --oneline -5",
    "git status --short",
    "git diff --stat HEAD~1",
    "git show HEAD:README.md",
    "git blame -L 1,5 README.md",
    "git branch -a",
    "git branch --list 'feat*'",
    "git -C sub --no-pager log",
    "git diff --text",
    "git stash list",
    "git config --get user.name",
    "sed -n '1,5p' file.txt",
    "sed -e 's/a/b/g' -e '/x/d' file",
    "sed -n 1p -- *.txt",
    "awk '{print $1}' file",
    "awk -F: '100 < $3 { print $1 }' /etc/passwd",
    "awk '$3 > 100' /etc/passwd",
    "awk '/a/ || /b/ { n++ } END { print n }' f",
    "jq '.items[] | .name' data.json",
    "wc -l $(find . -name '*.py')",
    'cat "$(ls | head -1)"',
    "echo $(date +%s) `pwd`",
    "FOO=bar ls",
    "LC_ALL=C sort file",
    "x=$(cat f); echo $x",
    "ls 2>/dev/null",
    "ls >/dev/null 2>&1",
    "ls &>/dev/null",
    "ls 2>&1 | head",
    "cat x |& grep y",
    "cat < input.txt",
    'grep x <<< "hello"',
    "cat <<EOF\nhello $(date)\nEOF",
    "cat <<'EOF'\n$(rm -rf /)\nEOF",
    "cat <<-EOF\n\thello\n\tEOF\necho after",
    "diff <(ls a) <(ls b)",
    "(cd src && ls)",
    "{ ls; cat x; }",
    "if [ -f x ]; then cat x; else echo none; fi",
    '[ -s "$f" ] && wc -l "$f"',
    '[ "$x" = yes ]',
    "test -d src",
    "[[ -f x && -n $y ]] && cat x",
    'for f in *.py; do wc -l "$f"; done',
    'for f in $(ls); do echo "$f"; done',
    "while true; do sleep 1; done",
    "case $x in a) echo a;; *) echo other;; esac",
    "! grep -q x f",
    "time ls",
    "echo $((1 + 2 * 3))",
    "echo ${x:-default} ${#y} ${z%.py} ${w//a/b} ${v:1:2}",
    "env X=1 ls",
    "timeout 5 cat f",
    "nice -n 5 cat f",
    "xargs grep foo",
    "echo a | xargs -I{} cat {}",
    "bash -c 'ls; cat f'",
    "bash -ec 'ls | wc -l'",
    'eval "ls; pwd"',
    "command -v git",
    "/bin/ls",
    "/usr/bin/env ls",
    "l\\s -la",
    "'ls' -la",
    "echo hi # ; rm -rf /",
    "echo hi \\; rm -rf /",
    "echo 'rm -rf /'",
    'echo "rm -rf /"',
    "date +%Y-%m-%d",
    "date -Iseconds",
    "sort -u -t, -k2 f",
    "printf '%s\\n' a b",
    "cat /etc/hostname",
    "ls -la; echo done &",
    "ls \\\n  -la",
]

REFUSED = [
    ("rm -rf /", "'rm' is blocked"),
    ("ls; rm -rf /", "'rm' is blocked"),
    ("ls && rm x", "'rm' is blocked"),
    ("ls || rm x", "'rm' is blocked"),
    ("ls | rm x", "'rm' is blocked"),
    ("ls & rm x", "'rm' is blocked"),
    ("ls\nrm x", "'rm' is blocked"),
    ('echo "$(rm -rf /)"', "'rm' is blocked"),
    ("echo `rm x`", "'rm' is blocked"),
    ('echo "`rm x`"', "'rm' is blocked"),
    ("echo `echo \\`rm x\\``", "'rm' is blocked"),
    ("echo $(echo $(echo $(rm x)))", "'rm' is blocked"),
    ("cat <(rm x)", "'rm' is blocked"),
    ("ls > >(rm x)", "'rm' is blocked"),
    ("(rm x)", "'rm' is blocked"),
    ("{ rm x; }", "'rm' is blocked"),
    ("cat <<EOF\n$(rm -rf /)\nEOF", "'rm' is blocked"),
    ("cat <<EOF\n`rm x`\nEOF", "'rm' is blocked"),
    ("echo ${x:-$(rm y)}", "'rm' is blocked"),
    ("a[$(rm x)]=1", "'rm' is blocked"),
    ("for f in $(rm x); do echo; done", "'rm' is blocked"),
    ("case x in x) rm y;; esac", "'rm' is blocked"),
    ("if true; then rm x; fi", "'rm' is blocked"),
    ("f() { rm x; }", "'rm' is blocked"),
    ("xargs rm", "'rm' is blocked"),
    ("env rm x", "'rm' is blocked"),
    ("env -i FOO=1 rm x", "'rm' is blocked"),
    ("nice -n 10 rm x", "'rm' is blocked"),
    ("timeout -s KILL 5 rm x", "'rm' is blocked"),
    ("command rm x", "'rm' is blocked"),
    ("exec rm x", "'rm' is blocked"),
    ("sh -c 'ls'", "sh is not allowed"),
    ('bash -c "ls; rm x"', "'rm' is blocked"),
    ("bash -c \"bash -c 'rm x'\"", "'rm' is blocked"),
    ("bash -c \"dash -c 'ls'\"", "dash is not allowed"),
    ("awk -F: '$3 > 100 { print $1 }' /etc/passwd", "may not contain '>'"),
    ("awk '{ print ($1 > 5) }' f", "may not contain '>'"),
    ("awk '/a|b/ { n++ } END { print n }' f", "pipes"),
    ('eval "rm x"', "'rm' is blocked"),
    ("\\rm x", "'rm' is blocked"),
    ("r''m x", "'rm' is blocked"),
    ("/bin/rm x", "'rm' is blocked"),
    ("sudo ls", "'sudo' is blocked"),
    ("mkfs.ext4 /dev/sda", "'mkfs.ext4' is blocked"),
    ("python -c 'print(1)'", "not in the allowlist"),
    ("ls | tee out", "'tee' is not in the allowlist"),
    ("touch x", "'touch' is not in the allowlist"),
    ("env", "'env' is not in the allowlist"),
    ("f() { ls; }; f", "'f' is not in the allowlist"),
    ("$CMD", "only known at run time"),
    ("$(echo rm) -rf /", "only known at run time"),
    ("{ls,-la}", "only known at run time"),
    ("/bin/r? x", "only known at run time"),
    ("$'\\x72m' -rf /", "only known at run time"),
    ("./ls", "system's bin directories"),
    ("/tmp/evil/ls", "system's bin directories"),
    ("ls > out", "writes a file"),
    ("ls >> out", "writes a file"),
    ("ls >| out", "writes a file"),
    ("ls 2>err.txt", "writes a file"),
    ("ls &>out", "writes a file"),
    ("ls >&out", "writes a file"),
    ("ls 1<>out", "writes a file"),
    ("exec 3>file", "writes a file"),
    ("{ ls; } > out", "writes a file"),
    ("for f in *; do cat $f; done > out", "writes a file"),
    ("echo $(ls > out)", "writes a file"),
    ("PATH=/tmp ls", "setting PATH"),
    ("LD_PRELOAD=/tmp/x.so ls", "setting LD_PRELOAD"),
    ("BASH_ENV=/tmp/x sh -c ls", "setting BASH_ENV"),
    ("GIT_EXTERNAL_DIFF=sh git diff", "setting GIT_EXTERNAL_DIFF"),
    ("env PATH=/x ls", "setting PATH"),
    ("IFS=/ ls", "setting IFS"),
    ("find . -delete", "find -delete"),
    ("find . -name '*.py' -exec rm {} \\;", "find -exec"),
    ("find . -execdir cat {} +", "find -execdir"),
    ("find . -fprint out", "find -fprint"),
    ("find . -dele''te", "find -delete"),
    ("find . $X", "could expand to"),
    ("find . -dele*", "could expand to -delete"),
    ("sed -i 's/a/b/' f", "sed -i"),
    ("sed -ni 's/a/b/' f", "sed -i"),
    ("sed --in-pl 's/a/b/' f", "sed --in-place"),
    ("sed -n p f -i", "sed -i"),
    ("sed 's/a/b/w out' f", "w flag"),
    ("sed 's/a/b/e' f", "e flag"),
    ("sed 'w out' f", "writes a file"),
    ("sed '1e ls' f", "runs commands"),
    ("sed -e p -e 'w x' f", "writes a file"),
    ("sed -f script.sed f", "sed -f"),
    ("sed -n 1p *.txt", "could turn into an option"),
    ("awk '{ system(\"rm x\") }' f", "system()"),
    ("awk '{ print > \"out\" }' f", "may not contain '>'"),
    ('awk \'{ printf("%s", $1) >> "out" }\' f', "may not contain '>'"),
    ("awk '{ print | \"sh\" }' f", "pipes"),
    ("awk 'BEGIN { \"date\" | getline d }'", "pipes"),
    ("awk -f prog.awk f", "program file"),
    ("gawk -i inplace '{ print }' f", "includes a source file"),
    ("awk '@include \"x\"'", "@include"),
    ('awk "$PROG" f', "only known at run time"),
    ("git commit -m x", "not a read-only git subcommand"),
    ("git push", "not a read-only git subcommand"),
    ("git checkout .", "not a read-only git subcommand"),
    ("git -c core.pager=sh log", "not allowed before the subcommand"),
    ("git diff --output=x", "git diff --output"),
    ("git log --out=x", "git log --output"),
    ("git diff --ext-diff", "external diff"),
    ("git grep -O foo", "runs a pager"),
    ("git branch newb", "creates a branch"),
    ("git branch -D old", "only listing"),
    ("git tag v1", "creates a tag"),
    ("git stash", "only 'list' and 'show'"),
    ("git config user.name x", "only reading"),
    ("git remote add x y", "only listing"),
    ("git $SUB", "only known at run time"),
    ("sort -o out f", "sort -o"),
    ("sort -uo out f", "sort -o"),
    ("sort --out=f x", "sort --output"),
    ("sort --compress-program=sh f", "sort --compress-program"),
    ("uniq a b", "writes the second one"),
    ("rg --pre=sh foo", "rg --pre"),
    ("rg foo *", "could turn into an option"),
    ("date -s 2020-01-01", "date -s"),
    ("date 010100002020", "sets the system clock"),
    ("hostname newname", "sets the host name"),
    ("tree -o out", "tree -o"),
    ("file -C -m magic", "file -C"),
    ("printf -v x %s y", "printf -v"),
    ("test -v 'a[$(id)]'", "test -v"),
    ("[ -v x ]", "[ -v"),
    ('[ "$a" "$b" ]', "could be read as the -v operator"),
    ("[[ $x -eq 1 ]]", "evaluates their contents"),
    ("[[ -v x ]]", "[[ -v ]]"),
    ("echo $((x + 1))", "arithmetic on variables"),
    ("(( x++ ))", "arithmetic on variables"),
    ("echo ${!name}", "parameter expansion"),
    ("echo ${x@P}", "parameter expansion"),
    ("echo ${x:$y}", "parameter expansion"),
    ("echo ${PATH:=/tmp}", "setting PATH"),
    ("xargs find .", "arguments added at run time"),
    ("xargs sed p", "arguments added at run time"),
    ("xargs nice", "would come from input"),
    ("echo a | xargs -I{} sh -c {}", "sh is not allowed"),
    ("echo a | xargs -I{} bash -c {}", "only known at run time"),
    ("bash script.sh", "only allowed as 'bash -c SCRIPT'"),
    ("bash", "only allowed as 'bash -c SCRIPT'"),
    ('bash -c "$X"', "only known at run time"),
    ("eval $X", "only known at run time"),
    ("env -S 'rm x'", "not known to be safe"),
    ('echo "unterminated', "unterminated double quote"),
    ("echo 'unterminated", "unterminated single quote"),
    ("echo $(ls", "missing closing"),
    ("ls |", "must be followed by a command"),
    ("ls && && ls", "must be followed by a command"),
    ("cat <<EOF\nno end", "not terminated"),
    ("coproc ls", "not supported"),
    ("", "empty command"),
    ("   ", "empty command"),
    ("ls\x00", "NUL"),
]


@pytest.mark.parametrize("command", ALLOWED)
def test_readonly_allows(command: str) -> None:
    """Read-only commands pass the restricted shell, however they are combined."""
    verdict = check_command(command, READONLY)
    assert verdict.allowed, verdict.reason


@pytest.mark.parametrize(("command", "reason"), REFUSED)
def test_readonly_refuses_with_reason(command: str, reason: str) -> None:
    """Each way of changing the world is refused, and the reason names it."""
    verdict = check_command(command, READONLY)
    assert not verdict.allowed
    assert reason in verdict.reason


def test_verdict_is_a_frozen_value() -> None:
    """A verdict is plain data: whether, and why."""
    verdict = check_command("ls", READONLY)
    assert verdict == ShellVerdict(True, verdict.reason)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        verdict.allowed = False  # type: ignore[misc]


@pytest.mark.parametrize(
    "command",
    [
        "make install",
        "rm -rf build",
        "python -c 'import os'",
        "ls > out",
        "$CMD --flag",
        "for i in $(seq 3); do echo $i; done > log",
        "npm test && git commit -am wip",
    ],
)
def test_unrestricted_allows_what_is_not_blocklisted(command: str) -> None:
    """The developer profile's unrestricted shell only applies its blocklist."""
    assert check_command(command, DEVELOPER).allowed


@pytest.mark.parametrize(
    "command",
    [
        "sudo make install",
        "ls && sudo rm x",
        "echo $(sudo id)",
        "xargs sudo",
        "sh -c 'sudo ls'",
        "find . -exec sudo {} +",
        "mkfs.ext4 /dev/sda",
        "nice -n 1 shutdown now",
    ],
)
def test_unrestricted_blocklist_applies_through_wrappers(command: str) -> None:
    """Machine-level commands stay blocked in the developer profile, behind any wrapper."""
    verdict = check_command(command, DEVELOPER)
    assert not verdict.allowed
    assert "blocked" in verdict.reason


def test_unrestricted_unparsable_command_falls_back_to_word_scan() -> None:
    """A command the reader cannot follow is checked word by word, not refused outright."""
    assert check_command("echo 'unterminated; ls", DEVELOPER).allowed
    verdict = check_command("echo 'unterminated; sudo ls", DEVELOPER)
    assert not verdict.allowed
    assert "could not be parsed" in verdict.reason


def test_unrestricted_profile_allows_everything() -> None:
    """The unrestricted profile has no blocklist."""
    assert check_command("sudo rm -rf /tmp/x", UNRESTRICTED).allowed


def test_shell_off_refuses_everything() -> None:
    """With the shell off, even `true` is refused."""
    profile = attrs.evolve(READONLY, shell="off")
    verdict = check_command("true", profile)
    assert not verdict.allowed
    assert "disabled" in verdict.reason


def test_custom_allowlist_and_glob_blocklist() -> None:
    """Profiles choose their own lists; blocklist entries may be glob patterns."""
    profile = attrs.evolve(
        READONLY, shell_allowlist=(*READONLY.shell_allowlist, "make"), shell_blocklist=("git*",)
    )
    assert check_command("make -n", profile).allowed
    assert not check_command("git-upload-pack x", profile).allowed
    assert not check_command("git status", profile).allowed


def test_blocklist_wins_over_allowlist() -> None:
    """A command on both lists is refused."""
    profile = attrs.evolve(READONLY, shell_allowlist=("ls", "rm"), shell_blocklist=("rm",))
    assert not check_command("rm x", profile).allowed


def test_parser_finds_commands_in_every_position() -> None:
    """Substitutions, heredocs and process substitutions all yield their commands."""
    script = parse_script(
        'a "$(b)" `c` <(d) | e && { f; } ; (g); k ${x:-$(h)}\ncat <<E\n$(i)\nE\n[[ $(j) ]]'
    )
    names = sorted(c.words[0].value for c in script.commands if c.words)
    assert names == ["a", "b", "c", "cat", "d", "e", "f", "g", "h", "i", "j", "k"]


def test_parser_rejects_garbage() -> None:
    """Unbalanced constructs raise ShellSyntaxError rather than guessing."""
    for text in ("echo )", "( ls", "echo ${x", "case x in", "for ; do"):
        with pytest.raises(ShellSyntaxError):
            parse_script(text)


# --- properties ------------------------------------------------------------------

_SAFE_COMMANDS = st.sampled_from(
    ["ls -la", "cat README.md", "grep -n foo src/a.py", "wc -l f", "echo hi", "pwd",
     "git status", "sort -u f", "head -5 f", "true", "find . -name '*.py'", "date +%s"]
)  # fmt: skip
_JOINERS = st.sampled_from(["; ", " && ", " || ", " | ", "\n", " & "])


@st.composite
def _safe_scripts(draw: st.DrawFn, depth: int = 2) -> str:
    parts = [draw(_SAFE_COMMANDS)]
    for _ in range(draw(st.integers(0, 3))):
        parts.append(draw(_JOINERS))
        if depth > 0 and draw(st.booleans()):
            inner = draw(_safe_scripts(depth=depth - 1))
            wrapper = draw(st.sampled_from(["( {} )", "{{ {}; }}", "echo $({})", "echo `{}`"]))
            if "`" in inner and "`" in wrapper:
                wrapper = "echo $({})"
            parts.append(wrapper.format(inner))
        else:
            parts.append(draw(_SAFE_COMMANDS))
    return "".join(parts)


_INJECTIONS = st.sampled_from(
    ["; rm -rf /", " && rm -rf /", " | rm -rf /", "\nrm -rf /", " & rm -rf /",
     " $(rm -rf /)", " `rm -rf /`", " <(rm -rf /)", " > /tmp/out", " ; sudo id"]
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(_safe_scripts())
def test_property_safe_compositions_are_allowed(script: str) -> None:
    """Any composition of read-only commands is allowed."""
    verdict = check_command(script, READONLY)
    assert verdict.allowed, (script, verdict.reason)


@settings(max_examples=200, deadline=None)
@given(_safe_scripts(), _INJECTIONS)
def test_property_injected_command_is_refused(script: str, injection: str) -> None:
    """Appending a destructive command to any allowed script gets it refused."""
    assert not check_command(script + injection, READONLY).allowed


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60).filter(lambda t: "\x00" not in t))
def test_property_quoted_literal_argument_is_always_allowed(text: str) -> None:
    """A shell-quoted literal is data: `echo 'anything'` is always allowed."""
    assert check_command("echo " + shlex.quote(text), READONLY).allowed


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_property_checker_never_raises(text: str) -> None:
    """Arbitrary input gets a verdict, never an exception."""
    for profile in (READONLY, DEVELOPER):
        assert isinstance(check_command(text, profile), ShellVerdict)


def test_profile_type_is_what_the_checker_reads() -> None:
    """The checker accepts any PermissionProfile (regression guard for the import cycle)."""
    assert isinstance(READONLY, PermissionProfile)
