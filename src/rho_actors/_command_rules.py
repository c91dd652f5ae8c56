"""What read-only commands may be asked to do, argument by argument.

An allowlist of command *names* is not enough: ``find -delete``, ``sed -i``,
``sort -o file``, ``git -c core.pager=sh log`` and ``awk '{ system("...") }'``
all start with a harmless name. This module knows, for each command of the
read-only allowlist that can change the world through its arguments, which
arguments do so; and, for *wrappers* (``env``, ``xargs``, ``timeout``,
``sh -c``...), which command they run.

Two rules hold throughout:

* GNU tools accept options after operands and unambiguous prefixes of long
  options (``--out`` is ``--output``), so every argument before ``--`` is
  scanned, and long options are matched by prefix.
* An argument whose value is only known at run time (``$X``, a glob, a brace
  expansion) is refused wherever it could turn into a dangerous option; a glob
  such as ``*.txt`` can expand to a file named ``-i.txt``. Putting ``--``
  before operands, or writing ``./*.txt``, is the way out, and the refusal
  says so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import attrs

from ._shell_syntax import PartKind, Word, WordPart

__all__ = [
    "SHELLS",
    "WRAPPERS",
    "InnerCommand",
    "InnerScript",
    "NotAWrapper",
    "Refusal",
    "WrapperResult",
    "check_arguments",
    "find_exec_commands",
    "unsafe_assignment",
    "unwrap",
]


@attrs.frozen(slots=True)
class Refusal:
    reason: str


@attrs.frozen(slots=True)
class InnerCommand:
    """The command a wrapper runs.

    ``appended_unknown`` is set when the wrapper adds arguments only known at
    run time (``xargs``): commands with argument rules cannot be checked then.
    """

    words: tuple[Word, ...]
    assignments: tuple[Word, ...] = ()
    appended_unknown: bool = False


@attrs.frozen(slots=True)
class InnerScript:
    """A shell script a wrapper runs (``sh -c TEXT``, ``eval``)."""

    text: str


@attrs.frozen(slots=True)
class NotAWrapper:
    """The command runs nothing else (or a wrapper given no command)."""


WrapperResult = InnerCommand | InnerScript | NotAWrapper | Refusal

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash"})
WRAPPERS = frozenset(
    {"env", "nice", "ionice", "timeout", "stdbuf", "xargs", "command", "exec", "builtin", "time"}
    | SHELLS
    | {"eval"}
)


def _dynamic(word: Word, name: str) -> Refusal:
    return Refusal(
        f"{name}: argument {word.raw!r} is only known at run time and could turn into "
        "an option; put '--' before operands or write the argument literally"
    )


def _scan(
    name: str,
    args: Sequence[Word],
    *,
    forbidden_short: str = "",
    valued_short: str = "",
    forbidden_long: dict[str, str] | None = None,
    valued_long: frozenset[str] = frozenset(),
    allowed_long: frozenset[str] = frozenset(),
    reason: str = "",
) -> tuple[list[Word], Refusal | None]:
    """Scan getopt-style options for forbidden ones; return the operands.

    ``valued_short``/``valued_long`` only let the scan skip option values; an
    option missing from them has its value scanned as if it were an option,
    which can refuse too much but never too little.
    """
    forbidden_long = forbidden_long or {}
    operands: list[Word] = []
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if not word.is_static:
            if word.could_start_with("-"):
                return operands, _dynamic(word, name)
            operands.append(word)
            continue
        value = word.value
        if value == "--":
            operands.extend(args[i:])
            break
        if value.startswith("--"):
            opt, eq, _ = value[2:].partition("=")
            # Prefixes count: getopt_long takes --out for --output.
            hits = [f for f in forbidden_long if f.startswith(opt)] if opt else []
            if hits and opt not in allowed_long:
                why = forbidden_long[hits[0]] or reason
                return operands, Refusal(f"{name} --{hits[0]} is not allowed: {why}")
            if not eq and any(v.startswith(opt) for v in valued_long) and opt:
                i += 1
            continue
        if value.startswith("-") and value != "-":
            for k, char in enumerate(value[1:], start=1):
                if char in forbidden_short:
                    return operands, Refusal(f"{name} -{char} is not allowed: {reason}")
                if char in valued_short:
                    if k == len(value) - 1:
                        i += 1
                    break
            continue
        operands.append(word)
    return operands, None


# --- per-command rules ------------------------------------------------------------

_FIND_FORBIDDEN = {
    "-exec": "it runs commands",
    "-execdir": "it runs commands",
    "-ok": "it runs commands",
    "-okdir": "it runs commands",
    "-delete": "it deletes files",
    "-fprint": "it writes files",
    "-fprint0": "it writes files",
    "-fprintf": "it writes files",
    "-fls": "it writes files",
}


def _check_find(args: Sequence[Word]) -> Refusal | None:
    for word in args:
        for primary, why in _FIND_FORBIDDEN.items():
            if word.could_be(primary):
                if word.is_static:
                    return Refusal(f"find {primary} is not allowed: {why}")
                return Refusal(
                    f"find: argument {word.raw!r} could expand to {primary} ({why}); "
                    "quote it or write it literally"
                )
    return None


_SED_LONG = {
    "expression": "value",
    "line-length": "value",
    "in-place": "it rewrites files",
    "file": "a script file cannot be checked",
    **dict.fromkeys(
        (
            *("quiet", "silent", "regexp-extended", "separate", "sandbox", "unbuffered", "binary"),
            *("follow-symlinks", "debug", "posix", "null-data", "zero-terminated", "help"),
            *("version",),
        ),
        "flag",
    ),
}


def _resolve_long(opt: str, known: dict[str, str]) -> str | None:
    """The long option ``opt`` names, as getopt_long resolves prefixes; None if unclear."""
    if opt in known:
        return opt
    hits = [k for k in known if k.startswith(opt)] if opt else []
    return hits[0] if len(hits) == 1 else None


def _check_sed(args: Sequence[Word]) -> Refusal | None:
    scripts: list[Word] = []
    operands: list[Word] = []
    i = 0
    options_done = False
    while i < len(args):
        word = args[i]
        i += 1
        if options_done:
            operands.append(word)
            continue
        if not word.is_static:
            if word.could_start_with("-"):
                return _dynamic(word, "sed")
            operands.append(word)
            continue
        value = word.value
        if value == "--":
            options_done = True
            continue
        if value.startswith("--"):
            opt, eq, rest = value[2:].partition("=")
            name = _resolve_long(opt, _SED_LONG)
            if name is None:
                return Refusal(f"sed --{opt} is not known to be safe")
            kind = _SED_LONG[name]
            if kind == "value":
                target = _static_word(rest) if eq else (args[i] if i < len(args) else None)
                if not eq:
                    i += 1
                if name == "expression" and target is not None:
                    scripts.append(target)
            elif kind != "flag":
                return Refusal(f"sed --{name} is not allowed: {kind}")
            continue
        if value.startswith("-") and value != "-":
            for k, char in enumerate(value[1:], start=1):
                if char == "i":
                    return Refusal("sed -i is not allowed: it rewrites files")
                if char == "f":
                    return Refusal("sed -f is not allowed: a script file cannot be checked")
                if char in "el":
                    attached = value[k + 1 :]
                    if attached:
                        if char == "e":
                            scripts.append(_static_word(attached))
                    elif i < len(args):
                        if char == "e":
                            scripts.append(args[i])
                        i += 1
                    break
                if char not in "nsErzub":
                    return Refusal(f"sed -{char} is not known to be safe")
            continue
        operands.append(word)
    if not scripts:
        if not operands:
            return None  # sed prints its usage
        scripts.append(operands[0])
    for script in scripts:
        if not script.is_static:
            return Refusal(f"sed: script {script.raw!r} is only known at run time")
        problem = sed_script_problem(script.value)
        if problem:
            return Refusal(f"sed: {problem}")
    return None


def _static_word(text: str) -> Word:
    return Word(parts=(WordPart(PartKind.QUOTED, text),), raw=text)


def sed_script_problem(script: str) -> str | None:
    """Why a sed script is not read-only, or None.

    Reads the GNU sed grammar far enough to find the commands that write
    files (``w``, ``W``, the ``w`` flag of ``s``) or run commands (``e``, the
    ``e`` flag of ``s``). Anything it cannot follow is a problem too.
    """
    s = script
    n = len(s)
    i = 0

    def skip_regex(j: int, delim: str) -> int:
        while j < n:
            c = s[j]
            if c == "\\":
                j += 2
                continue
            if c == delim:
                return j + 1
            if c == "\n" and delim != "\n":
                raise ValueError("unterminated regex")
            j += 1
        raise ValueError("unterminated regex")

    def skip_address(j: int) -> int:
        if j < n and s[j].isdigit():
            while j < n and s[j].isdigit():
                j += 1
            if j < n and s[j] == "~":
                j += 1
                while j < n and s[j].isdigit():
                    j += 1
        elif j < n and s[j] == "$":
            j += 1
        elif j < n and s[j] == "/":
            j = skip_regex(j + 1, "/")
            while j < n and s[j] in "IM":
                j += 1
        elif j < n and s[j] == "\\" and j + 1 < n:
            j = skip_regex(j + 2, s[j + 1])
            while j < n and s[j] in "IM":
                j += 1
        return j

    def to_line_end(j: int) -> int:
        end = s.find("\n", j)
        return n if end < 0 else end

    try:
        while i < n:
            while i < n and s[i] in " \t\n;":
                i += 1
            if i >= n:
                break
            if s[i] == "#":
                i = to_line_end(i)
                continue
            i = skip_address(i)
            while i < n and s[i] in " \t":
                i += 1
            if i < n and s[i] == ",":
                i += 1
                while i < n and s[i] in " \t":
                    i += 1
                if i < n and s[i] in "+~":
                    i += 1
                    while i < n and s[i].isdigit():
                        i += 1
                else:
                    i = skip_address(i)
            while i < n and s[i] in " \t!":
                i += 1
            if i >= n:
                return "incomplete sed script"
            cmd = s[i]
            i += 1
            if cmd in "{}":
                continue
            if cmd == "s":
                if i >= n:
                    return "incomplete s command"
                delim = s[i]
                if delim in "\\\n":
                    return "s command has an unusual delimiter"
                i = skip_regex(i + 1, delim)
                i = skip_regex(i, delim)
                while i < n and s[i] not in ";\n}":
                    flag = s[i]
                    if flag == "e":
                        return "the e flag of s runs commands"
                    if flag == "w":
                        return "the w flag of s writes a file"
                    if flag not in "gpiImM0123456789 \t":
                        return f"unknown s flag {flag!r}"
                    i += 1
            elif cmd == "y":
                if i >= n:
                    return "incomplete y command"
                delim = s[i]
                i = skip_regex(i + 1, delim)
                i = skip_regex(i, delim)
            elif cmd in "aic":
                # Text to the end of the line; an odd number of trailing
                # backslashes continues it (`\\` is an escaped backslash).
                while True:
                    end = to_line_end(i)
                    trailing = len(s[i:end]) - len(s[i:end].rstrip("\\"))
                    if trailing % 2 == 1 and end < n:
                        i = end + 1
                        continue
                    i = end
                    break
            elif cmd in "bBtT:v":
                # A label (or v's version) ends at the first blank, ';', '}' or
                # newline: GNU sed reads what follows a blank as a command, so
                # stopping early never hides one.
                while i < n and s[i] in " \t":
                    i += 1
                while i < n and s[i] not in " \t;\n}":
                    i += 1
            elif cmd in "rR":
                i = to_line_end(i)
            elif cmd in "wW":
                return f"the {cmd} command writes a file"
            elif cmd == "e":
                return "the e command runs commands"
            elif cmd in "=dDgGhHnNpPxzF":
                pass
            elif cmd in "lLqQ":
                while i < n and s[i] in " \t0123456789":
                    i += 1
            else:
                return f"unknown sed command {cmd!r}"
    except ValueError as exc:
        return str(exc)
    return None


_AWK_SHORT = {
    "F": "value",
    "v": "value",
    "e": "program",
    **dict.fromkeys("bcPrSnNtO", "flag"),
    "f": "a program file cannot be checked",
    "E": "a program file cannot be checked",
    "i": "it includes a source file",
    "l": "it loads an extension",
    "o": "it writes a file",
    "p": "it writes a file",
    "d": "it writes a file",
    "D": "it starts the debugger",
    "W": "mawk -W options are not checked",
}
_AWK_LONG = {
    "field-separator": "value",
    "assign": "value",
    "source": "program",
    **dict.fromkeys(
        (
            *("sandbox", "characters-as-bytes", "traditional", "posix", "re-interval"),
            *("non-decimal-data", "optimize", "no-optimize", "lint", "bignum", "use-lc-numeric"),
        ),
        "flag",
    ),
    "file": "a program file cannot be checked",
    "exec": "a program file cannot be checked",
    "include": "it includes a source file",
    "load": "it loads an extension",
    "pretty-print": "it writes a file",
    "profile": "it writes a file",
    "dump-variables": "it writes a file",
    "debug": "it starts the debugger",
}


def _check_awk(name: str, args: Sequence[Word]) -> Refusal | None:
    programs: list[Word] = []
    first_operand: Word | None = None
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if not word.is_static:
            if word.could_start_with("-"):
                return _dynamic(word, name)
            first_operand = word
            break
        value = word.value
        if value == "--":
            first_operand = args[i] if i < len(args) else None
            break
        if value.startswith("--"):
            opt, eq, rest = value[2:].partition("=")
            long_name = _resolve_long(opt, _AWK_LONG)
            if long_name is None:
                return Refusal(f"{name} --{opt} is not known to be safe")
            kind = _AWK_LONG[long_name]
        elif value.startswith("-") and value != "-":
            kind = _AWK_SHORT.get(value[1], f"-{value[1]} is not known to be safe")
            long_name = value[1]
            eq, rest = ("=", value[2:]) if len(value) > 2 else ("", "")
            if kind == "flag" and not all(_AWK_SHORT.get(c) == "flag" for c in value[1:]):
                return Refusal(f"{name} {value} is not known to be safe")
        else:
            first_operand = word
            break
        if kind in ("value", "program"):
            target = _static_word(rest) if eq else (args[i] if i < len(args) else None)
            if not eq:
                i += 1
            if kind == "program" and target is not None:
                programs.append(target)
        elif kind != "flag":
            return Refusal(f"{name} {value} is not allowed: {kind}")
    if not programs:
        if first_operand is None:
            return None  # awk prints its usage
        programs.append(first_operand)
    for program in programs:
        if not program.is_static:
            return Refusal(f"{name}: program {program.raw!r} is only known at run time")
        problem = awk_program_problem(program.value)
        if problem:
            return Refusal(f"{name}: {problem}")
    return None


def awk_program_problem(program: str) -> str | None:
    """Why an awk program might not be read-only, or None.

    Deliberately *not* a parse: whether a ``/`` starts a regular expression
    or divides, and where a statement that continues over a newline ends,
    decide what awk runs, and a checker that guesses differently from awk is
    a bypass. So the rules look at the raw text, strings and comments
    included, and refuse a superset of what is dangerous: ``system`` or a
    pipe anywhere (``||`` aside), a ``>`` anywhere in a program that prints
    (output redirection), gawk's ``@`` directives and indirect calls, and
    its network special files.
    """
    if "system" in program:
        return "system() runs commands (the word may not appear anywhere in the program)"
    if "|" in program.replace("||", ""):
        return "pipes to or from commands are not allowed ('|' may only appear as '||')"
    if "@" in program:
        return "@include/@load and indirect calls are not allowed"
    if "/inet" in program:
        return "network special files (/inet) are not allowed"
    if "print" in program and ">" in program:
        return (
            "a program that prints may not contain '>' (it can redirect output to a file); "
            "write comparisons with '<' or '<=' instead, e.g. '100 < $3'"
        )
    return None


_GIT_READ_ONLY = frozenset(
    {
        *("status", "log", "show", "diff", "blame", "annotate", "shortlog", "describe"),
        *("rev-parse", "rev-list", "ls-files", "ls-tree", "cat-file", "grep", "merge-base"),
        *("name-rev", "diff-tree", "diff-files", "diff-index", "for-each-ref", "show-ref"),
        *("count-objects", "version", "whatchanged", "cherry", "show-branch", "check-ignore"),
        *("check-attr", "branch", "tag", "remote", "stash", "reflog", "config"),
    }
)
_GIT_GLOBAL_VALUED = frozenset({"-C", "--git-dir", "--work-tree"})
_GIT_GLOBAL_FLAGS = frozenset(
    {
        *("--no-pager", "-P", "--no-replace-objects", "--literal-pathspecs", "--glob-pathspecs"),
        *("--noglob-pathspecs", "--icase-pathspecs", "--no-optional-locks", "--bare"),
    }
)
# Options under which `git branch`/`git tag` only list (their operands are
# patterns or commits, not names to create).
_GIT_LIST_SELECTORS = frozenset(
    {"-l", "--list", "--contains", "--no-contains", "--merged", "--no-merged", "--points-at"}
)
_GIT_BRANCH_FLAGS = _GIT_LIST_SELECTORS | {
    *("-a", "--all", "-r", "--remotes", "-v", "-vv", "--verbose", "--show-current", "--sort"),
    *("--format", "--abbrev", "--no-color", "--color", "-i", "--ignore-case", "--omit-empty"),
    *("--column", "--no-column"),
}
_GIT_TAG_FLAGS = _GIT_LIST_SELECTORS | {
    *("-n", "--sort", "--format", "--column", "--no-column", "-i", "--ignore-case", "--color"),
}
_GIT_FORBIDDEN_LONG = {
    "output": "it writes a file",
    "ext-diff": "it runs an external diff program",
    "textconv": "it runs conversion filters",
    "filters": "it runs conversion filters",
    "open-files-in-pager": "it runs a pager",
    "exec": "it runs a program",
    "upload-pack": "it runs a program",
    "edit": "it starts an editor",
}


def _check_git(args: Sequence[Word], *, appended_unknown: bool) -> Refusal | None:
    i = 0
    while i < len(args):
        word = args[i]
        if not word.is_static:
            return Refusal(f"git: argument {word.raw!r} is only known at run time")
        value = word.value
        if not value.startswith("-"):
            break
        opt = value.partition("=")[0]
        if opt in _GIT_GLOBAL_VALUED:
            i += 1 if "=" in value else 2
            continue
        if value in _GIT_GLOBAL_FLAGS:
            i += 1
            continue
        return Refusal(f"git option {value} is not allowed before the subcommand")
    if i >= len(args):
        return None  # git prints its usage
    sub = args[i].value
    rest = list(args[i + 1 :])
    if sub not in _GIT_READ_ONLY:
        return Refusal(f"git {sub} is not a read-only git subcommand")
    if appended_unknown:
        return Refusal(f"git {sub}: arguments appended at run time cannot be checked")
    operands, refusal = _scan(
        f"git {sub}",
        rest,
        forbidden_short="O" if sub == "grep" else "",
        forbidden_long=_GIT_FORBIDDEN_LONG,
        allowed_long=frozenset({"text", "filter"}),
        reason="it runs a pager",
    )
    if refusal:
        return refusal
    flags = {w.value.partition("=")[0] for w in rest if w.is_static and w.value.startswith("-")}
    values = [w.value for w in operands]
    if sub in ("branch", "tag"):
        allowed = _GIT_BRANCH_FLAGS if sub == "branch" else _GIT_TAG_FLAGS
        noun = "branches" if sub == "branch" else "tags"
        for flag in sorted(flags):
            if flag not in allowed and not re.fullmatch(r"-n\d+", flag):
                return Refusal(f"git {sub} {flag} changes {noun}; only listing is allowed")
        if operands and not flags & _GIT_LIST_SELECTORS:
            return Refusal(f"git {sub} NAME creates a {sub}; only listing is allowed")
    elif sub == "remote":
        if any(f not in ("-v", "--verbose") for f in flags) or (values and values[0] != "get-url"):
            return Refusal("git remote: only listing (git remote -v, get-url) is allowed")
    elif sub == "stash":
        if not values or values[0] not in ("list", "show"):
            return Refusal("git stash: only 'list' and 'show' are allowed")
    elif sub == "reflog":
        if values and values[0] in ("expire", "delete"):
            return Refusal(f"git reflog {values[0]} changes the reflog")
    elif sub == "config":
        getters = {"--get", "--get-all", "--get-regexp", "--list", "-l", "--get-urlmatch"}
        setters = {"--unset", "--unset-all", "--add", "--replace-all", "--rename-section"}
        if not flags & getters or flags & (setters | {"--remove-section", "-e"}):
            return Refusal("git config: only reading (--get, --list) is allowed")
    return None


def _check_uniq(args: Sequence[Word]) -> Refusal | None:
    operands, refusal = _scan("uniq", args, valued_short="fsw")
    if refusal:
        return refusal
    for word in operands:
        if not word.is_static:
            return Refusal(
                f"uniq: operand {word.raw!r} could expand to several files; "
                "uniq writes to its second operand"
            )
    if len(operands) > 1:
        return Refusal("uniq with two operands writes the second one")
    return None


def _check_date(args: Sequence[Word]) -> Refusal | None:
    operands, refusal = _scan(
        "date",
        args,
        forbidden_short="s",
        valued_short="dfrI",
        forbidden_long={"set": "it sets the system clock"},
        valued_long=frozenset({"date", "file", "reference", "rfc-3339"}),
        reason="it sets the system clock",
    )
    if refusal:
        return refusal
    for word in operands:
        if not word.is_static or not word.value.startswith("+"):
            return Refusal("date: an operand other than +FORMAT sets the system clock")
    return None


_TEST_UNARY = frozenset(
    [
        *("-a", "-b", "-c", "-d", "-e", "-f", "-g", "-h", "-k", "-p", "-r", "-s", "-t", "-u"),
        *("-w", "-x", "-G", "-L", "-N", "-O", "-S", "-z", "-n", "-o"),
    ]
)
_TEST_BINARY = frozenset(
    ["=", "==", "!=", "<", ">", "-eq", "-ne", "-lt", "-le", "-gt", "-ge", "-nt", "-ot", "-ef"]
)


def _check_test(name: str, args: Sequence[Word]) -> Refusal | None:
    """``test``/``[``: refuse ``-v``/``-R``, and values that could become them.

    Follows bash's own reading of the arguments: a word is read as an operator
    only at the start of a term that is not ``X BINOP Y``. Only there can a
    run-time value such as ``"$x"`` turn into ``-v`` and evaluate a subscript.
    """
    words = list(args)
    if name == "[" and words and words[-1].is_static and words[-1].value == "]":
        words = words[:-1]
    for word in words:
        if word.is_static and word.value in ("-v", "-R"):
            return Refusal(
                f"{name} {word.value} evaluates array subscripts, which can run commands"
            )
    n = len(words)
    i = 0
    expect_term = True
    while i < n:
        word = words[i]
        static = word.value if word.is_static else None
        if not expect_term:
            expect_term = static in ("-a", "-o")
            i += 1
            continue
        if static in ("!", "("):
            i += 1
            continue
        nxt = words[i + 1] if i + 1 < n else None
        if nxt is not None and nxt.is_static and nxt.value in _TEST_BINARY and i + 2 < n:
            i += 3
        elif static in _TEST_UNARY and nxt is not None:
            i += 2
        elif static is not None or nxt is None or n == 1:
            i += 1
        else:
            return Refusal(
                f"{name}: {word.raw!r} could be read as the -v operator, which evaluates "
                "array subscripts and can run commands"
            )
        expect_term = False
    return None


def _check_printf(args: Sequence[Word]) -> Refusal | None:
    if args and args[0].could_be("-v"):
        return Refusal("printf -v assigns a variable (its subscript can run commands)")
    return None


def _check_hostname(args: Sequence[Word]) -> Refusal | None:
    operands, refusal = _scan(
        "hostname",
        args,
        forbidden_short="Fb",
        forbidden_long={"file": "it sets the host name", "boot": "it sets the host name"},
        reason="it sets the host name",
    )
    if refusal:
        return refusal
    if operands:
        return Refusal("hostname NAME sets the host name")
    return None


@attrs.frozen(slots=True)
class _OptionRule:
    """Forbidden options of a getopt-style command; see :func:`_scan`."""

    reason: str
    forbidden_short: str = ""
    valued_short: str = ""
    forbidden_long: dict[str, str] = attrs.field(factory=dict)
    valued_long: frozenset[str] = frozenset()


_SIMPLE_RULES: dict[str, _OptionRule] = {
    "sort": _OptionRule(
        reason="it writes a file",
        forbidden_short="o",
        valued_short="ktST",
        forbidden_long={"output": "it writes a file", "compress-program": "it runs a program"},
        valued_long=frozenset(
            {
                *("key", "field-separator", "buffer-size", "temporary-directory", "random-source"),
                *("parallel", "files0-from", "batch-size"),
            }
        ),
    ),
    "file": _OptionRule(
        reason="it writes a compiled magic file",
        forbidden_short="C",
        valued_short="efFmP",
        forbidden_long={"compile": "it writes a compiled magic file"},
    ),
    "tree": _OptionRule(
        reason="it writes a file (-R with -H writes one into every directory)",
        forbidden_short="oR",
        valued_short="LIPH",
        forbidden_long={"output": "it writes a file"},
    ),
    "rg": _OptionRule(
        reason="it runs a preprocessor command",
        valued_short="efgtTABCmMjrE",
        forbidden_long={"pre": "it runs a preprocessor command"},
        valued_long=frozenset(
            {
                *("regexp", "file", "glob", "iglob", "type", "type-not", "after-context"),
                *("before-context", "context", "max-count", "max-columns", "threads", "replace"),
                *("encoding", "pre-glob", "sort", "sortr", "max-depth"),
            }
        ),
    ),
}

# Commands whose argument rules cannot be applied to arguments added at run time.
RULED_COMMANDS = frozenset(
    {
        "find",
        "sed",
        "gsed",
        "awk",
        "gawk",
        "mawk",
        "nawk",
        "git",
        "uniq",
        "date",
        "test",
        "[",
        "printf",
        "hostname",
        *_SIMPLE_RULES,
    }
)


def check_arguments(
    name: str, args: Sequence[Word], *, appended_unknown: bool = False
) -> Refusal | None:
    """Refusal if running ``name`` with ``args`` could change anything."""
    if appended_unknown and name in RULED_COMMANDS:
        return Refusal(f"{name}: arguments added at run time (by xargs) cannot be checked")
    if name == "find":
        return _check_find(args)
    if name in ("sed", "gsed"):
        return _check_sed(args)
    if name in ("awk", "gawk", "mawk", "nawk"):
        return _check_awk(name, args)
    if name == "git":
        return _check_git(args, appended_unknown=appended_unknown)
    if name == "uniq":
        return _check_uniq(args)
    if name == "date":
        return _check_date(args)
    if name in ("test", "["):
        return _check_test(name, args)
    if name == "printf":
        return _check_printf(args)
    if name == "hostname":
        return _check_hostname(args)
    rule = _SIMPLE_RULES.get(name)
    if rule is not None:
        _, refusal = _scan(
            name,
            args,
            forbidden_short=rule.forbidden_short,
            valued_short=rule.valued_short,
            forbidden_long=rule.forbidden_long,
            valued_long=rule.valued_long,
            reason=rule.reason,
        )
        return refusal
    return None


def find_exec_commands(args: Sequence[Word]) -> list[tuple[Word, ...]]:
    """The commands ``find -exec ... ;`` would run (for the blocklist)."""
    commands: list[tuple[Word, ...]] = []
    i = 0
    while i < len(args):
        if args[i].value in ("-exec", "-execdir", "-ok", "-okdir"):
            j = i + 1
            while j < len(args) and args[j].value not in (";", "+"):
                j += 1
            commands.append(tuple(args[i + 1 : j]))
            i = j
        i += 1
    return commands


# --- wrappers ---------------------------------------------------------------------


def unwrap(name: str, args: Sequence[Word]) -> WrapperResult:
    """The command or script that wrapper ``name`` runs with ``args``."""
    if name in SHELLS:
        return _unwrap_shell(name, args)
    if name == "eval":
        if not all(w.is_static for w in args):
            return Refusal("eval: arguments only known at run time cannot be checked")
        return InnerScript(" ".join(w.value for w in args)) if args else NotAWrapper()
    handler = {
        "env": _unwrap_env,
        "nice": _unwrap_nice,
        "ionice": _unwrap_ionice,
        "timeout": _unwrap_timeout,
        "stdbuf": _unwrap_stdbuf,
        "xargs": _unwrap_xargs,
        "command": _unwrap_command,
        "exec": _unwrap_exec,
        "builtin": _unwrap_builtin,
        "time": _unwrap_time,
    }.get(name)
    if handler is None:
        return NotAWrapper()
    return handler(args)


def _options_then_command(
    name: str,
    args: Sequence[Word],
    *,
    flags: frozenset[str],
    valued: frozenset[str],
    attached_ok: str = "",
) -> tuple[int, Refusal | None]:
    """Index of the wrapped command after ``name``'s options, or a refusal."""
    i = 0
    while i < len(args):
        word = args[i]
        if not word.is_static:
            return i, Refusal(f"{name}: argument {word.raw!r} is only known at run time")
        value = word.value
        if value == "--":
            return i + 1, None
        if not value.startswith("-") or value == "-":
            return i, None
        opt, eq, _ = value.partition("=")
        if opt in flags:
            i += 1
        elif opt in valued:
            i += 1 if eq else 2
        elif len(value) > 2 and value[:2] in valued and value[1] in attached_ok:
            i += 1  # -n10 style
        else:
            return i, Refusal(f"{name} option {value} is not known to be safe")
    return i, None


_UNSAFE_ENV_NAMES = re.compile(
    r"PATH|LD_\w*|BASH\w*|ENV|SHELLOPTS|BASHOPTS|IFS|PS[0-4]|PROMPT_COMMAND"
    r"|CDPATH|GLOBIGNORE|HOME|HISTFILE|BASH_XTRACEFD|BASH_LOADABLES_PATH|EXECIGNORE"
    r"|GIT_\w*|\w*PAGER|EDITOR|VISUAL|LESS\w*|PYTHON\w*|PERL\w*|RUBY\w*|NODE_\w*|XDG_\w*"
    r"|RIPGREP_CONFIG_PATH|GREP_OPTIONS|AWKPATH|AWKLIBPATH|TMPDIR|SSH_\w*|GCONV_PATH"
    r"|LOCPATH|NLSPATH|MALLOC_\w*|TERMINFO\w*|JQ_\w*|BROWSER|SHELL|MANOPT|MANPATH"
)


def unsafe_assignment(text: str) -> str | None:
    """Why a ``NAME=value`` assignment is unsafe in a restricted shell, or None.

    Variables such as ``PATH``, ``LD_PRELOAD``, ``BASH_ENV`` or ``GIT_*``
    change which program runs or make a read-only tool run another one.
    """
    match = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(\+?=)", text)
    if match is None:
        return f"assignment {text!r} is not a plain NAME=value"
    name = match.group(1)
    if _UNSAFE_ENV_NAMES.fullmatch(name):
        return f"setting {name} can change which programs run"
    if text[match.end() :].startswith("("):
        # `a=([$x]=1)`: every subscript is evaluated as arithmetic, where a
        # variable's contents can run commands (and BASH_CMDS=([ls]=...)
        # redirects commands).
        return f"array assignment {text!r} is not allowed in a restricted shell"
    return None


def _unwrap_env(args: Sequence[Word]) -> WrapperResult:
    i = 0
    assignments: list[Word] = []
    while i < len(args):
        word = args[i]
        if not word.is_static:
            return Refusal(f"env: argument {word.raw!r} is only known at run time")
        value = word.value
        if value in ("-i", "--ignore-environment", "-0", "--null", "-v", "--debug", "-"):
            i += 1
        elif value in ("-u", "--unset", "-C", "--chdir"):
            i += 2
        elif value.startswith(("--unset=", "--chdir=", "-u", "-C")) and len(value) > 2:
            i += 1
        elif value == "--":
            i += 1
            break
        elif value.startswith("-"):
            return Refusal(f"env option {value} is not known to be safe")
        else:
            break
    while i < len(args) and re.match(r"[A-Za-z_][A-Za-z0-9_]*=", args[i].value):
        assignments.append(args[i])
        i += 1
    if i >= len(args):
        if assignments:
            return InnerCommand(words=(), assignments=tuple(assignments))
        return NotAWrapper()
    return InnerCommand(words=tuple(args[i:]), assignments=tuple(assignments))


def _wrapped(args: Sequence[Word], start: int, refusal: Refusal | None) -> WrapperResult:
    if refusal:
        return refusal
    if start >= len(args):
        return NotAWrapper()
    return InnerCommand(words=tuple(args[start:]))


def _unwrap_nice(args: Sequence[Word]) -> WrapperResult:
    if args and args[0].is_static and re.fullmatch(r"-\d+", args[0].value):
        return _wrapped(args, 1, None)
    i, refusal = _options_then_command(
        "nice",
        args,
        flags=frozenset(),
        valued=frozenset({"-n", "--adjustment"}),
        attached_ok="n",
    )
    return _wrapped(args, i, refusal)


def _unwrap_ionice(args: Sequence[Word]) -> WrapperResult:
    i, refusal = _options_then_command(
        "ionice",
        args,
        flags=frozenset({"-t", "--ignore"}),
        valued=frozenset({"-c", "--class", "-n", "--classdata"}),
        attached_ok="cn",
    )
    return _wrapped(args, i, refusal)


def _unwrap_timeout(args: Sequence[Word]) -> WrapperResult:
    i, refusal = _options_then_command(
        "timeout",
        args,
        flags=frozenset({"--preserve-status", "--foreground", "-v", "--verbose"}),
        valued=frozenset({"-s", "--signal", "-k", "--kill-after"}),
        attached_ok="sk",
    )
    if refusal:
        return refusal
    if i >= len(args):
        return NotAWrapper()
    return _wrapped(args, i + 1, None)  # skip DURATION


def _unwrap_stdbuf(args: Sequence[Word]) -> WrapperResult:
    i, refusal = _options_then_command(
        "stdbuf",
        args,
        flags=frozenset(),
        valued=frozenset({"-i", "-o", "-e", "--input", "--output", "--error"}),
        attached_ok="ioe",
    )
    return _wrapped(args, i, refusal)


def _unwrap_xargs(args: Sequence[Word]) -> WrapperResult:
    replace: str | None = None
    i = 0
    flags = {
        *("-0", "--null", "-r", "--no-run-if-empty", "-t", "--verbose", "-x", "--exit", "-p"),
        *("--interactive", "-o", "--open-tty"),
    }
    valued = {
        *("-a", "--arg-file", "-d", "--delimiter", "-E", "-L", "--max-lines", "-n", "--max-args"),
        *("-P", "--max-procs", "-s", "--max-chars"),
    }
    while i < len(args):
        word = args[i]
        if not word.is_static:
            return Refusal(f"xargs: argument {word.raw!r} is only known at run time")
        value = word.value
        opt, eq, rest = value.partition("=")
        if value == "--":
            i += 1
            break
        if not value.startswith("-") or value == "-":
            break
        if value in flags:
            i += 1
        elif opt in valued:
            i += 1 if eq else 2
        elif value in ("-I", "--replace") or opt == "--replace":
            if eq:
                replace = rest
                i += 1
            elif value == "--replace":
                replace = "{}"
                i += 1
            else:
                replace = args[i + 1].value if i + 1 < len(args) else "{}"
                i += 2
        elif value.startswith("-I"):
            replace = value[2:]
            i += 1
        elif value.startswith("-i"):
            replace = value[2:] or "{}"
            i += 1
        elif len(value) > 2 and value[:2] in valued:
            i += 1
        else:
            return Refusal(f"xargs option {value} is not known to be safe")
    if i >= len(args):
        return NotAWrapper()  # xargs runs echo
    words = tuple(args[i:])
    if replace:
        if replace in words[0].raw:
            return Refusal("xargs: the command name comes from input and cannot be checked")
        # Words holding the replace string are only known at run time.
        words = tuple(
            Word(parts=(WordPart(PartKind.EXPANSION, w.raw),), raw=w.raw) if replace in w.raw else w
            for w in words
        )
    return InnerCommand(words=words, appended_unknown=True)


def _unwrap_command(args: Sequence[Word]) -> WrapperResult:
    i = 0
    while i < len(args) and args[i].is_static and args[i].value.startswith("-"):
        flag = args[i].value
        if flag in ("-v", "-V"):
            return NotAWrapper()  # a lookup, runs nothing
        if flag != "-p":
            return Refusal(f"command option {flag} is not known to be safe")
        i += 1
    return _wrapped(args, i, None)


def _unwrap_exec(args: Sequence[Word]) -> WrapperResult:
    i, refusal = _options_then_command(
        "exec", args, flags=frozenset({"-c", "-l", "-cl", "-lc"}), valued=frozenset({"-a"})
    )
    return _wrapped(args, i, refusal)


def _unwrap_builtin(args: Sequence[Word]) -> WrapperResult:
    return _wrapped(args, 0, None)


def _unwrap_time(args: Sequence[Word]) -> WrapperResult:
    # GNU time's -o/--output and -a/--append write a file: not in the safe list.
    i, refusal = _options_then_command(
        "time",
        args,
        flags=frozenset({"-p", "--portability", "-v", "--verbose", "-q", "--quiet"}),
        valued=frozenset({"-f", "--format"}),
    )
    return _wrapped(args, i, refusal)


def _unwrap_shell(name: str, args: Sequence[Word]) -> WrapperResult:
    i = 0
    while i < len(args):
        word = args[i]
        if not word.is_static:
            return Refusal(f"{name}: argument {word.raw!r} is only known at run time")
        value = word.value
        if value in ("-o", "+o"):
            i += 2
            continue
        if value in ("--norc", "--noprofile", "--posix"):
            i += 1
            continue
        if re.fullmatch(r"[-+][euxvfnCbhBHPTl]*c[euxvfnCbhBHPTl]*", value):
            if i + 1 >= len(args):
                return Refusal(f"{name} -c needs a command string")
            script = args[i + 1]
            if not script.is_static:
                return Refusal(f"{name} -c: the script {script.raw!r} is only known at run time")
            return InnerScript(script.value)
        if re.fullmatch(r"[-+][euxvfnCbhBHPTl]+", value):
            i += 1
            continue
        break
    return Refusal(
        f"{name} is only allowed as '{name} -c SCRIPT' (a script file or standard input "
        "cannot be checked)"
    )
