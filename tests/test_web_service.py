"""The example trio web service, driven over real HTTP (hypercorn + quart-trio).

Covers what a service embedding rho_actors needs: start, stream (SSE), list,
cancel, re-attach with Last-Event-ID, both disconnect policies, and a
graceful shutdown with runs in flight.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx2
import pytest
import trio

from rho_actors import Agent
from rho_actors.testing import Fault, Reply, ScriptedServer

pytest.importorskip("quart_trio")
pytest.importorskip("hypercorn")


def _load_example() -> ModuleType:
    path = Path(__file__).parent.parent / "examples" / "web_service.py"
    spec = importlib.util.spec_from_file_location("web_service_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


web = _load_example()


class Service:
    def __init__(self, client: httpx2.AsyncClient, stop: trio.Event) -> None:
        self.client = client
        self.stop = stop

    async def start(self, prompt: str, policy: str = "keep") -> dict[str, Any]:
        response = await self.client.post("/runs", json={"prompt": prompt, "policy": policy})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def events(self, run_id: str, **headers: str) -> list[dict[str, Any]]:
        return await web._events(self.client, run_id, **headers)  # type: ignore[no-any-return]

    async def status(self, run_id: str) -> str:
        return str((await self.client.get(f"/runs/{run_id}")).json()["status"])


@pytest.fixture
async def service(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> AsyncIterator[Service]:
    agent = make_agent(stream_idle_timeout=60.0)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        url = await nursery.start(
            functools.partial(web.serve_agents, agent, bind="127.0.0.1:0", stop=stop, grace=1.0)
        )
        async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
            yield Service(client, stop)
        stop.set()


async def test_start_stream_list_and_show(service: Service, server: ScriptedServer) -> None:
    server.add(Reply.tool_call("list", {"path": "."}), Reply.text("Here is the listing."))
    run = await service.start("list files")
    events = await service.events(run["run_id"])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] for e in events][-1] == "run_end"
    assert events[-1]["result"]["status"] == "completed"
    assert events[-1]["result"]["text"] == "Here is the listing."
    assert "tool_start" in [e["type"] for e in events]
    listed = (await service.client.get("/runs")).json()["runs"]
    assert [r["run_id"] for r in listed] == [run["run_id"]]
    shown = (await service.client.get(f"/runs/{run['run_id']}")).json()
    assert shown["result"]["text"] == "Here is the listing."


async def test_chat_policy_cancels_the_run_when_the_client_disconnects(
    service: Service, server: ScriptedServer
) -> None:
    server.add(Reply.text("word " * 200, chunk_size=5, chunk_delay=0.02))
    run = await service.start("chat", policy="cancel")
    await web._disconnect_after_first_text(service.client, run["run_id"])
    await web._wait_status(service.client, run["run_id"], "cancelled")
    result = (await service.client.get(f"/runs/{run['run_id']}")).json()["result"]
    assert result["cancel_reason"] == "the client disconnected"
    # The model's stream was closed too: nothing is left generating.
    await server.wait_for_disconnects(1)


async def test_keep_policy_runs_on_and_reattaches_with_last_event_id(
    service: Service, server: ScriptedServer
) -> None:
    server.add(Reply.text("word " * 60, chunk_size=5, chunk_delay=0.01))
    run = await service.start("job", policy="keep")
    seen = await web._disconnect_after_first_text(service.client, run["run_id"])
    rest = await service.events(run["run_id"], **{"Last-Event-ID": str(seen)})
    assert rest[0]["seq"] == seen + 1
    assert rest[-1]["type"] == "run_end"
    assert rest[-1]["result"]["status"] == "completed"
    everything = await service.events(run["run_id"])
    text = "".join(e.get("content", "") for e in everything if e["type"] == "text")
    assert text == "word " * 60
    assert server.disconnects == 0


async def test_cancel_endpoint_and_bad_input(service: Service, server: ScriptedServer) -> None:
    server.add(Fault.stall(after_chunks=1))
    run = await service.start("stuck")
    await server.wait_for_requests(1)
    response = await service.client.post(f"/runs/{run['run_id']}/cancel")
    assert response.status_code == 202
    events = await service.events(run["run_id"])
    assert events[-1]["result"]["cancel_reason"] == "cancelled through the API"
    bad = await service.client.post("/runs", json={"policy": "keep"})
    assert (bad.status_code, bad.json()["error"]) == (400, "'prompt' must be a non-empty string")
    bad = await service.client.post("/runs", json={"prompt": "x", "policy": "maybe"})
    assert bad.status_code == 400 and "'policy'" in bad.json()["error"]
    missing = await service.client.get("/runs/run_nope/events")
    assert missing.status_code == 404


async def test_graceful_shutdown_sends_every_client_a_final_event(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Runs in flight at shutdown: each open stream ends with run_end; nothing runs on."""
    agent = make_agent(stream_idle_timeout=60.0)
    server.add(Reply.text("short answer", first_byte_delay=0.3))
    server.add(Fault.stall(after_chunks=1))
    stop = trio.Event()
    finals: dict[str, dict[str, Any]] = {}
    async with trio.open_nursery() as nursery:
        url = await nursery.start(
            functools.partial(web.serve_agents, agent, bind="127.0.0.1:0", stop=stop, grace=1.0)
        )
        async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
            runs = [
                (await client.post("/runs", json={"prompt": p})).json()["run_id"]
                for p in ("short", "stalled")
            ]
            await server.wait_for_requests(2)

            async def read(run_id: str) -> None:
                events = await web._events(client, run_id)
                finals[run_id] = events[-1]

            async with trio.open_nursery() as readers:
                for run_id in runs:
                    readers.start_soon(read, run_id)
                await trio.sleep(0.1)
                started = trio.current_time()
                stop.set()
            elapsed = trio.current_time() - started
    # serve_agents returned: the supervisor and the HTTP server are closed.
    assert [finals[r]["type"] for r in runs] == ["run_end", "run_end"]
    assert finals[runs[0]]["result"]["status"] == "completed"
    assert finals[runs[1]]["result"]["status"] == "cancelled"
    assert elapsed < 3.0
    assert server.open_streams == 0
