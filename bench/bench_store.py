"""Store throughput: trace records per second and acknowledgement latency.

1,000 concurrent writers (sessions) each append records one at a time and
wait for the acknowledgement, through the Store actor (group commit, one
worker thread). Baseline in the same run: the same writers each appending
and flushing their own file in a worker thread, one record per call (what
a per-session writer without group commit does). Session files exist before
the timed part starts, as they do in steady state.

    python bench/bench_store.py --writers 1000 --records 100
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import trio

from rho_actors._store._actor import serve_store
from rho_actors._store._backend import DirectoryBackend

sys.path.insert(0, os.path.dirname(__file__))
from _server import pin_to_core_0


def line(i: int, j: int) -> bytes:
    record = {
        "ts": time.time(),
        "seq": j,
        "type": "message",
        "message": {"role": "user", "content": f"writer {i} record {j} " + "x" * 150},
    }
    return json.dumps(record).encode() + b"\n"


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[int(len(ordered) * 0.99)] * 1000


async def through_store(root: Path, writers: int, records: int) -> tuple[float, float]:
    latencies: list[float] = []
    async with trio.open_nursery() as nursery:
        store = await nursery.start(serve_store, DirectoryBackend(root))

        async def writer(i: int) -> None:
            for j in range(records):
                t0 = time.perf_counter()
                await store.append(f"s{i}", [line(i, j)])
                latencies.append(time.perf_counter() - t0)

        # Sessions exist before they write at volume: creating 1,000 session
        # directories is a one-off filesystem cost, not a steady-state one.
        async with trio.open_nursery() as warm:
            for i in range(writers):
                warm.start_soon(store.append, f"s{i}", [line(i, -1)])
        start = time.perf_counter()
        async with trio.open_nursery() as writers_nursery:
            for i in range(writers):
                writers_nursery.start_soon(writer, i)
        elapsed = time.perf_counter() - start
        store.close()
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


async def main(writers: int, records: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "base").mkdir()
        base_rate, base_p99 = await per_writer_threads(Path(tmp) / "base", writers, records)
        rate, ack_p99 = await through_store(Path(tmp) / "store", writers, records)
    print(f"{writers} writers x {records} records (JSONL):")
    print(f"  per-writer thread appends  {base_rate:9.0f} records/s   p99 {base_p99:7.2f} ms")
    print(f"  Store actor (group commit) {rate:9.0f} records/s   p99 ack {ack_p99:7.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--writers", type=int, default=1000)
    parser.add_argument("--records", type=int, default=100)
    args = parser.parse_args()
    pin_to_core_0()
    trio.run(main, args.writers, args.records)
