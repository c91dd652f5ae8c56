"""Garbage-collector tuning while supervisors run.

Under heavy fan-out, Python's cyclic GC is a large share of per-call CPU: a
young-generation collection runs every 700 allocations and the older ones
re-scan every long-lived object (pools, agents, thousands of idle sessions).
While at least one supervisor is open we raise the young-generation
threshold and freeze the objects that existed when the first supervisor
opened (they are long-lived by then), and put both back when the last one
closes. Reference counting still frees almost everything at once; only
cycles wait longer. Set ``RHO_ACTORS_GC_TUNING=0`` to leave the collector
alone.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager

# Young-generation threshold while tuned (CPython's default is 700).
TUNED_THRESHOLD = 50_000

_depth = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def tuned_gc() -> Iterator[None]:
    global _depth, _saved
    if os.environ.get("RHO_ACTORS_GC_TUNING", "1") in ("0", "false", "no", "off"):
        yield
        return
    if _depth == 0:
        _saved = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(max(_saved[0], TUNED_THRESHOLD), _saved[1], _saved[2])
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _saved is not None:
            gc.set_threshold(*_saved)
            gc.unfreeze()
            _saved = None
