"""Deciding whether a shell command may run under a permission profile.

``check_command`` reads the command with :mod:`._shell_syntax`, then judges
every simple command it contains, including those inside substitutions, and
including the commands that wrappers run (``xargs rm`` is ``rm``;
``sh -c 'a; b'`` is ``a`` and ``b``).

In a ``restricted`` shell a command runs only if *all* of these hold:

* its name is written literally (not ``$CMD``, not a glob), is not a relative
  path, and its basename is in the profile's allowlist and not its blocklist;
* its arguments pass the command's own rules (:mod:`._command_rules`);
* it redirects output only to ``/dev/null``, ``/dev/stdout``,
  ``/dev/stderr`` or one of the standard descriptors (``2>&1``); it reads
  input only from a file named literally (never ``/dev/tcp/...`` or
  ``/dev/udp/...``, which bash opens as network connections) or a standard
  descriptor; here-documents and here-strings are fine;
* it sets no variable that changes which program runs (``PATH``,
  ``LD_PRELOAD``, ``BASH_ENV``, ``GIT_*``...);
* it uses no arithmetic, ``[[ ]]`` comparison or ``${...}`` form that
  evaluates a variable's *contents* as code (bash runs ``$(...)`` found in
  array subscripts there).

Anything the reader cannot follow is refused, with the reason. In an
``unrestricted`` shell only the blocklist applies; there it is a guard rail
against slips, and a command the reader cannot follow is checked word by
word instead of refused.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import posixpath
import re
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs

from ._command_rules import (
    SHELLS,
    WRAPPERS,
    InnerCommand,
    InnerScript,
    NotAWrapper,
    Refusal,
    check_arguments,
    find_exec_commands,
    unsafe_assignment,
    unwrap,
)
from ._shell_syntax import (
    Construct,
    PartKind,
    Redirect,
    ShellSyntaxError,
    SimpleCommand,
    Word,
    parse_script,
)

__all__ = ["ShellRules", "ShellVerdict", "check_command"]


class ShellRules(Protocol):
    """What the checker reads from a profile (a ``PermissionProfile`` is one).

    A protocol rather than the profile class: profiles use this module to
    decide which commands are dangerous, so it must not import them.
    """

    @property
    def name(self) -> str: ...
    @property
    def shell(self) -> str: ...
    @property
    def shell_allowlist(self) -> Sequence[str]: ...
    @property
    def shell_blocklist(self) -> Sequence[str]: ...


@attrs.frozen(slots=True)
class ShellVerdict:
    """Whether a command may run; ``reason`` says why not (or what was checked)."""

    allowed: bool
    reason: str


# Bounds the work of nested `sh -c "sh -c ..."` and `eval` chains.
_MAX_SCRIPT_DEPTH = 8

_SAFE_OUTPUT_TARGETS = frozenset(
    {"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/fd/1", "/dev/fd/2"}
)
_SYSTEM_BIN_DIRS = frozenset({"/bin", "/usr/bin", "/usr/local/bin", "/sbin", "/usr/sbin"})
_OUTPUT_OPS = frozenset({">", ">>", ">|", "&>", "&>>", "<>"})
_FD_TARGET = re.compile(r"[0-2]-?|-")
_PLAIN_ARITHMETIC = re.compile(r"[\s\d+\-*/%()<>=!&|^~?:,]*")
_PARAM_NAME = r"(?:[A-Za-z_][A-Za-z0-9_]*|\d+|[@*#?$!-])"
_PARAM_SIMPLE = re.compile(rf"#?{_PARAM_NAME}(?:\[(?:\d+|@|\*)\])?")
_PARAM_OPERATOR = re.compile(
    rf"{_PARAM_NAME}(?:\[(?:\d+|@|\*)\])?(?::?[-+?]|##?|%%?|//?|/#|/%|\^\^?|,,?)"
)
_PARAM_ASSIGN = re.compile(rf"({_PARAM_NAME})(?:\[(?:\d+|@|\*)\])?:?=")
_PARAM_SUBSTRING = re.compile(rf"{_PARAM_NAME}:\s*-?\d+(?:\s*:\s*-?\d+)?")
_COND_ARITH_OPS = frozenset({"-eq", "-ne", "-lt", "-le", "-gt", "-ge"})


def check_command(command: str, profile: ShellRules) -> ShellVerdict:
    """Judge ``command`` against ``profile``'s shell mode, allowlist and blocklist."""
    if profile.shell == "off":
        return ShellVerdict(False, f"the shell is disabled in profile {profile.name!r}")
    if not command.strip():
        return ShellVerdict(False, "empty command")
    if "\x00" in command:
        return ShellVerdict(False, "command contains a NUL byte")
    if profile.shell == "unrestricted" and not profile.shell_blocklist:
        return ShellVerdict(True, f"profile {profile.name!r} allows any command")
    checker = _Checker(profile)
    refusal = checker.check_script(command, depth=0)
    if refusal is not None:
        return ShellVerdict(False, refusal)
    return ShellVerdict(True, f"allowed by profile {profile.name!r}")


