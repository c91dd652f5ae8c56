"""``rho-actors worker --store URL``: run the runs queued in a database store.

Several workers (on one machine or many) share one store; see
``rho_actors._workers`` for how they claim runs, lease sessions, take over
from a crashed worker and fence a stalled one. Ctrl-C or SIGTERM stops the
worker; its runs are cancelled and, once its leases expire, queued again
for the others.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import signal
import sys
import time

import trio

from .._workers import serve_worker
from ._common import EXIT_OK, UsageError, open_store


def main(args: argparse.Namespace) -> int:
    store = open_store(args)
    # Store outages and recoveries are reported through logging: show them.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")

    async def run() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                me = await nursery.start(
                    functools.partial(
                        serve_worker, store, concurrency=args.concurrency, lease_seconds=args.lease
                    )
                )
                print(f"worker {me} serving {store.location}", file=sys.stderr, flush=True)
                async for signum in signals:
                    print(f"worker {me}: {signal.Signals(signum).name}, stopping", file=sys.stderr)
                    nursery.cancel_scope.cancel(reason="stopped by a signal")
                    break

    trio.run(run)
    return EXIT_OK


def list_main(args: argparse.Namespace) -> int:
    """Workers that sent a heartbeat, with their load and how long ago they last did."""
    store = open_store(args)
    backend = store.backend
    if not hasattr(backend, "workers"):
        raise UsageError(f"--store: {store.location} is not a database store (no workers)")
    now = time.time()
    rows = [
        {
            "id": row["id"],
            "running": int(row["running"]),
            "capacity": int(row["capacity"]),
            "heartbeat_age_s": round(now - float(row["heartbeat_at"]), 1),
        }
        for row in backend.workers()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"no workers have served {store.location}")
    else:
        for row in rows:
            print(
                f"{row['id']}  {row['running']}/{row['capacity']} runs  "
                f"heartbeat {row['heartbeat_age_s']:g} s ago"
            )
    return EXIT_OK
