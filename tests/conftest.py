"""Shared fixtures: the scripted model server and agents pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from rho_actors import Agent, AgentConfig, SessionStore
from rho_actors.testing import ScriptedServer, open_scripted_server

pytest_plugins = ["rho_actors.testing.pytest_plugin"]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep tests away from the user's config dir and real API keys."""
    monkeypatch.setenv("RHO_ACTORS_SESSIONS_DIR", str(tmp_path / "default-sessions"))
    monkeypatch.setenv("RHO_ACTORS_CONFIG_DIR", str(tmp_path / "config"))
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "RHO_ACTORS_MODEL",
        "RHO_ACTORS_BASE_URL",
        "RHO_ACTORS_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    async with open_scripted_server() as srv:
        yield srv


@pytest.fixture
def make_agent(server: ScriptedServer, tmp_path: Path) -> Callable[..., Agent]:
    def make(**fields: Any) -> Agent:
        fields.setdefault("base_url", server.base_url)
        fields.setdefault("model", "scripted")
        fields.setdefault("working_dir", str(tmp_path))
        fields.setdefault("profile", "developer")
        return Agent(AgentConfig(**fields))

    return make


@pytest.fixture
def store(tmp_path: Path) -> SessionStore:
    return SessionStore(tmp_path / "sessions")
