"""A trio web service running agents: start, stream (SSE), list, cancel, re-attach.

Built on quart-trio and hypercorn's trio worker (``pip install -e '.[web]'``).
The supervisor is a task in the service's nursery (``serve_supervisor``);
every run is a :class:`~rho_actors.RunHandle`; each run's events go out as
server-sent events whose ``id`` is the event's ``seq``, so a client that
reconnects with ``Last-Event-ID`` gets exactly what it missed.

Two disconnect policies, chosen per run when it is started:

- ``"cancel"`` (chat): when the client reading the stream goes away, the run
  is cancelled (``handle.cancel`` is synchronous, so the stream's cleanup
  code can call it while it is being cancelled itself).
- ``"keep"`` (jobs with side effects): the run goes on; a client re-attaches
  with ``GET /runs/<id>/events`` and ``Last-Event-ID``.

Shutting down drains first: the supervisor closes gracefully (runs get a
grace period, then are cancelled), so every open stream sends its final
``run_end`` event before the HTTP server closes its connections.

Run ``python examples/web_service.py`` for an offline demonstration (the
embedded model, a client driving the API over real HTTP), or
``python examples/web_service.py --serve --port 8000`` to serve it
(``curl -N -XPOST localhost:8000/runs -d '{"prompt": "hi"}'``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import httpx2
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

from rho_actors import (
    Agent,
    AgentConfig,
    AgentEvent,
    RunHandle,
    RunResult,
    Supervisor,
    serve_supervisor,
)
from rho_actors.testing import offline_responder, open_scripted_server

POLICIES = ("cancel", "keep")


def result_json(result: RunResult) -> dict[str, Any]:
    return {
        "status": result.status,
        "text": result.text,
        "error": result.error,
        "cancel_reason": result.cancel_reason,
        "turns": result.turns,
        "usage": result.usage,
    }


def event_json(event: AgentEvent) -> dict[str, Any]:
    fields = attrs.asdict(event, recurse=False)
    data = {k: v for k, v in fields.items() if v is not None and k != "result"}
    if event.result is not None:
        data["result"] = result_json(event.result)
    return data


def sse(event: AgentEvent) -> bytes:
    return (
        f"id: {event.seq}\nevent: {event.type}\ndata: {json.dumps(event_json(event))}\n\n".encode()
    )


def create_app(supervisor: Supervisor, agent: Agent) -> QuartTrio:
    """The HTTP API over one supervisor. Runs are kept by the supervisor (``sup.run(id)``)."""
    app = QuartTrio(__name__)
    policies: dict[str, str] = {}

    def describe(handle: RunHandle) -> dict[str, Any]:
        body: dict[str, Any] = {
            "run_id": handle.id,
            "session_id": handle.session_id,
            "status": handle.status,
            "prompt": handle.prompt,
            "policy": policies.get(handle.id, "keep"),
        }
        if handle.result is not None:
            body["result"] = result_json(handle.result)
        return body

    def find(run_id: str) -> RunHandle | None:
        return supervisor.run(run_id)

    @app.post("/runs")
    async def start_run() -> Any:
        body = await request.get_json(force=True, silent=True) or {}
        prompt = body.get("prompt")
        policy = body.get("policy", "keep")
        if not isinstance(prompt, str) or not prompt:
            return {"error": "'prompt' must be a non-empty string"}, 400
        if policy not in POLICIES:
            return {"error": f"'policy' must be one of {', '.join(POLICIES)}"}, 400
        if supervisor.closed:
            return {"error": "the service is shutting down"}, 503
        handle = await supervisor.dispatch(agent, prompt)
        for forgotten in set(policies) - {h.id for h in supervisor.runs}:
            del policies[forgotten]
        policies[handle.id] = policy
        return describe(handle), 201

    @app.get("/runs")
    async def list_runs() -> Any:
        return {"runs": [describe(h) for h in supervisor.runs]}

    @app.get("/runs/<run_id>")
    async def show_run(run_id: str) -> Any:
        handle = find(run_id)
        if handle is None:
            return {"error": f"no run {run_id!r}"}, 404
        return describe(handle)

    @app.post("/runs/<run_id>/cancel")
    async def cancel_run(run_id: str) -> Any:
        handle = find(run_id)
        if handle is None:
            return {"error": f"no run {run_id!r}"}, 404
        handle.cancel("cancelled through the API")
        return describe(handle), 202

    @app.get("/runs/<run_id>/events")
    async def run_events(run_id: str) -> Any:
        handle = find(run_id)
        if handle is None:
            return {"error": f"no run {run_id!r}"}, 404
        after = request.headers.get("Last-Event-ID") or request.args.get("after") or "0"
        if not after.isdigit():
            return {"error": "Last-Event-ID must be a number"}, 400
        policy = policies.get(run_id, "keep")

        async def stream() -> AsyncIterator[bytes]:
            try:
                async for event in handle.events(after_seq=int(after)):
                    yield sse(event)
            finally:
                # Reached when the client disconnects (this generator is
                # cancelled) as well as at the end: only a disconnect under
                # the chat policy stops the run.
                if policy == "cancel" and not handle.done():
                    handle.cancel("the client disconnected")

        response = Response(stream(), mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-cache"
        response.timeout = None  # a stream lasts as long as its run
        return response

    return app


async def serve_agents(
    agent: Agent,
    *,
    bind: str = "127.0.0.1:8000",
    grace: float = 5.0,
    stop: trio.Event | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the API until ``stop`` is set (or SIGINT/SIGTERM), then shut down gracefully.

    Reports the bound address (``http://host:port``) when ready.
    """
    stop = stop if stop is not None else trio.Event()
    async with trio.open_nursery() as nursery:
        supervisor = await nursery.start(functools.partial(serve_supervisor, shutdown_grace=grace))
        app = create_app(supervisor, agent)
        config = Config()
        config.bind = [bind]
        config.accesslog = None
        config.graceful_timeout = grace + 2

        async def shutdown_trigger() -> None:
            await stop.wait()
            # Runs first: each open stream sends its run_end and finishes,
            # then the HTTP server closes what is left.
            await supervisor.aclose(grace)

        binds = await nursery.start(
            functools.partial(serve, app, config, shutdown_trigger=shutdown_trigger)
        )
        task_status.started(binds[0])


