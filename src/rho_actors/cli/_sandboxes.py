"""``rho-actors sandboxes list|sweep``: the Daytona sandboxes rho-actors made.

Every sandbox carries labels naming the session and the host process that
made it. ``list`` shows them; ``sweep`` deletes those whose process on this
host is gone (a host killed before it could delete them). Daytona's own
auto-stop and auto-delete intervals are the backstop for the rest.
"""

from __future__ import annotations

import argparse
import json

import trio

from .._daytona import DaytonaBackend, list_sandboxes, sweep_sandboxes
from ._common import EXIT_OK


def list_main(args: argparse.Namespace) -> int:
    found = trio.run(list_sandboxes, DaytonaBackend())
    if args.json:
        print(json.dumps(found, indent=2))
        return EXIT_OK
    if not found:
        print("no sandboxes made by rho-actors")
        return EXIT_OK
    for entry in found:
        orphan = "  (orphaned: its process is gone)" if entry["orphaned"] else ""
        where = f"session {entry['session']}  host {entry['host']}"
        print(f"{entry['id']}  {entry['state']:<10} {where}{orphan}")
    return EXIT_OK


def sweep_main(args: argparse.Namespace) -> int:
    deleted = trio.run(sweep_sandboxes, DaytonaBackend())
    noun = "sandbox" if len(deleted) == 1 else "sandboxes"
    print(
        f"deleted {len(deleted)} orphaned {noun}" + (": " + ", ".join(deleted) if deleted else "")
    )
    return EXIT_OK
