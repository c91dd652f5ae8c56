"""A reader for bash syntax, precise enough to judge a command before it runs.

The restricted shell must see *every* command a string would run: the
segments of pipelines and lists, the bodies of subshells and groups, command
substitutions (``$(...)`` and backticks, also inside double quotes and
unquoted here-documents), process substitutions, and the words handed to
``for`` and ``case``. Splitting on ``;`` or ``|`` with a regex gets this wrong
the moment quotes or nesting appear, so this module reads the string the way
bash does: character by character, tracking quoting and nesting.

It is deliberately *not* a full bash parser. It does not check that ``if`` has
its ``fi``; it only needs to find the simple commands, their words,
assignments and redirections, and the constructs whose meaning depends on
run-time values (arithmetic, ``${...}``, ``[[ ]]``). Whatever it does not
understand raises :class:`ShellSyntaxError`, and the policy refuses the
command: failing closed is the point.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from typing import Literal

import attrs

__all__ = [
    "Construct",
    "PartKind",
    "Redirect",
    "Script",
    "ShellSyntaxError",
    "SimpleCommand",
    "Word",
    "WordPart",
    "parse_script",
]

# Deeper nesting than this is refused rather than followed: no honest command
# needs it, and it bounds the work an adversarial string can cause.
MAX_DEPTH = 32
# The reading budget (see parse_script): generous for any real command (a
# 1,000-word pipeline takes a few hundred steps), small enough that the
# worst input is refused in milliseconds.
MAX_SCRIPT_CHARS = 16 * 1024
MAX_STEPS = 5_000


class ShellSyntaxError(ValueError):
    """The reader could not make sense of the string (or would rather not)."""


class PartKind(enum.Enum):
    QUOTED = "quoted"  # literal, immune to globbing and brace expansion
    BARE = "bare"  # literal as written, but globbing/brace expansion apply
    EXPANSION = "expansion"  # value known only at run time


@attrs.frozen(slots=True)
class WordPart:
    kind: PartKind
    text: str


@attrs.frozen(slots=True)
class Word:
    """One shell word, kept as parts so the policy can tell quoting apart.

    ``'-delete'`` and ``-delete`` are the same argument to ``find``, but
    ``-dele*`` might be too (it is a glob), and ``$X`` could be anything.
    """

    parts: tuple[WordPart, ...]
    raw: str

    @property
    def value(self) -> str:
        """The word after quote removal; expansions are left as written."""
        return "".join(p.text for p in self.parts)

    @property
    def has_expansion(self) -> bool:
        return any(p.kind is PartKind.EXPANSION for p in self.parts)

    @property
    def is_static(self) -> bool:
        """True when the word's value is exactly :attr:`value` at run time."""
        if self.has_expansion or self._tilde_prefixed:
            return False
        return not _GLOB.search(self._mask) and not _BRACE.search(self._mask)

    @property
    def _mask(self) -> str:
        """The word with quoted characters blanked: only bare ones can be special."""
        return "".join(p.text if p.kind is PartKind.BARE else "a" * len(p.text) for p in self.parts)

    @property
    def is_bare_literal(self) -> bool:
        """Unquoted and unexpanded: how reserved words and operators are written."""
        return all(p.kind is PartKind.BARE for p in self.parts) and self.is_static

    @property
    def _tilde_prefixed(self) -> bool:
        return (
            bool(self.parts)
            and self.parts[0].kind is PartKind.BARE
            and (self.parts[0].text.startswith("~"))
        )

    def could_be(self, literal: str) -> bool:
        """Whether some run-time expansion of this word could equal ``literal``.

        Errs towards ``True``: only plain ``*`` and ``?`` globs are matched
        precisely; bracket expressions, braces and parameter expansions could
        be anything.
        """
        if self.is_static:
            return self.value == literal
        if self.has_expansion:
            return True
        if self._tilde_prefixed:
            # ~ and ~user expand to absolute paths (or stay as written).
            return literal.startswith(("/", "~"))
        pattern = []
        for part in self.parts:
            if part.kind is PartKind.QUOTED:
                pattern.append(re.escape(part.text))
                continue
            for char in part.text:
                if char in "[{}":
                    return True
                if char == "*":
                    pattern.append(".*")
                elif char == "?":
                    pattern.append(".")
                else:
                    pattern.append(re.escape(char))
        return re.fullmatch("".join(pattern), literal, re.DOTALL) is not None

    def could_start_with(self, char: str) -> bool:
        """Whether some expansion of this word could begin with the character ``char``."""
        if self.is_static:
            return self.value.startswith(char)
        if self._tilde_prefixed:
            return char in "/~"
        for part in self.parts:
            if not part.text:
                continue
            if part.kind is PartKind.EXPANSION:
                return True
            first = part.text[0]
            if part.kind is PartKind.BARE and first in "*?[{":
                return True  # a wildcard (or brace list) can produce any first character
            return first == char
        return False


