"""The offline demo: a fan-out of sessions against the embedded scripted model.

No API key and no network: the model is the scripted server from
``rho_actors.testing``, answering on 127.0.0.1. Each session lists a real
directory with the built-in ``list`` tool and reports what it found; one
session is cancelled mid-stream to show that cancellation is prompt and
leaves the session usable.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import trio

from .._agent import Agent
from .._config import AgentConfig
from .._events import RunResult
from .._store._session_store import SessionStore
from .._supervisor import open_supervisor
from ..testing import RecordedRequest, Reply, open_scripted_server


def _responder(request: RecordedRequest) -> Reply:
    messages = request.messages
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        listing = str(last.get("content", ""))
        entries = [line for line in listing.splitlines() if line.strip()]
        return Reply.text(f"The directory holds {len(entries)} entries.", chunk_size=6)
    if "slow" in str(last.get("content", "")):
        return Reply.text("This answer streams very slowly. " * 20, chunk_delay=0.05)
    return Reply.tool_call("list", {"path": "."}, text="Let me look. ")


async def demo_main(n_sessions: int) -> int:
    print("rho-actors demo: the model is SCRIPTED (an embedded OpenAI-compatible server).")
    print("To use a real model: export OPENAI_API_KEY=... and pass --base-url / set")
    print("OPENAI_BASE_URL for any OpenAI-compatible endpoint.\n")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rho-demo-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        for i in range(5):
            (work / f"file{i}.txt").write_text(f"file {i}\n")
        store = SessionStore(Path(tmp) / "sessions")
        async with open_scripted_server(default=_responder, chunk_delay=0.002) as server:
            agent = Agent(
                AgentConfig(
                    system_prompt="You are a file clerk.",
                    model="scripted",
                    base_url=server.base_url,
                    profile="readonly",
                    working_dir=str(work),
                )
            )
            results: dict[int, RunResult] = {}
            async with open_supervisor(store=store) as sup:
                sessions = [await sup.start_session(agent) for _ in range(n_sessions)]
                cancel_latency: list[float] = []

                async def run(i: int) -> None:
                    prompt = "Tell me something slow." if i == 0 else f"Count the files ({i})."
                    results[i] = await sessions[i].run(prompt=prompt)

                async def cancel_first() -> None:
                    await server.wait_until(lambda: server.open_streams > 0)
                    await trio.sleep(0.2)
                    t0 = time.perf_counter()
                    await sessions[0].cancel("demo: cancelled on purpose")
                    await sessions[0].wait_idle()
                    cancel_latency.append((time.perf_counter() - t0) * 1000)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(cancel_first)
                    for i in range(n_sessions):
                        nursery.start_soon(run, i)

            print(f"{'session':<10} {'status':<10} {'turns':>5} {'tokens':>7}  answer")
            for i in range(n_sessions):
                r = results[i]
                answer = (r.text or r.cancel_reason or r.error or "")[:48]
                print(
                    f"{sessions[i].id[:8]:<10} {r.status:<10} {r.turns:>5} "
                    f"{r.usage.get('total_tokens', 0):>7}  {answer}"
                )
            statuses = [r.status for r in results.values()]
            print(
                f"\n{statuses.count('completed')} completed, {statuses.count('cancelled')} "
                f"cancelled, {statuses.count('error')} errors; "
                f"{len(server.chat_requests)} model calls; "
                f"cancel took {cancel_latency[0]:.1f} ms; "
                f"{len(store.list())} sessions persisted; "
                f"{time.perf_counter() - started:.1f} s in all."
            )
            ok = statuses.count("completed") == n_sessions - 1 and statuses.count("cancelled") == 1
            return 0 if ok else 1