async def _stop_on_signals(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            stop.set()
            return


async def _events(client: httpx2.AsyncClient, run_id: str, **headers: str) -> list[dict[str, Any]]:
    events = []
    async with client.stream("GET", f"/runs/{run_id}/events", headers=headers) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


async def _disconnect_after_first_text(client: httpx2.AsyncClient, run_id: str) -> int:
    """Read the stream until its first text event, then hang up; the last seq seen.

    A plain socket, closed mid-response, is what a browser tab that goes
    away does (and leaves no half-read HTTP client behind).
    """
    url = client.base_url
    stream = await trio.open_tcp_stream(url.host, url.port or 80)
    async with stream:
        head = f"GET /runs/{run_id}/events HTTP/1.1\r\nHost: {url.host}\r\n\r\n"
        await stream.send_all(head.encode())
        received = b""
        while b"event: text\n" not in received:
            chunk = await stream.receive_some()
            if not chunk:
                raise AssertionError("the stream ended before any text")
            received += chunk
    before = received[: received.index(b"event: text\n")]
    return int(before.rsplit(b"id: ", 1)[1].split(b"\n", 1)[0])


async def _wait_status(client: httpx2.AsyncClient, run_id: str, status: str) -> None:
    """Poll the run over HTTP (a client has no event to wait on)."""
    with trio.fail_after(10):
        for _ in range(500):
            if (await client.get(f"/runs/{run_id}")).json()["status"] == status:
                return
            await trio.sleep(0.02)


async def demo(say: Callable[[str], None] = print) -> None:
    """Drive the service over HTTP as a client would; offline, on the embedded model."""

    def slow(request: Any) -> Any:
        reply = offline_responder(request)
        return attrs.evolve(reply, chunk_size=4, chunk_delay=0.02)

    with tempfile.TemporaryDirectory() as work:
        async with open_scripted_server(default=slow) as model:
            agent = Agent(AgentConfig(base_url=model.base_url, model="scripted", working_dir=work))
            stop = trio.Event()
            async with trio.open_nursery() as nursery:
                url = await nursery.start(
                    functools.partial(serve_agents, agent, bind="127.0.0.1:0", stop=stop)
                )
                async with httpx2.AsyncClient(base_url=url) as client:
                    await _demo_client(client, say)
                    stop.set()


async def _demo_client(client: httpx2.AsyncClient, say: Callable[[str], None]) -> None:
    started = (await client.post("/runs", json={"prompt": "hello"})).json()
    events = await _events(client, started["run_id"])
    say(f"streamed {len(events)} events; last: {events[-1]['type']} {events[-1]['content']}")
    chat = (await client.post("/runs", json={"prompt": "chat", "policy": "cancel"})).json()
    await _disconnect_after_first_text(client, chat["run_id"])
    await _wait_status(client, chat["run_id"], "cancelled")
    say("chat policy: the run was cancelled when its client left")
    job = (await client.post("/runs", json={"prompt": "job", "policy": "keep"})).json()
    seen = await _disconnect_after_first_text(client, job["run_id"])
    rest = await _events(client, job["run_id"], **{"Last-Event-ID": str(seen)})
    say(f"job policy: re-attached after event {seen}; the run ended {rest[-1]['content']}")
    listed = (await client.get("/runs")).json()["runs"]
    say(f"{len(listed)} runs listed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help="serve the API until Ctrl-C")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if not args.serve:
        trio.run(demo)
        return

    async def run() -> None:
        stop = trio.Event()
        bind = f"127.0.0.1:{args.port}"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signals, stop)
            async with contextlib.AsyncExitStack() as stack:
                if os.environ.get("OPENAI_API_KEY"):
                    agent, note = Agent(AgentConfig()), ""
                else:
                    model = await stack.enter_async_context(
                        open_scripted_server(default=offline_responder)
                    )
                    agent = Agent(AgentConfig(base_url=model.base_url, model="scripted"))
                    note = " (no OPENAI_API_KEY: the embedded offline model)"
                async with trio.open_nursery() as service:
                    url = await service.start(
                        functools.partial(serve_agents, agent, bind=bind, stop=stop)
                    )
                    print(f"serving on {url}{note}; Ctrl-C stops")
            nursery.cancel_scope.cancel(reason="the service stopped")

    trio.run(run)


if __name__ == "__main__":
    main()
