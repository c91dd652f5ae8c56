"""Store throughput: trace records per second and acknowledgement latency.

1,000 concurrent writers (sessions) each append records one at a time and
wait for the acknowledgement, through the Store actor (group commit, one
worker thread). Baseline in the same run: the same writers each appending
and flushing their own file in a worker thread, one record per call (what
a per-session writer without group commit does). Session files exist before
the timed part starts, as they do in steady state.

    python bench/bench_store.py --writers 1000 --records 100
    python bench/bench_store.py --store sqlite --store postgresql://rho@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import trio

from rho_actors import SessionStore, open_supervisor

sys.path.insert(0, os.path.dirname(__file__))
from _server import pin_to_core_0

_LINE = (
    json.dumps(
        {
            "seq": 0,
            "ts": 0.0,
            "type": "message",
            "message": {"role": "user", "content": "writer %d record %d " + "x" * 150},
        }
    )
    .replace('"seq": 0', '"seq": %d')
    .replace('"ts": 0.0', '"ts": %.6f')
    .encode()
    + b"\n"
)


def line(i: int, j: int) -> bytes:
    """A trace line (~230 bytes), unique per record.

    Filled into a pre-encoded template: encoding a record is the session's
    work (done once when the record is made, whatever the store), and
    ``json.dumps`` here would cost as much as the Store's whole share.
    """
    return _LINE % (j, time.time(), i, j)


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[int(len(ordered) * 0.99)] * 1000


async def through_store(
    root: Path, writers: int, records: int, location: str | None = None
) -> tuple[float, float]:
    latencies: list[float] = []
    # The Store actor exactly as sessions use it: a supervisor's.
    async with open_supervisor(store=SessionStore(location or root)) as sup:
        store = sup.services.store
        assert store is not None

        async def writer(i: int) -> None:
            for j in range(records):
                t0 = time.perf_counter()
                await store.append(f"s{i}", [line(i, j)])
                latencies.append(time.perf_counter() - t0)

        # Sessions exist before they write at volume: creating 1,000 session
        # directories is a one-off filesystem cost, not a steady-state one.
        async with trio.open_nursery() as warm:
            for i in range(writers):
                warm.start_soon(
                    store.create, f"s{i}", "model: bench\n", {"id": f"s{i}"}, [line(i, -1)]
                )
        start = time.perf_counter()
        async with trio.open_nursery() as writers_nursery:
            for i in range(writers):
                writers_nursery.start_soon(writer, i)
        elapsed = time.perf_counter() - start
    return writers * records / elapsed, p99(latencies)


async def per_writer_threads(root: Path, writers: int, records: int) -> tuple[float, float]:
    latencies: list[float] = []
    limiter = trio.CapacityLimiter(8)

    def append(path: Path, data: bytes) -> None:
        with open(path, "ab") as fh:
            fh.write(data)
            fh.flush()

    for i in range(writers):
        (root / f"w{i}.jsonl").touch()

    async def writer(i: int) -> None:
        path = root / f"w{i}.jsonl"
        for j in range(records):
            t0 = time.perf_counter()
            await trio.to_thread.run_sync(append, path, line(i, j), limiter=limiter)
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(writers):
            nursery.start_soon(writer, i)
    elapsed = time.perf_counter() - start
    return writers * records / elapsed, p99(latencies)


class Pacer:
    """Wakes writers when their next record is due, as network I/O would.

    One timer for all writers: a trio sleep per record (a cancel scope with
    a deadline) would cost the load generator more CPU than the Store spends
    on the record, and the figure would measure the generator.
    """

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self._due: dict[int, list[trio.lowlevel.Task]] = {}

    async def wait_until(self, when: float) -> None:
        slot = math.ceil(when / self.tick)
        self._due.setdefault(slot, []).append(trio.lowlevel.current_task())
        await trio.lowlevel.wait_task_rescheduled(_no_abort)

    async def run(self) -> None:
        while True:
            now_slot = math.floor(trio.current_time() / self.tick)
            for slot in sorted(s for s in self._due if s <= now_slot):
                for task in self._due.pop(slot):
                    trio.lowlevel.reschedule(task)
            await trio.sleep_until((now_slot + 1) * self.tick)


# Seconds of load before the measured window: steady state, not the
# start-up transient (the writers' first wake-ups, the collector's first
# full pass over the objects the set-up made).
WARMUP = 1.0


def _no_abort(raise_cancel: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


async def offered_load(
    root: Path,
    writers: int,
    rate: float,
    seconds: float,
    *,
    through: str,
    location: str | None = None,
) -> tuple[float, float, float]:
    """Writers each append at a fixed pace, together ``rate`` records/s.

    Returns the achieved rate, the p99 acknowledgement time (append call to
    ack), and the p99 time from when each record was due to its ack. The
    last one cannot hide a store that falls behind (no coordinated
    omission), but it also counts how late the timer woke the writer.
    """
    interval = writers / rate
    per_writer = max(1, int((WARMUP + seconds) / interval))
    latencies: list[float] = []
    behind: list[float] = []
    limiter = trio.CapacityLimiter(8)
    pacer = Pacer(tick=0.0005)

    def append_file(path: Path, data: bytes) -> None:
        with open(path, "ab") as fh:
            fh.write(data)
            fh.flush()

    async with (
        open_supervisor(store=SessionStore(location or root / "store")) as sup,
        trio.open_nursery() as nursery,
    ):
        store = sup.services.store
        assert store is not None
        nursery.start_soon(pacer.run)
        (root / "files").mkdir()
        async with trio.open_nursery() as warm:
            for i in range(writers):
                (root / "files" / f"w{i}.jsonl").touch()
                warm.start_soon(
                    store.create, f"s{i}", "model: bench\n", {"id": f"s{i}"}, [line(i, -1)]
                )
        start = trio.current_time() + 0.1
        measured_from = start + WARMUP

        async def writer(i: int) -> None:
            due = start + interval * i / writers  # spread the writers over one interval
            path = root / "files" / f"w{i}.jsonl"
            for j in range(per_writer):
                if trio.current_time() < due:
                    await pacer.wait_until(due)
                sent = trio.current_time()
                if through == "store":
                    await store.append(f"s{i}", [line(i, j)])
                else:
                    await trio.to_thread.run_sync(append_file, path, line(i, j), limiter=limiter)
                done = trio.current_time()
                if due >= measured_from:
                    latencies.append(done - sent)
                    behind.append(done - due)
                due += interval

        async with trio.open_nursery() as writers_nursery:
            for i in range(writers):
                writers_nursery.start_soon(writer, i)
        elapsed = trio.current_time() - measured_from
        nursery.cancel_scope.cancel(reason="done")
    return len(latencies) / elapsed, p99(latencies), p99(behind)


async def main(writers: int, records: int, rate: float, seconds: float, stores: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "base").mkdir()
        base_rate, base_p99 = await per_writer_threads(Path(tmp) / "base", writers, records)
        rate_max, ack_p99 = await through_store(Path(tmp) / "store", writers, records)
        (Path(tmp) / "ob").mkdir()
        (Path(tmp) / "os").mkdir()
        o_base = await offered_load(Path(tmp) / "ob", writers, rate, seconds, through="threads")
        o_store = await offered_load(Path(tmp) / "os", writers, rate, seconds, through="store")
        others = []
        for k, location in enumerate(stores):
            where = _fresh(location, Path(tmp), k)
            saturated = await through_store(Path(tmp), writers, records, where)
            (Path(tmp) / f"o{k}").mkdir()
            offered = await offered_load(
                Path(tmp) / f"o{k}",
                writers,
                rate,
                seconds,
                through="store",
                location=_fresh(location, Path(tmp), k + 100),
            )
            others.append((location.split(":", 1)[0], saturated, offered))
    print(f"{writers} writers, each waiting for one record's ack before the next (saturation):")
    print(f"  per-writer thread appends  {base_rate:9.0f} records/s   p99 {base_p99:7.2f} ms")
    print(f"  Store actor (group commit) {rate_max:9.0f} records/s   p99 ack {ack_p99:7.2f} ms")
    print(f"  (closed loop: mean ack = writers / throughput = {writers / rate_max * 1000:.1f} ms)")
    for name, (achieved, ack), _ in others:
        print(f"  Store actor, {name:<13} {achieved:9.0f} records/s   p99 ack {ack:7.2f} ms")
    print(f"{writers} writers offering {rate:.0f} records/s together for {seconds:g} s:")
    print("                              achieved     p99 ack   p99 due->ack")
    rows = [
        ("per-writer thread appends ", o_base),
        ("Store actor (group commit)", o_store),
        *((f"Store actor, {name:<13}", offered) for name, _, offered in others),
    ]
    for name, (achieved, ack, late) in rows:
        print(f"  {name} {achieved:9.0f}/s {ack:8.2f} ms {late:9.2f} ms")


def _fresh(location: str, tmp: Path, k: int) -> str:
    """A new, empty store at ``location``'s kind: its own SQLite file, or a new
    PostgreSQL database on the given server."""
    if location == "sqlite":
        return f"sqlite:{tmp / f'bench-{k}.db'}"
    import psycopg

    name = f"rho_bench_{os.getpid()}_{k}"
    with psycopg.connect(location, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return location.rsplit("/", 1)[0] + f"/{name}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--writers", type=int, default=1000)
    parser.add_argument("--records", type=int, default=100)
    parser.add_argument("--rate", type=float, default=50_000, help="offered records/s")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument(
        "--store",
        action="append",
        default=[],
        metavar="KIND",
        help="also measure 'sqlite', or a PostgreSQL server's postgresql:// URL "
        "(a database per measurement is created on it); repeatable",
    )
    parser.add_argument("--unpinned", action="store_true")
    args = parser.parse_args()
    if not args.unpinned:
        pin_to_core_0()
    trio.run(main, args.writers, args.records, args.rate, args.seconds, args.store)
