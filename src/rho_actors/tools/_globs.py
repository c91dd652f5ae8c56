"""Glob patterns with ``**``, as the glob and grep tools understand them.

``fnmatch`` lets ``*`` cross directory separators, which makes ``src/*.py``
match ``src/a/b.py``; ripgrep and git do not. These patterns follow ripgrep's
(gitignore-style) rules so that the grep tool's Python fallback filters
exactly as ``rg --glob`` does: ``*`` and ``?`` stay within one path segment,
``**`` spans any number of them, ``[...]`` and ``{a,b}`` work, and a pattern
without a ``/`` matches a file's name in any directory (for grep's filter).
"""

from __future__ import annotations

import os
import stat
import typing
from collections.abc import Iterator

__all__ = ["GlobMatcher", "compile_glob", "matches_name_or_path", "sort_key", "walk_files"]


# Brace alternatives are expanded into separate patterns; past this many,
# the pattern is refused rather than multiplied out ({a,b} twenty times).
MAX_ALTERNATIVES = 256


class GlobMatcher:
    """A compiled glob that matches in time linear in the path's length.

    A glob translated to a backtracking regex (``*a*a*a*a*b`` against a
    long name) can take exponential time in a worker thread nobody can
    stop. Here each brace alternative is a list of tokens and matching runs
    them as a set of states over the text, the way a Thompson NFA does:
    ``O(len(path) * len(pattern))``, whatever the pattern.
    """

    __slots__ = ("_alternatives",)

    def __init__(self, pattern: str) -> None:
        self._alternatives = [_tokens(p) for p in _expand_braces(pattern)]

    def match(self, text: str) -> bool:
        """Whether the whole of ``text`` matches."""
        return any(_run(tokens, text) for tokens in self._alternatives)


def compile_glob(pattern: str) -> GlobMatcher:
    """A matcher for whole relative POSIX paths against ``pattern``."""
    return GlobMatcher(pattern)


def _expand_braces(pattern: str) -> list[str]:
    """``a{b,c}d`` as ``[abd, acd]``, nested braces included, bounded in number."""
    depth = 0
    start = -1
    for i, c in enumerate(pattern):
        if c == "\\":
            continue
        if i and pattern[i - 1] == "\\":
            continue
        if c == "{":
            if depth == 0:
                start = i
            depth += 1
        elif c == "}" and depth:
            depth -= 1
            if depth == 0:
                options = _split_top(pattern[start + 1 : i])
                results: list[str] = []
                for option in options:
                    for rest in _expand_braces(option + pattern[i + 1 :]):
                        results.append(pattern[:start] + rest)
                        if len(results) > MAX_ALTERNATIVES:
                            raise ValueError(f"more than {MAX_ALTERNATIVES} brace alternatives")
                return results
    if depth:
        raise ValueError(f"unbalanced '{{' in glob {pattern!r}")
    return [pattern]


def _split_top(body: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current = ""
    for i, c in enumerate(body):
        escaped = i > 0 and body[i - 1] == "\\"
        if c == "{" and not escaped:
            depth += 1
        elif c == "}" and not escaped:
            depth -= 1
        elif c == "," and depth == 0 and not escaped:
            parts.append(current)
            current = ""
            continue
        current += c
    parts.append(current)
    return parts


# Token kinds: a literal character, "?" (one non-slash), "*" (non-slashes),
# "**" (anything), "**/" (nothing, or anything ending in a slash), "/**" at
# the end (nothing, or a slash then anything), and a character class.
_Token = tuple[str, object]


def _tokens(pattern: str) -> list[_Token]:
    out: list[_Token] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i) and (i == 0 or pattern[i - 1] == "/"):
            out.append(("**/", None))
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == n:
            out.append(("/**", None))
            i += 3
        elif pattern.startswith("**", i):
            out.append(("**", None))
            i += 2
        elif c == "*":
            out.append(("*", None))
            i += 1
        elif c == "?":
            out.append(("?", None))
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "^", "]") else i + 1)
            if end < 0:
                out.append(("lit", c))
                i += 1
                continue
            body = pattern[i + 1 : end]
            negate = body[:1] in ("!", "^")
            out.append(("class", (_class_members(body[1:] if negate else body), negate)))
            i = end + 1
        elif c == "\\" and i + 1 < n:
            out.append(("lit", pattern[i + 1]))
            i += 2
        else:
            out.append(("lit", c))
            i += 1
    return out


def _class_members(body: str) -> list[tuple[str, str]]:
    ranges: list[tuple[str, str]] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            ranges.append((body[i], body[i + 2]))
            i += 3
        else:
            ranges.append((body[i], body[i]))
            i += 1
    return ranges


def _in_class(c: str, arg: object) -> bool:
    ranges, negate = typing.cast(tuple[list[tuple[str, str]], bool], arg)
    if c == "/":
        return False
    inside = any(lo <= c <= hi for lo, hi in ranges)
    return inside != negate


def _run(tokens: list[_Token], text: str) -> bool:
    # A state is (token index, phase); phase 1 is "inside /**, past the slash".
    n = len(tokens)

    def closure(states: set[tuple[int, int]]) -> set[tuple[int, int]]:
        stack = list(states)
        seen = set(states)
        while stack:
            k, phase = stack.pop()
            if k < n and phase == 0 and tokens[k][0] in ("*", "**", "**/", "/**"):
                nxt = (k + 1, 0)  # every star may match nothing
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    states = closure({(0, 0)})
    for c in text:
        following: set[tuple[int, int]] = set()
        for k, phase in states:
            if k >= n:
                continue
            kind, arg = tokens[k]
            if kind == "lit":
                if c == arg:
                    following.add((k + 1, 0))
            elif kind == "?":
                if c != "/":
                    following.add((k + 1, 0))
            elif kind == "class":
                if _in_class(c, arg):
                    following.add((k + 1, 0))
            elif kind == "*":
                if c != "/":
                    following.add((k, 0))
            elif kind == "**":
                following.add((k, 0))
            elif kind == "**/":
                following.add((k, 0))
                if c == "/":
                    following.add((k + 1, 0))
            elif kind == "/**" and (phase == 1 or c == "/"):
                following.add((k, 1))
        if not following:
            return False
        states = closure(following)
    return any(k == n or (k == n - 1 and phase == 1) for k, phase in states)


def matches_name_or_path(matcher: GlobMatcher, pattern: str, relative: str) -> bool:
    """ripgrep's rule: a pattern without ``/`` matches the file name anywhere."""
    if "/" not in pattern.rstrip("/"):
        return matcher.match(relative.rsplit("/", 1)[-1])
    return matcher.match(relative.lstrip("/"))


def sort_key(relative: str) -> tuple[str, ...]:
    """Sort paths segment by segment, so ``a/b`` comes before ``a-c`` as in a tree."""
    return tuple(relative.split("/"))


def walk_files(top_fd: int) -> Iterator[tuple[int, str, str]]:
    """Regular files under the directory open as ``top_fd``: (directory fd, name,
    POSIX path relative to the top).

    Skips ``.git`` directories and follows no symlink, so a link to ``/``
    cannot make a search walk the whole machine (ripgrep's default). The walk
    goes through directory descriptors (``os.fwalk``), which checks that each
    directory it enters is the one it listed: a directory swapped for a
    symlink mid-walk is skipped, not followed. The directory fd is valid only
    until the next item.
    """
    for dirpath, dirnames, filenames, dir_fd in os.fwalk(".", dir_fd=top_fd, follow_symlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        prefix = "" if dirpath == "." else dirpath[2:] + "/"
        for name in sorted(filenames):
            try:
                mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode):
                yield dir_fd, name, prefix + name
