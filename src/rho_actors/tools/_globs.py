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
import re
from collections.abc import Iterator
from pathlib import Path

__all__ = ["compile_glob", "matches_name_or_path", "sort_key", "walk_files"]


def compile_glob(pattern: str) -> re.Pattern[str]:
    """A regex matching whole relative POSIX paths against ``pattern``."""
    return re.compile(_translate(pattern) + r"\Z", re.DOTALL)


def _translate(pattern: str) -> str:
    out: list[str] = []
    i = 0
    n = len(pattern)
    brace_depth = 0
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i) and (i == 0 or pattern[i - 1] == "/"):
            out.append("(?:[^/]*/)*")
            i += 3
            continue
        if pattern.startswith("/**", i) and i + 3 == n:
            out.append("(?:/.*)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "^", "]") else i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                negate = body[:1] in ("!", "^")
                if negate:
                    body = body[1:]
                # Escape everything but ranges: Python warns on "[[", "&&", "~~".
                body = "".join(ch if ch == "-" else re.escape(ch) for ch in body)
                out.append(f"[^/{body}]" if negate else f"[{body}]")
                i = end + 1
                continue
        elif c == "{":
            brace_depth += 1
            out.append("(?:")
        elif c == "}" and brace_depth:
            brace_depth -= 1
            out.append(")")
        elif c == "," and brace_depth:
            out.append("|")
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        else:
            out.append(re.escape(c))
        i += 1
    if brace_depth:
        raise ValueError(f"unbalanced '{{' in glob {pattern!r}")
    return "".join(out)


def matches_name_or_path(regex: re.Pattern[str], pattern: str, relative: str) -> bool:
    """ripgrep's rule: a pattern without ``/`` matches the file name anywhere."""
    if "/" not in pattern.rstrip("/"):
        return regex.match(relative.rsplit("/", 1)[-1]) is not None
    return regex.match(relative.lstrip("/")) is not None


def sort_key(relative: str) -> tuple[str, ...]:
    """Sort paths segment by segment, so ``a/b`` comes before ``a-c`` as in a tree."""
    return tuple(relative.split("/"))


def walk_files(root: Path) -> Iterator[tuple[Path, str]]:
    """Regular files under ``root`` as (path, POSIX path relative to root).

    Skips ``.git`` directories and does not follow symlinks, so a link to
    ``/`` cannot make a search walk the whole machine (ripgrep's default).
    """
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(
            d for d in dirnames if d != ".git" and not os.path.islink(os.path.join(dirpath, d))
        )
        for filename in sorted(filenames):
            full = Path(dirpath, filename)
            if full.is_symlink() or not full.is_file():
                continue
            yield full, full.relative_to(root).as_posix()
