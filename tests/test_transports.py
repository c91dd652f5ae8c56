"""The trio-native HTTP transport (the default) and the stock one, side by side.

The integration suites below run under both: here in this process with the
default, and in a child pytest with ``RHO_ACTORS_HTTP_TRANSPORT=httpx``.
"""

from __future__ import annotations

import functools
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
import trio.testing

from rho_actors import Agent, AgentConfig, Session, open_supervisor
from rho_actors._transport import TRANSPORT_ENV, transport_choice
from rho_actors.testing import Fault, Reply, ScriptedServer

INTEGRATION = [
    "tests/test_session.py",
    "tests/test_llm.py",
    "tests/test_silent_server.py",
    "tests/test_real_server_compat.py",
    "tests/test_scripted_dialects.py",
    "tests/test_every_request_answered.py",
    "tests/test_cancel_token.py",
]


def test_the_integration_suites_pass_on_the_stock_transport() -> None:
    root = Path(__file__).parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *INTEGRATION],
        cwd=root,
        env={**os.environ, TRANSPORT_ENV: "httpx"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout


def test_the_choice_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRANSPORT_ENV, raising=False)
    assert transport_choice() == "trio"
    monkeypatch.setenv(TRANSPORT_ENV, "HTTPX")
    assert transport_choice() == "httpx"
    monkeypatch.setenv(TRANSPORT_ENV, "curl")
    with pytest.raises(ValueError, match="RHO_ACTORS_HTTP_TRANSPORT: expected one of trio, httpx"):
        transport_choice()


async def test_sequential_runs_reuse_one_connection(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.default = lambda request: Reply.text("ok")
    session = Session(make_agent())
    async with open_supervisor() as sup:
        session = await sup.start_session(make_agent())
        for i in range(5):
            assert (await session.run(f"run {i}")).text == "ok"
    assert len(server.chat_requests) == 5
    assert server.connections == 1


async def test_a_connection_the_server_dropped_is_replaced(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A keep-alive connection reset mid-stream is not reused: the next run gets a new one."""
    server.add(Reply.text("first"), Fault.reset_mid_stream(after_chunks=1), Reply.text("third"))
    async with open_supervisor() as sup:
        session = await sup.start_session(make_agent())
        assert (await session.run("one")).text == "first"
        broken = await session.run("two")
        assert broken.status == "error" and "stream failed" in (broken.error or "")
        assert (await session.run("three")).text == "third"
    assert server.connections == 2


async def test_an_unreachable_port_is_a_connect_error(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
    agent = Agent(
        AgentConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", working_dir=str(tmp_path))
    )
    result = await Session(agent).run("hi")
    assert result.status == "error"
    assert result.error is not None and "connect" in result.error.lower()


async def test_cancelling_a_run_closes_its_stream_at_the_server(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(Fault.stall(after_chunks=1))
    session = Session(make_agent(stream_idle_timeout=60.0))
    handle = await session.start("hang")
    await server.wait_for_requests(1)
    handle.cancel("stop")
    with trio.fail_after(2):
        await server.wait_for_disconnects(1)
        assert (await handle.wait()).status == "cancelled"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_https_with_keep_alive(tmp_path: Path) -> None:
    """TLS through trio's SSLStream, against hypercorn with a self-signed certificate."""
    from hypercorn.config import Config
    from hypercorn.trio import serve

    from rho_actors._transport import TrioTransport

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    await trio.run_process(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost"),
        ],
        capture_stdout=True,
        capture_stderr=True,
    )

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    config = Config()
    config.bind = ["localhost:0"]
    config.certfile, config.keyfile = str(cert), str(key)
    config.accesslog = None
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            functools.partial(serve, app, config, shutdown_trigger=stop.wait)
        )
        url = binds[0].replace("127.0.0.1", "localhost")
        context = ssl.create_default_context(cafile=str(cert))
        transport = TrioTransport(ssl_context=context)
        async with httpx2.AsyncClient(transport=transport) as client:
            texts = [(await client.get(f"{url}/r{i}")).text for i in range(3)]
            response = await client.get(f"{url}/last")
            assert response.extensions["http_version"] == b"HTTP/1.1"
        stop.set()
    assert texts == ["/r0", "/r1", "/r2"]
    assert sum(len(v) for v in transport._idle.values()) == 0  # closed with the client