@functools.lru_cache(maxsize=64)
def _matcher(patterns: tuple[str, ...]) -> Callable[[str], re.Match[str] | None]:
    """One compiled regex for a list of glob patterns (what fnmatchcase does, once)."""
    if not patterns:
        return lambda name: None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)).match


class _Checker:
    def __init__(self, profile: ShellRules) -> None:
        self.profile = profile
        self.restricted = profile.shell == "restricted"

    def check_script(self, text: str, *, depth: int) -> str | None:
        if depth > _MAX_SCRIPT_DEPTH:
            return "shell scripts nested too deeply to check"
        try:
            script = parse_script(text)
        except ShellSyntaxError as exc:
            if self.restricted:
                return f"cannot check this command: {exc}"
            return self._scan_words(text)
        if self.restricted:
            for construct in script.constructs:
                refusal = _construct_problem(construct)
                if refusal:
                    return refusal
        for command in script.commands:
            refusal = self._check_simple(command, depth=depth)
            if refusal:
                return refusal
        return None

    def _scan_words(self, text: str) -> str | None:
        """Fallback for unrestricted shells: any blocklisted word is suspect."""
        # Each distinct word once: a megabyte of repeated words is one check.
        for token in dict.fromkeys(re.split(r"[\s;&|()<>`$\"'{}]+", text)):
            if token and self._blocked(os.path.basename(token)):
                return (
                    f"{os.path.basename(token)!r} is blocked by profile {self.profile.name!r} "
                    "(the command could not be parsed, so every word was checked)"
                )
        return None

    def _blocked(self, name: str) -> bool:
        return _matcher(self.profile.shell_blocklist)(name) is not None

    def _allowlisted(self, name: str) -> bool:
        return _matcher(self.profile.shell_allowlist)(name) is not None

    def _check_simple(self, command: SimpleCommand, *, depth: int) -> str | None:
        if self.restricted:
            for redirect in command.redirects:
                refusal = _redirect_problem(redirect)
                if refusal:
                    return refusal
            for assignment in command.assignments:
                refusal = unsafe_assignment(assignment.raw)
                if refusal:
                    return refusal
        return self._check_words(command.words, depth=depth, appended_unknown=False)

    def _check_words(
        self, words: Sequence[Word], *, depth: int, appended_unknown: bool
    ) -> str | None:
        if not words:
            return None
        head, args = words[0], words[1:]
        if not head.is_static:
            if self.restricted:
                return (
                    f"the command name {head.raw!r} is only known at run time; "
                    "write the command literally"
                )
            return None
        path = head.value
        name = os.path.basename(path)
        if self._blocked(name):
            return f"{name!r} is blocked by profile {self.profile.name!r}"
        if self.restricted and "/" in path and os.path.dirname(path) not in _SYSTEM_BIN_DIRS:
            return f"{path!r}: only commands from the system's bin directories may run"
        if self.restricted and name in SHELLS and name != "bash":
            # Its script would be read with bash's grammar, which is not its own.
            return (
                f"{name} is not allowed in a restricted shell (its scripts cannot be checked "
                "with bash's grammar); use bash -c, or run the command directly"
            )
        if name in WRAPPERS:
            # A wrapper is judged by what it runs, so it need not be allowlisted.
            result = unwrap(name, args)
            if (
                self.restricted
                and appended_unknown
                and (
                    isinstance(result, NotAWrapper)
                    or (isinstance(result, InnerCommand) and not result.words)
                )
            ):
                # `xargs nice`: the command itself would come from xargs' input.
                return f"xargs {name}: the command to run would come from input"
            if isinstance(result, Refusal):
                if self.restricted:
                    return result.reason
                return self._scan_static_words(args)
            if isinstance(result, InnerScript):
                return self.check_script(result.text, depth=depth + 1)
            if isinstance(result, InnerCommand):
                if self.restricted:
                    for assignment in result.assignments:
                        refusal = unsafe_assignment(assignment.value)
                        if refusal:
                            return refusal
                return self._check_words(
                    result.words,
                    depth=depth,
                    appended_unknown=appended_unknown or result.appended_unknown,
                )
            assert isinstance(result, NotAWrapper)
            if name != "env":
                return None  # runs nothing (or echo, for xargs)
            # A bare `env` prints the environment: judged as a command of its own.
        if not self.restricted:
            if name == "find":
                for inner in find_exec_commands(args):
                    refusal = self._check_words(inner, depth=depth, appended_unknown=True)
                    if refusal:
                        return refusal
            return None
        if not self._allowlisted(name):
            return (
                f"{name!r} is not in the allowlist of profile {self.profile.name!r} "
                "(restricted shell)"
            )
        problem = check_arguments(name, args, appended_unknown=appended_unknown)
        return problem.reason if problem else None

    def _scan_static_words(self, words: Sequence[Word]) -> str | None:
        for word in words:
            if word.is_static and self._blocked(os.path.basename(word.value)):
                return (
                    f"{os.path.basename(word.value)!r} is blocked by profile {self.profile.name!r}"
                )
        return None