# A bracket expression needs its closing bracket; "[" alone is a plain word.
_GLOB = re.compile(r"[*?]|\[.*\]")
_BRACE = re.compile(r"\{[^{}]*(?:,|\.\.)[^{}]*\}")


def _literal_word(text: str) -> Word:
    return Word(parts=(WordPart(PartKind.QUOTED, text),), raw=text)


RedirectOp = Literal["<", ">", ">>", ">|", "<>", "<&", ">&", "&>", "&>>", "<<", "<<-", "<<<"]


@attrs.frozen(slots=True)
class Redirect:
    """A redirection; ``target`` is the file word, fd, or here-document delimiter."""

    op: str
    target: Word
    fd: str | None = None


@attrs.frozen(slots=True)
class SimpleCommand:
    """A command as bash runs it: assignments, then words, plus redirections.

    A command with no words is an assignment-only or redirection-only command,
    or the redirections that follow a compound command (``{ ...; } > f``).
    """

    assignments: tuple[Word, ...]
    words: tuple[Word, ...]
    redirects: tuple[Redirect, ...]


ConstructKind = Literal["arithmetic", "parameter", "conditional", "ansi-c"]


@attrs.frozen(slots=True)
class Construct:
    """A construct whose effect depends on run-time values.

    Recorded so a strict policy can refuse the dangerous forms (arithmetic
    on variables evaluates their *contents*, which can run commands).
    """

    kind: ConstructKind
    text: str
    words: tuple[Word, ...] = ()


@attrs.frozen(slots=True)
class Script:
    commands: tuple[SimpleCommand, ...]
    constructs: tuple[Construct, ...]


def parse_script(text: str) -> Script:
    """Read ``text`` as bash would and list every simple command it contains.

    Bounded, so that no input can hold the caller: a script over
    ``MAX_SCRIPT_CHARS`` characters, or one whose reading takes more than
    ``MAX_STEPS`` expansion steps (deeply nested, ambiguous ``$((``), is a
    :class:`ShellSyntaxError` ("too long" / "too complex to check").
    """
    if len(text) > MAX_SCRIPT_CHARS:
        raise ShellSyntaxError(
            f"command too long to check ({len(text)} characters; the limit is {MAX_SCRIPT_CHARS})"
        )
    reader = _Reader(text, depth=0)
    reader.parse_list(end_ops=frozenset(), end_words=frozenset())
    if reader.pending_heredocs:
        raise ShellSyntaxError(
            f"here-document {reader.pending_heredocs[0].delimiter!r} has no body"
        )
    return Script(commands=tuple(reader.commands), constructs=tuple(reader.constructs))


# --- the reader ----------------------------------------------------------------

_METACHARS = frozenset(" \t\n;&|()<>")
_BLANKS = frozenset(" \t")
_CONTROL_OPS = (";;&", ";;", ";&", "&&", "||", "|&", ";", "&", "|", "\n")
_REDIRECT_OPS: tuple[str, ...] = (
    *("&>>", "<<<", "<<-", "&>", "<<", "<>", "<&", ">&", ">>", ">|", "<", ">"),
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\[[^\]]*\])?\+?=")
_SPECIAL_PARAMS = frozenset("@*#?-$!0123456789")

