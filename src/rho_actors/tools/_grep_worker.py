"""The grep tool's search without ripgrep, run as a separate, killable process.

Python's ``re`` backtracks: ``(a+)+$`` against a long line of ``a`` takes
longer than the universe, holds the GIL, and a worker thread running it can
be neither cancelled nor stopped. So the search runs in a child process that
the grep tool kills at its deadline or on cancellation, like ``rg``. It
prints what ``rg --null --line-number --with-filename`` prints, so one parser
reads both.

It is run as a script (``python -I _grep_worker.py ARGS-JSON``) and imports
nothing from rho_actors but ``_globs``, loaded by path: starting the whole
package would cost a second per search.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

# Lines longer than this are searched only in their first part: reading a
# 150 MB single-line file must not cost 150 MB per line in the child either.
_MAX_LINE_BYTES = 1 << 20


def _globs() -> ModuleType:
    path = Path(__file__).with_name("_globs.py")
    spec = importlib.util.spec_from_file_location("_rho_actors_globs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def search(pattern: str, target: str, glob: str | None, ignore_case: bool, prefix: str) -> int:
    """Print matches under ``target`` (relative to the current directory), each
    file named ``prefix/RELATIVE`` as the model is shown it (and as the glob
    filter sees it)."""
    globs = _globs()
    try:
        regex = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        print(f"invalid regular expression {pattern!r}: {exc}", file=sys.stderr)
        return 2
    try:
        matcher = globs.compile_glob(glob) if glob else None
    except ValueError as exc:
        print(f"invalid glob {glob!r}: {exc}", file=sys.stderr)
        return 2
    out = sys.stdout.buffer
    for dir_fd, name, rel in _files(globs, target):
        rel = prefix if rel == target else _join(prefix, rel)
        if matcher is not None and not globs.matches_name_or_path(matcher, glob, rel):
            continue
        # A lone file target is the descriptor the tool checked (a /proc
        # link, which O_NOFOLLOW would refuse); files of a walk are not links.
        flags = _FILE_FLAGS if dir_fd is not None else _FILE_FLAGS & ~os.O_NOFOLLOW
        try:
            fd = os.open(name, flags, dir_fd=dir_fd)
        except OSError:
            continue
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue  # a FIFO or device put there since the walk listed it
            head = f.read(8192)
            if b"\x00" in head:
                continue
            f.seek(0)
            shown = rel.encode("utf-8", "surrogateescape")
            for number, raw in enumerate(_lines(f), start=1):
                text = raw.decode("utf-8", "replace").rstrip("\r")
                if regex.search(text):
                    out.write(b"%s\x00%d:%s\n" % (shown, number, raw.rstrip(b"\r")))
    out.flush()
    return 0


_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _files(globs: ModuleType, target: str) -> Iterator[tuple[int | None, str, str]]:
    """(directory fd or None, name to open, name to print) for each file to search."""
    if not os.path.isdir(target):
        yield None, target, target
        return
    top = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield from globs.walk_files(top)
    finally:
        os.close(top)


def _join(prefix: str, rel: str) -> str:
    return rel if prefix in ("", ".") else f"{prefix.rstrip('/')}/{rel}"


def _lines(f: BinaryIO) -> Iterator[bytes]:
    """Lines of a binary file, each cut to ``_MAX_LINE_BYTES`` (the rest skipped)."""
    readline = f.readline
    while True:
        line = readline(_MAX_LINE_BYTES)
        if not line:
            return
        if not line.endswith(b"\n"):
            while True:  # skip the rest of an over-long line
                more = readline(_MAX_LINE_BYTES)
                if not more or more.endswith(b"\n"):
                    break
        yield line.rstrip(b"\n")


def main(argv: list[str]) -> int:
    args = json.loads(argv[1])
    return search(
        args["pattern"], args["target"], args["glob"], args["ignore_case"], args["prefix"]
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv))