def _redirect_problem(redirect: Redirect) -> str | None:
    op = redirect.op
    target = redirect.target
    if op in ("<<", "<<-", "<<<"):
        return None  # here-documents and here-strings: text, not files
    if op in ("<", "<&"):
        if not target.is_static:
            return f"input redirection {op}{target.raw} reads a file named at run time"
        if _is_socket_path(target.value):
            return f"redirection {op}{target.raw} opens a network connection"
        if op == "<&" and not _FD_TARGET.fullmatch(target.value):
            return f"input redirection {op}{target.raw} reads from a descriptor other than 0-2"
        return None
    if op == ">&" and target.is_static and _FD_TARGET.fullmatch(target.value):
        return None
    if op in _OUTPUT_OPS or op == ">&":
        if target.is_static and target.value in _SAFE_OUTPUT_TARGETS and op != "<>":
            return None
        return (
            f"output redirection {op}{target.raw} writes a file; only /dev/null, "
            "/dev/stdout, /dev/stderr and descriptors (2>&1) are allowed"
        )
    return f"redirection {op!r} is not supported"


def _is_socket_path(path: str) -> bool:
    """bash opens ``/dev/tcp/HOST/PORT`` and ``/dev/udp/...`` as network sockets."""
    normal = posixpath.normpath("/" + path.lstrip("/")) if path.startswith("/") else path
    return normal.startswith(("/dev/tcp/", "/dev/udp/")) or normal in ("/dev/tcp", "/dev/udp")


def _construct_problem(construct: Construct) -> str | None:
    """Refuse the forms that evaluate a variable's *value* as code."""
    text = construct.text
    if construct.kind == "arithmetic":
        if _PLAIN_ARITHMETIC.fullmatch(text):
            return None
        return (
            f"arithmetic on variables ({text.strip()!r}) is not allowed: bash evaluates the "
            "variables' contents, which can run commands"
        )
    if construct.kind == "parameter":
        if _PARAM_SIMPLE.fullmatch(text) or _PARAM_SUBSTRING.fullmatch(text):
            return None
        assign = _PARAM_ASSIGN.match(text)
        if assign:
            refusal = unsafe_assignment(assign.group(1) + "=")
            return f"${{{text}}}: {refusal}" if refusal else None
        if _PARAM_OPERATOR.match(text) and not text.startswith("!"):
            return None
        return f"parameter expansion ${{{text}}} is not allowed in a restricted shell"
    if construct.kind == "conditional":
        words = construct.words
        for k, word in enumerate(words):
            if word.is_static and word.value in ("-v", "-R"):
                return f"[[ {word.value} ]] evaluates array subscripts, which can run commands"
            if word.is_static and word.value in _COND_ARITH_OPS:
                operands = words[k - 1 : k] + words[k + 1 : k + 2]
                if not all(_is_integer_literal(w) for w in operands):
                    return (
                        f"[[ ... {word.value} ... ]] on variables evaluates their contents as "
                        "arithmetic, which can run commands; use [ ... ] instead"
                    )
        return None
    return None  # ANSI-C strings are opaque words; their uses are judged as words


def _is_integer_literal(word: Word) -> bool:
    return (
        word.is_static
        and re.fullmatch(r"-?\d+", word.value) is not None
        and all(p.kind is not PartKind.EXPANSION for p in word.parts)
    )