# Reserved words that only open or join compound commands; the reader steps
# over them and keeps looking for the command that follows.
_PREFIX_WORDS = frozenset({"!", "{", "if", "then", "elif", "else", "while", "until", "do"})
# Reserved words that close a compound command; redirections may follow them.
_CLOSING_WORDS = frozenset({"}", "fi", "done", "esac"})


@attrs.define
class _Heredoc:
    delimiter: str
    strip_tabs: bool
    expands: bool


class _Budget:
    """Expansion steps left for one script, shared by every reader of it."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_STEPS

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise ShellSyntaxError("command too complex to check")


class _Reader:
    def __init__(self, text: str, *, depth: int, budget: _Budget | None = None) -> None:
        if depth > MAX_DEPTH:
            raise ShellSyntaxError("nesting is too deep to check")
        self.s = text
        self.i = 0
        self.depth = depth
        self.budget = budget if budget is not None else _Budget()
        # Positions where ``$((`` did not read as arithmetic: never tried
        # again (each retry would re-read everything nested inside it).
        self.not_arithmetic: set[int] = set()
        self.commands: list[SimpleCommand] = []
        self.constructs: list[Construct] = []
        self.pending_heredocs: list[_Heredoc] = []

    # -- low level ----------------------------------------------------------

    def _peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def _startswith(self, text: str) -> bool:
        return self.s.startswith(text, self.i)

    def _error(self, message: str) -> ShellSyntaxError:
        return ShellSyntaxError(f"{message} (at character {self.i + 1})")

    def _skip_blanks(self) -> None:
        """Skip blanks, line continuations and comments (not newlines)."""
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in _BLANKS:
                self.i += 1
            elif self._startswith("\\\n"):
                self.i += 2
            elif c == "#":
                end = self.s.find("\n", self.i)
                self.i = len(self.s) if end < 0 else end
            else:
                return

    def _at_end(self) -> bool:
        return self.i >= len(self.s)

    def _peek_control(self) -> str | None:
        for op in _CONTROL_OPS:
            if self._startswith(op):
                return op
        if self._startswith(")"):
            return ")"
        return None

    def _peek_redirect(self) -> str | None:
        if self._startswith("<(") or self._startswith(">("):
            return None  # process substitution, a word
        for op in _REDIRECT_OPS:
            if self._startswith(op):
                return op
        return None

    def _newline(self) -> None:
        """Consume a newline and any here-document bodies that start after it."""
        assert self.s[self.i] == "\n"
        self.i += 1
        pending, self.pending_heredocs = self.pending_heredocs, []
        for heredoc in pending:
            self._read_heredoc_body(heredoc)

    def _skip_newlines(self) -> None:
        while True:
            self._skip_blanks()
            if self._peek() == "\n":
                self._newline()
            else:
                return

    # -- lists and commands -------------------------------------------------

    def parse_list(self, *, end_ops: frozenset[str], end_words: frozenset[str]) -> None:
        """Read commands until an operator in ``end_ops`` or a word in ``end_words``.

        The terminator is left unconsumed for the caller.
        """
        while True:
            self._skip_newlines()
            if self._at_end():
                if end_ops or end_words:
                    raise self._error("unexpected end of command (missing closing token)")
                return
            op = self._peek_control()
            if op is not None and op in end_ops:
                return
            if op is not None:
                raise self._error(f"unexpected {op!r}")
            if end_words and self._peek_reserved() in end_words:
                return
            self._parse_command()
            self._skip_blanks()
            op = self._peek_control()
            if op is None:
                if self._at_end():
                    continue
                raise self._error(f"unexpected {self._peek()!r}")
            if op in end_ops:
                return
            if op == ")":
                raise self._error("unexpected ')'")
            if op in (";;", ";&", ";;&"):
                raise self._error(f"{op!r} outside a case statement")
            if op == "\n":
                self._newline()
                continue
            self.i += len(op)
            if op in ("&&", "||", "|", "|&"):
                self._skip_newlines()
                if self._at_end() or self._peek_control() is not None:
                    raise self._error(f"{op!r} must be followed by a command")

    def _peek_reserved(self) -> str | None:
        """The reserved-word candidate at the cursor, without consuming it."""
        j = self.i
        while j < len(self.s) and self.s[j] not in _METACHARS:
            if self.s[j] in "\\'\"$`":
                return None
            j += 1
        return self.s[self.i : j] or None

    def _parse_command(self) -> None:
        """Read one command at command position (simple or compound)."""
        while True:
            self._skip_blanks()
            if self._startswith("((") and self._try_arithmetic_command():
                self._parse_trailing_redirects()
                return
            if self._startswith("("):
                self.i += 1
                self.parse_list(end_ops=frozenset({")"}), end_words=frozenset())
                self.i += 1
                self._parse_trailing_redirects()
                return
            word = self._peek_reserved()
            if word in _PREFIX_WORDS:
                self.i += len(word)
                continue
            if word == "time":
                self.i += len(word)
                self._skip_blanks()
                if self._peek_reserved() == "-p":
                    self.i += 2
                continue
            if word in _CLOSING_WORDS:
                self.i += len(word)
                self._parse_trailing_redirects()
                return
            if word in ("for", "select"):
                self.i += len(word)
                self._parse_for()
                continue
            if word == "case":
                self.i += len(word)
                self._parse_case()
                return
            if word == "[[":
                self.i += len(word)
                self._parse_conditional()
                self._parse_trailing_redirects()
                return
            if word == "function":
                self.i += len(word)
                self._skip_blanks()
                name = self._read_word()
                if name is None or not name.is_bare_literal:
                    raise self._error("function needs a plain name")
                self._skip_blanks()
                if self._startswith("()"):
                    self.i += 2
                self._skip_newlines()
                continue
            if word in ("coproc", "in"):
                raise self._error(f"{word!r} is not supported here")
            self._parse_simple_command()
            return

    def _parse_trailing_redirects(self) -> None:
        redirects: list[Redirect] = []
        while True:
            self._skip_blanks()
            redirect = self._try_redirect(fd=None)
            if redirect is None:
                break
            redirects.append(redirect)
        if redirects:
            self.commands.append(
                SimpleCommand(assignments=(), words=(), redirects=tuple(redirects))
            )

    def _parse_simple_command(self) -> None:
        assignments: list[Word] = []
        words: list[Word] = []
        redirects: list[Redirect] = []
        while True:
            self._skip_blanks()
            if self._at_end():
                break
            # Before control operators: "&>" is a redirection, not "&" then ">".
            redirect = self._try_redirect(fd=None)
            if redirect is not None:
                redirects.append(redirect)
                continue
            if self._peek_control() is not None:
                break
            if self._startswith("("):
                if len(words) == 1 and not assignments and words[0].is_bare_literal:
                    # name () compound-command: a function definition.
                    self.i += 1
                    self._skip_blanks()
                    if not self._startswith(")"):
                        raise self._error("expected ')' in function definition")
                    self.i += 1
                    self._skip_newlines()
                    self._parse_command()
                    return
                raise self._error("unexpected '('")
            start = self.i
            word = self._read_word()
            if word is None:
                raise self._error(f"unexpected {self._peek()!r}")
            # An io-number (2>) or {fd}> glued to a redirection operator.
            if self.i < len(self.s) and self.s[self.i] in "<>" and self._peek_redirect():
                raw = self.s[start : self.i]
                if raw.isdigit() or re.fullmatch(r"\{[A-Za-z_][A-Za-z0-9_]*\}", raw):
                    redirect = self._try_redirect(fd=raw)
                    assert redirect is not None
                    redirects.append(redirect)
                    continue
            if not words and _ASSIGNMENT.match(word.raw):
                if self._startswith("("):
                    # name=( ... ): array assignment; the elements are words.
                    self.i += 1
                    elements = self._read_words_until(")")
                    word = Word(
                        parts=(*word.parts, WordPart(PartKind.EXPANSION, "(...)")),
                        raw=word.raw + "(" + " ".join(e.raw for e in elements) + ")",
                    )
                assignments.append(word)
                continue
            words.append(word)
        self.commands.append(
            SimpleCommand(
                assignments=tuple(assignments), words=tuple(words), redirects=tuple(redirects)
            )
        )

    def _read_words_until(self, closer: str) -> list[Word]:
        words: list[Word] = []
        while True:
            self._skip_newlines()
            if self._startswith(closer):
                self.i += len(closer)
                return words
            word = self._read_word()
            if word is None:
                raise self._error(f"expected {closer!r}")
            words.append(word)

    def _try_redirect(self, *, fd: str | None) -> Redirect | None:
        op = self._peek_redirect()
        if op is None:
            return None
        self.i += len(op)
        self._skip_blanks()
        target = self._read_word()
        if target is None:
            raise self._error(f"redirection {op!r} needs a target")
        if op in ("<<", "<<-"):
            quoted = any(p.kind is not PartKind.BARE for p in target.parts) or any(
                c in target.raw for c in "'\"\\"
            )
            delimiter = "".join(p.text for p in target.parts)
            if target.has_expansion and not quoted:
                raise self._error("here-document delimiter must be a plain word")
            self.pending_heredocs.append(
                _Heredoc(delimiter=delimiter, strip_tabs=op == "<<-", expands=not quoted)
            )
        return Redirect(op=op, target=target, fd=fd)

    def _parse_for(self) -> None:
        self._skip_blanks()
        if self._startswith("(("):
            self.i += 2
            self._read_arithmetic(closer="))")
        else:
            name = self._read_word()
            if name is None or not _NAME.fullmatch(name.raw):
                raise self._error("for needs a variable name")
            # The loop assigns its variable: judged like NAME=value (PATH...).
            assigned = f"{name.raw}="
            self.commands.append(
                SimpleCommand(
                    assignments=(Word(parts=(WordPart(PartKind.BARE, assigned),), raw=assigned),),
                    words=(),
                    redirects=(),
                )
            )
            self._skip_newlines()
            if self._peek_reserved() == "in":
                self.i += 2
                while True:
                    self._skip_blanks()
                    if self._at_end() or self._peek_control() is not None:
                        break
                    if self._read_word() is None:
                        raise self._error("bad word list in for")
        self._skip_blanks()
        if self._peek_control() in (";", "\n"):
            if self._peek() == "\n":
                self._newline()
            else:
                self.i += 1
        self._skip_newlines()
        if self._peek_reserved() not in ("do", "{"):
            raise self._error("expected 'do' after for")

    def _parse_case(self) -> None:
        self._skip_blanks()
        if self._read_word() is None:
            raise self._error("case needs a word")
        self._skip_newlines()
        if self._peek_reserved() != "in":
            raise self._error("expected 'in' after case word")
        self.i += 2
        while True:
            self._skip_newlines()
            if self._peek_reserved() == "esac":
                self.i += 4
                self._parse_trailing_redirects()
                return
            if self._at_end():
                raise self._error("case without esac")
            if self._startswith("("):
                self.i += 1
            while True:  # patterns: p1 | p2 )
                self._skip_blanks()
                if self._read_word() is None:
                    raise self._error("expected a case pattern")
                self._skip_blanks()
                if self._startswith("|") and not self._startswith("||"):
                    self.i += 1
                    continue
                if self._startswith(")"):
                    self.i += 1
                    break
                raise self._error("expected ')' after case pattern")
            self.parse_list(end_ops=frozenset({";;", ";&", ";;&"}), end_words=frozenset({"esac"}))
            op = self._peek_control()
            if op in (";;", ";&", ";;&"):
                assert op is not None
                self.i += len(op)

    def _parse_conditional(self) -> None:
        """``[[ ... ]]``: operators inside are not shell control operators."""
        words: list[Word] = []
        while True:
            self._skip_newlines()
            if self._at_end():
                raise self._error("'[[' without ']]'")
            if self._peek_reserved() == "]]":
                self.i += 2
                break
            if self._startswith("<(") or self._startswith(">("):
                ops: tuple[str, ...] = ()
            else:
                ops = ("&&", "||", "(", ")", "!", "<", ">", "|")
            for op in ops:
                if self._startswith(op) and (op != "!" or self._peek(1) in " \t"):
                    self.i += len(op)
                    words.append(_literal_word(op))
                    break
            else:
                word = self._read_word()
                if word is None:
                    raise self._error(f"unexpected {self._peek()!r} in [[ ]]")
                words.append(word)
        self.constructs.append(
            Construct(kind="conditional", text=" ".join(w.raw for w in words), words=tuple(words))
        )

    def _try_arithmetic_command(self) -> bool:
        """``(( expr ))``; if it does not close as arithmetic, it was a subshell."""
        saved = (self.i, len(self.commands), len(self.constructs))
        self.i += 2
        try:
            self._read_arithmetic(closer="))")
        except ShellSyntaxError:
            self.i, ncmd, ncon = saved
            del self.commands[ncmd:]
            del self.constructs[ncon:]
            return False
        return True

    # -- words --------------------------------------------------------------

    def _read_word(self) -> Word | None:
        """Read one word at the cursor, or return None if no word starts here."""
        start = self.i
        parts: list[WordPart] = []
        bare: list[str] = []

        def flush() -> None:
            if bare:
                parts.append(WordPart(PartKind.BARE, "".join(bare)))
                bare.clear()

        while self.i < len(self.s):
            c = self.s[self.i]
            if c in "<>" and self._peek(1) == "(":
                flush()
                self.i += 2
                self._nested_list(closer=")")
                parts.append(WordPart(PartKind.EXPANSION, self.s[start : self.i]))
                continue
            if c in _METACHARS:
                break
            if c == "\\":
                nxt = self._peek(1)
                if nxt == "":
                    raise self._error("trailing backslash")
                self.i += 2
                if nxt == "\n":
                    continue
                flush()
                parts.append(WordPart(PartKind.QUOTED, nxt))
                continue
            if c == "'":
                end = self.s.find("'", self.i + 1)
                if end < 0:
                    raise self._error("unterminated single quote")
                flush()
                parts.append(WordPart(PartKind.QUOTED, self.s[self.i + 1 : end]))
                self.i = end + 1
                continue
            if c == '"':
                flush()
                self.i += 1
                parts.extend(self._read_double_quoted())
                continue
            if c == "$" and self._peek(1) == "'":
                flush()
                ansi_start = self.i
                self._read_ansi_c()
                parts.append(WordPart(PartKind.EXPANSION, self.s[ansi_start : self.i]))
                continue
            if c == "$" and self._peek(1) == '"':
                flush()
                self.i += 2
                parts.extend(self._read_double_quoted())
                continue
            if c == "$" or c == "`":
                expansion = self._read_expansion()
                if expansion is not None:
                    flush()
                    parts.append(expansion)
                    continue
            bare.append(c)
            self.i += 1
        flush()
        if self.i == start:
            return None
        return Word(parts=tuple(parts), raw=self.s[start : self.i])

    def _read_double_quoted(self) -> list[WordPart]:
        """Read up to and including the closing double quote."""
        parts: list[WordPart] = []
        text: list[str] = []
        while True:
            if self._at_end():
                raise self._error("unterminated double quote")
            c = self.s[self.i]
            if c == '"':
                self.i += 1
                break
            if c == "\\":
                nxt = self._peek(1)
                if nxt in ('"', "\\", "$", "`"):
                    text.append(nxt)
                    self.i += 2
                    continue
                if nxt == "\n":
                    self.i += 2
                    continue
                text.append(c)
                self.i += 1
                continue
            if c in "$`":
                expansion = self._read_expansion(in_double_quotes=True)
                if expansion is not None:
                    if text:
                        parts.append(WordPart(PartKind.QUOTED, "".join(text)))
                        text.clear()
                    parts.append(expansion)
                    continue
            text.append(c)
            self.i += 1
        if text or not parts:
            parts.append(WordPart(PartKind.QUOTED, "".join(text)))
        return parts

    def _read_ansi_c(self) -> None:
        """``$'...'``: escapes can spell anything, so the value counts as unknown."""
        start = self.i
        self.i += 2
        while True:
            if self._at_end():
                raise self._error("unterminated $'...' string")
            c = self.s[self.i]
            if c == "\\":
                self.i += 2
                continue
            self.i += 1
            if c == "'":
                break
        self.constructs.append(Construct(kind="ansi-c", text=self.s[start : self.i]))

    def _read_expansion(self, *, in_double_quotes: bool = False) -> WordPart | None:
        """Read a ``$``- or backtick-expansion at the cursor, or None for a literal ``$``."""
        start = self.i
        c = self.s[self.i]
        if c == "`":
            self._read_backticks(in_double_quotes=in_double_quotes)
            return WordPart(PartKind.EXPANSION, self.s[start : self.i])
        self.budget.spend()
        nxt = self._peek(1)
        if nxt == "(":
            if self._peek(2) == "(" and start not in self.not_arithmetic:
                saved = (self.i, len(self.commands), len(self.constructs))
                self.i += 3
                try:
                    self._read_arithmetic(closer="))")
                    return WordPart(PartKind.EXPANSION, self.s[start : self.i])
                except ShellSyntaxError as exc:
                    if str(exc) == "command too complex to check":
                        raise
                    self.not_arithmetic.add(start)
                    self.i, ncmd, ncon = saved
                    del self.commands[ncmd:]
                    del self.constructs[ncon:]
            self.i += 2
            self._nested_list(closer=")")
            return WordPart(PartKind.EXPANSION, self.s[start : self.i])
        if nxt == "[":
            self.i += 2
            self._read_arithmetic(closer="]")
            return WordPart(PartKind.EXPANSION, self.s[start : self.i])
        if nxt == "{":
            self.i += 2
            self._read_parameter()
            return WordPart(PartKind.EXPANSION, self.s[start : self.i])
        match = _NAME.match(self.s, self.i + 1)
        if match:
            self.i = match.end()
            return WordPart(PartKind.EXPANSION, self.s[start : self.i])
        if nxt and nxt in _SPECIAL_PARAMS:
            self.i += 2
            return WordPart(PartKind.EXPANSION, self.s[start : self.i])
        return None

    def _nested_list(self, *, closer: str) -> None:
        """Parse commands in place (``$(...)``, ``<(...)``) up to ``closer``."""
        if self.depth + 1 > MAX_DEPTH:
            raise self._error("nesting is too deep to check")
        self.depth += 1
        try:
            self.parse_list(end_ops=frozenset({closer}), end_words=frozenset())
        finally:
            self.depth -= 1
        self.i += len(closer)

    def _read_backticks(self, *, in_double_quotes: bool) -> None:
        """Old-style substitution: unescape, then read the body as a new script."""
        self.i += 1
        body: list[str] = []
        while True:
            if self._at_end():
                raise self._error("unterminated backtick")
            c = self.s[self.i]
            if c == "`":
                self.i += 1
                break
            if c == "\\":
                nxt = self._peek(1)
                if nxt in ("$", "`", "\\") or (in_double_quotes and nxt == '"'):
                    body.append(nxt)
                    self.i += 2
                    continue
            body.append(c)
            self.i += 1
        self._merge(_Reader("".join(body), depth=self.depth + 1, budget=self.budget), whole=True)

    def _merge(self, sub: _Reader, *, whole: bool) -> None:
        if whole:
            sub.parse_list(end_ops=frozenset(), end_words=frozenset())
            if sub.pending_heredocs:
                raise self._error("here-document without a body in substitution")
        self.commands.extend(sub.commands)
        self.constructs.extend(sub.constructs)

    def _read_parameter(self) -> None:
        """``${...}``: find its end and read any substitutions inside it.

        Single quotes are *not* treated as quoting here: inside double quotes
        bash does not either, so a ``$(...)`` between them still runs. Treating
        them as plain characters can only find more substitutions, never fewer.
        """
        start = self.i
        depth = 1
        while True:
            if self._at_end():
                raise self._error("unterminated ${...}")
            c = self.s[self.i]
            if c == "\\":
                self.i += 2
                continue
            if c == '"':
                self.i += 1
                self._read_double_quoted()
                continue
            if c in "$`" and self._read_expansion(in_double_quotes=True) is not None:
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    break
            self.i += 1
        self.constructs.append(Construct(kind="parameter", text=self.s[start : self.i]))
        self.i += 1

    def _read_arithmetic(self, *, closer: str) -> None:
        """Arithmetic up to ``closer`` at paren depth 0, reading nested substitutions."""
        if self.depth + 1 > MAX_DEPTH:
            raise self._error("nesting is too deep to check")
        self.depth += 1
        try:
            self._read_arithmetic_body(closer=closer)
        finally:
            self.depth -= 1

    def _read_arithmetic_body(self, *, closer: str) -> None:
        self.budget.spend()
        start = self.i
        depth = 0
        while True:
            if self._at_end():
                raise self._error("unterminated arithmetic")
            if depth == 0 and self._startswith(closer):
                break
            c = self.s[self.i]
            if c == "(":
                depth += 1
            elif c == ")":
                if depth == 0:
                    raise self._error("unbalanced ')' in arithmetic")
                depth -= 1
            elif c == "\\":
                self.i += 2
                continue
            elif c in "$`":
                if self._read_expansion(in_double_quotes=True) is not None:
                    continue
            elif c == '"':
                self.i += 1
                self._read_double_quoted()
                continue
            elif c == "'":
                end = self.s.find("'", self.i + 1)
                if end < 0:
                    raise self._error("unterminated quote in arithmetic")
                self.i = end + 1
                continue
            self.i += 1
        self.constructs.append(Construct(kind="arithmetic", text=self.s[start : self.i]))
        self.i += len(closer)

    def _read_heredoc_body(self, heredoc: _Heredoc) -> None:
        lines: list[str] = []
        while True:
            if self._at_end():
                raise self._error(f"here-document {heredoc.delimiter!r} is not terminated")
            end = self.s.find("\n", self.i)
            line = self.s[self.i :] if end < 0 else self.s[self.i : end]
            self.i = len(self.s) if end < 0 else end + 1
            check = line.lstrip("\t") if heredoc.strip_tabs else line
            if check == heredoc.delimiter:
                break
            lines.append(line)
        if heredoc.expands:
            body = "\n".join(lines)
            sub = _Reader(body, depth=self.depth + 1, budget=self.budget)
            sub._scan_heredoc_text()
            self._merge(sub, whole=False)

    def _scan_heredoc_text(self) -> None:
        """An unquoted here-document body: like double quotes, minus the quotes."""
        while not self._at_end():
            c = self.s[self.i]
            if c == "\\":
                self.i += 2
                continue
            if c in "$`" and self._read_expansion(in_double_quotes=True) is not None:
                continue
            self.i += 1


def iter_words(command: SimpleCommand) -> Iterable[Word]:
    """All words of ``command``: assignments, arguments, redirection targets."""
    yield from command.assignments
    yield from command.words
    for redirect in command.redirects:
        yield redirect.target
