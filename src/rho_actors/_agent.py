"""The stateless agent definition: config, resolved prompt, tool catalogue.

An ``Agent`` is cheap to share: any number of sessions can run from one,
concurrently, because nothing about a conversation lives here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._config import REQUEST_FIELDS, AgentConfig, request_options
from ._daytona import DaytonaBackend
from ._errors import ConfigError
from ._hooks import AgentHooks, Guardrail
from ._llm import ModelClient, ModelClients, ModelSettings
from ._mcp import specs_from_config
from ._output import DEFAULT_OUTPUT_RETRIES, OutputMode, OutputSpec
from ._profiles import PermissionProfile, load_profile
from ._tools import ToolRegistry
from .tools import builtin_tools
from .tools._delegate import DelegateTool

# Used when no API key is configured: local OpenAI-compatible servers
# (vLLM, llama.cpp, Ollama, the scripted test server) accept any key.
PLACEHOLDER_API_KEY = "sk-no-key-configured"


class Agent:
    """A reusable agent: its config, its permission profile and its tools."""

    __slots__ = (
        "_profile",
        "_system_prompt",
        "backend",
        "config",
        "hooks",
        "input_guardrails",
        "mcp_servers",
        "output",
        "output_guardrails",
        "registry",
    )

    def __init__(
        self,
        config: AgentConfig | None = None,
        *,
        output_type: Any = None,
        output_mode: OutputMode = "auto",
        output_retries: int = DEFAULT_OUTPUT_RETRIES,
        hooks: Sequence[AgentHooks] = (),
        input_guardrails: Sequence[Guardrail] = (),
        output_guardrails: Sequence[Guardrail] = (),
        **overrides: Any,
    ) -> None:
        if config is None:
            config = AgentConfig(**overrides)
        elif overrides:
            raise TypeError("pass either an AgentConfig or keyword fields, not both")
        self.config = config
        try:
            self._profile = load_profile(config.profile)
        except ConfigError as exc:
            if exc.file is not None or config.source is None:
                raise
            # A name from a config file: the file is where to fix it.
            detail = str(exc).split(": ", 1)[-1].split(" (expected", 1)[0]
            raise ConfigError(
                detail, file=config.source, key="profile", expected=exc.expected
            ) from None
        self.backend = _resolve_backend(config)
        self.mcp_servers = specs_from_config(config.mcp_servers, source=config.source)
        self.registry = ToolRegistry.of_checked(builtin_tools(self._profile, remote=self.remote))
        if self._profile.allows_tool("delegate"):
            self.registry.register(DelegateTool())
        self._system_prompt: str | None = None
        # What every run's final answer must be (None: free text); from
        # output_type, or else from the seed's response_format.
        self.output: OutputSpec | None = _output_spec(
            config, output_type, output_mode, output_retries
        )
        for hook in hooks:
            if not isinstance(hook, AgentHooks):
                raise ConfigError(f"got {hook!r}", key="hooks", expected="AgentHooks instances")
        self.hooks: tuple[AgentHooks, ...] = tuple(hooks)
        self.input_guardrails: tuple[Guardrail, ...] = _callables(input_guardrails, "input")
        self.output_guardrails: tuple[Guardrail, ...] = _callables(output_guardrails, "output")

    @property
    def profile(self) -> PermissionProfile:
        return self._profile

    @property
    def remote(self) -> bool:
        """Whether the tools run in a Daytona sandbox rather than on this machine."""
        return self.backend is not None

    @property
    def system_prompt(self) -> str:
        """The resolved system prompt (template read and filled once)."""
        if self._system_prompt is None:
            self._system_prompt = self.config.resolve_system_prompt()
        return self._system_prompt

    @property
    def working_dir(self) -> Path:
        return Path(self.config.working_dir or os.getcwd())

    def api_key(self) -> str:
        return self.config.api_key or os.environ.get("OPENAI_API_KEY") or PLACEHOLDER_API_KEY

    def model_settings(self) -> ModelSettings:
        config = self.config
        if config.base_url is not None and not config.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"got {config.base_url!r}",
                file=config.source,
                key="base_url",
                expected="an http:// or https:// URL",
            )
        body, headers = request_options(
            {
                **{name: getattr(config, name) for name in REQUEST_FIELDS},
                "extra_body": config.extra_body,
                "extra_headers": config.extra_headers,
            },
            source=config.source,
        )
        return ModelSettings(
            model=config.model,
            base_url=config.base_url,
            api_key=self.api_key(),
            options=body,
            extra_headers=headers,
            reasoning_effort=config.reasoning_effort,
            service_tier=config.service_tier,
            response_format=config.response_format,
            response_timeout=config.response_timeout,
            stream_idle_timeout=config.stream_idle_timeout,
        )

    def create_client(self) -> ModelClient:
        """A model client for this agent's settings, with its own connection pools.

        Close it with ``await client.aclose()`` (or ``async with``). Sessions
        do not use this: they share pools through their supervisor.
        """
        return ModelClient(ModelClients(), self.model_settings(), owns_clients=True)

    def __repr__(self) -> str:
        return f"Agent(model={self.config.model!r}, profile={self._profile.name!r})"


def _output_spec(
    config: AgentConfig, output_type: Any, mode: OutputMode, retries: int
) -> OutputSpec | None:
    if output_type is not None:
        return OutputSpec.of(output_type, source="output_type", mode=mode, retries=retries)
    rf = config.response_format
    if rf is None:
        return None
    kind = rf.get("type")
    if kind == "json_schema" or kind == "json_object":
        # The seed's response_format is sent as given; the answer is parsed
        # (and validated against the schema) into result.output.
        schema = rf if kind == "json_schema" else {"type": "object"}
        return OutputSpec.of(
            schema, source="response_format", mode="response_format", retries=retries
        ).requesting(rf)
    return None


def _callables(guardrails: Sequence[Guardrail], which: str) -> tuple[Guardrail, ...]:
    for guard in guardrails:
        if not callable(guard):
            raise ConfigError(f"got {guard!r}", key=f"{which}_guardrails", expected="callables")
    return tuple(guardrails)


def _resolve_backend(config: AgentConfig) -> DaytonaBackend | None:
    """``backend`` as an object: None for local, a :class:`DaytonaBackend` otherwise."""
    backend = config.backend
    if backend is None or backend == "local":
        return None
    if backend == "daytona":
        return DaytonaBackend()
    if isinstance(backend, DaytonaBackend):
        return backend
    if isinstance(backend, Mapping) and backend.get("type") == "daytona":
        return DaytonaBackend.from_mapping(backend, source=config.source)
    raise ConfigError(
        f"got {backend!r}",
        file=config.source,
        key="backend",
        expected="'local', 'daytona', a DaytonaBackend, or a mapping with type: daytona",
    )
