"""Every Python snippet in README.md and docs/ runs, as written, against the embedded model.

Snippets are extracted from the Markdown. Each runs in a fresh namespace
that holds what the surrounding prose says is already there (``agent``,
``config``, ``session``, ``store``, ``nursery``, ``prompts``, ``log``), in a
scratch directory, with ``OPENAI_BASE_URL`` pointing at a scripted server
and Daytona's environment at the loopback fake. Top-level ``await`` works
(as in an async REPL); a snippet that defines ``main()`` without calling it
has it called; one that calls ``trio.run`` runs in a thread of its own. A
snippet that defines pytest tests (docs/testing.md) is written to a test
module and run by pytest, with the plugin the docs say to enable.
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import logging
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Literal

import attrs
import pytest
import trio

import rho_actors
import rho_actors.testing
from rho_actors import Agent, AgentConfig, Session, SessionStore, serve_worker
from rho_actors.testing import (
    FakeDaytona,
    RecordedRequest,
    Reply,
    offline_responder,
    open_scripted_server,
)

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@attrs.frozen
class Snippet:
    path: Path
    line: int
    code: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _snippets() -> list[Snippet]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in re.finditer(r"```python\n(.*?)```", text, re.DOTALL):
            line = text.count("\n", 0, match.start()) + 2
            found.append(Snippet(path, line, match.group(1)))
    return found


SNIPPETS = _snippets()


def _example(schema: dict[str, Any]) -> Any:
    """A smallest value that fits a JSON schema: the scripted model's structured answer."""
    if "enum" in schema:
        return schema["enum"][-1]
    if "anyOf" in schema:
        return _example(schema["anyOf"][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        return {name: _example(sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return []
    return {"string": "example", "integer": 1, "number": 1.0, "boolean": True}.get(str(kind))


def _docs_model(request: RecordedRequest) -> Reply:
    """The embedded offline model, plus structured answers when a schema is asked for."""
    wanted = request.json.get("response_format")
    if isinstance(wanted, dict) and wanted.get("type") == "json_schema":
        return Reply.text(json.dumps(_example(wanted["json_schema"]["schema"])))
    return offline_responder(request)


def _defines_tests(code: str) -> bool:
    tree = ast.parse(code)
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
        for node in tree.body
    ) or any(
        isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)
        for node in tree.body
    )


def test_every_snippet_is_found() -> None:
    assert len(SNIPPETS) >= 20
    assert {s.path.name for s in SNIPPETS} >= {"README.md", "testing.md"}


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda s: s.name)
async def test_snippet_runs(
    snippet: Snippet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_daytona: FakeDaytona,
) -> None:
    if _defines_tests(snippet.code):
        await trio.to_thread.run_sync(_run_as_pytest, snippet, tmp_path)
        return
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.md").write_text("Deploys happen on Tuesdays.\n")
    (work / "data.csv").write_text("city,people\nLisbon,545000\n")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RHO_ACTORS_TELEMETRY_DB", str(tmp_path / "telemetry.db"))
    monkeypatch.setenv("DAYTONA_API_KEY", fake_daytona.api_key)
    monkeypatch.setenv("DAYTONA_API_URL", fake_daytona.api_url)
    monkeypatch.setenv("DAYTONA_TARGET", "local")
    async with open_scripted_server(default=_docs_model) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        store = SessionStore(f"sqlite:{tmp_path / 'store.db'}")
        config = AgentConfig(base_url=server.base_url, model="scripted", working_dir=str(work))
        agent = Agent(config)
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(serve_worker, store))
            namespace = _namespace(
                agent=agent,
                config=config,
                session=Session(agent),
                store=store,
                nursery=nursery,
                prompts=["first task", "second task"],
            )
            with trio.fail_after(60):
                await _execute(snippet, namespace)
            nursery.cancel_scope.cancel(reason="snippet done")


def _namespace(**given: Any) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "snippet"}
    namespace.update({name: getattr(rho_actors, name) for name in rho_actors.__all__})
    namespace.update(
        {name: getattr(rho_actors.testing, name) for name in rho_actors.testing.__all__}
    )
    namespace.update(trio=trio, attrs=attrs, Literal=Literal, log=logging.getLogger("snippet"))
    namespace.update(given)
    return namespace


async def _execute(snippet: Snippet, namespace: dict[str, Any]) -> None:
    source = textwrap.dedent(snippet.code)
    if "trio.run(" in source:
        # A program of its own: its trio.run goes in a thread, beside this one.
        code = compile(source, snippet.name, "exec", dont_inherit=True)
        await trio.to_thread.run_sync(exec, code, namespace)
        return
    # dont_inherit: this module's `from __future__ import annotations` is not the snippet's.
    code = compile(
        source, snippet.name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    before = set(namespace)
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        await result
    main = namespace.get("main")
    if "main" not in before and inspect.iscoroutinefunction(main):
        await main()


_PYTEST_SETUP = """\
import pytest
import trio
import trio.testing
from rho_actors import *
from rho_actors.testing import *

"""


def _run_as_pytest(snippet: Snippet, tmp_path: Path) -> None:
    """A snippet that defines tests: a test module of its own, run by pytest."""
    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["rho_actors.testing.pytest_plugin"]\n')
    module = tmp_path / "test_snippet.py"
    body = _PYTEST_SETUP + textwrap.dedent(snippet.code)
    if "def test_" not in snippet.code:
        body += "\n\nasync def test_the_module_loads() -> None:\n    await trio.sleep(0)\n"
    module.write_text(body)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(module)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{snippet.name}:\n{done.stdout}\n{done.stderr}"
