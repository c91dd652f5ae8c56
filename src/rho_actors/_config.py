"""Agent configuration: the seed's ``AgentConfig``, loadable from YAML.

Defaults for the model, the endpoint and the profile come from the
environment (``RHO_ACTORS_MODEL``, ``RHO_ACTORS_BASE_URL`` or
``OPENAI_BASE_URL``, ``RHO_ACTORS_PROFILE``), so one config file works
against a local server and a hosted one. The API key is read from the
environment (``OPENAI_API_KEY``) or set on the object; it is never written to
a file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from ._errors import ConfigError
from ._secrets import redact, redact_url

# Defaults of the model client's limits (kept here, at the bottom layer, so
# the config does not import the client).
DEFAULT_RESPONSE_TIMEOUT = 60.0
DEFAULT_STREAM_IDLE_TIMEOUT = 300.0

DEFAULT_MODEL = "gpt-5-mini"
DEFAULT_MAX_TURNS = 50


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def user_path(env_var: str, name: str) -> Path:
    """``$env_var`` if set, else ``$XDG_CONFIG_HOME/rho-actors/<name>`` (``~/.config``)."""
    explicit = os.environ.get(env_var)
    if explicit:
        return Path(explicit).expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "rho-actors" / name


def _default_model() -> str:
    return _env("RHO_ACTORS_MODEL") or DEFAULT_MODEL


def _default_base_url() -> str | None:
    return _env("RHO_ACTORS_BASE_URL", "OPENAI_BASE_URL")


def _default_profile() -> str | None:
    return _env("RHO_ACTORS_PROFILE")


@attrs.define(kw_only=True)
class AgentConfig:
    """Everything that defines an agent; sessions made from it share it.

    ``system_prompt`` is literal text or the path of a prompt template file;
    ``{{ name }}`` placeholders are filled from ``vars``. ``profile`` is a
    built-in profile name, a path to a YAML profile, or a profile object.
    """

    system_prompt: str | None = None
    vars: dict[str, str] = attrs.field(factory=dict)
    model: str = attrs.field(factory=_default_model)
    profile: Any = attrs.field(factory=_default_profile)
    backend: Any = "local"
    working_dir: str | None = None
    base_url: str | None = attrs.field(factory=_default_base_url)
    service_tier: str | None = None
    reasoning_effort: str | None = None
    response_format: dict[str, Any] | None = None
    auto_approve: bool = True
    extras: dict[str, Any] = attrs.field(factory=dict)
    # Beyond the seed fields:
    max_turns: int = DEFAULT_MAX_TURNS
    max_tool_executions: int | None = None
    # Request fields sent with every model call when set (None: the server's
    # default); per run, ``session.run(..., model_options={...})`` overrides.
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    # Merged into the request body last (any field a server takes), and sent
    # as HTTP headers. Secret-looking keys are redacted wherever written.
    extra_body: dict[str, Any] = attrs.field(factory=dict)
    extra_headers: dict[str, str] = attrs.field(factory=dict)
    # MCP servers whose tools the agent gets: each a mapping with ``name`` and a
    # stdio ``command`` (``args``, ``env``, ``cwd``) or a streamable-HTTP
    # ``url`` (``headers``), optional ``allow``/``deny`` tool lists and an
    # ``approval`` policy (auto, always, never). See rho_actors._mcp.
    mcp_servers: list[Any] = attrs.field(factory=list)
    # Seconds a model request may wait for its response headers, and a
    # started stream may go without a byte (see rho_actors._llm).
    response_timeout: float = DEFAULT_RESPONSE_TIMEOUT
    stream_idle_timeout: float = DEFAULT_STREAM_IDLE_TIMEOUT
    # Never persisted: see to_file().
    api_key: str | None = attrs.field(default=None, repr=False)
    # Where the config was loaded from, for relative paths and error messages.
    source: str | None = attrs.field(default=None, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        # Built from Python, a config is checked as a YAML one is: a wrong type
        # is one ConfigError naming the field now, not a failure deep in a run.
        for f in attrs.fields(type(self)):
            if f.name in ("api_key", "source", "profile", "backend"):
                continue  # objects allowed here; the Agent resolves and checks them
            value = getattr(self, f.name)
            if f.name == "extras" and not isinstance(value, Mapping):
                raise ConfigError(
                    f"got {type(value).__name__} {value!r}", key="extras", expected="a mapping"
                )
            checked = _check_field(f.name, value, self.source or "AgentConfig")
            if checked is not value:
                object.__setattr__(self, f.name, checked)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> AgentConfig:
        """Load a YAML config; errors name the file, the key and what was expected."""
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config ({exc.strerror})", file=where) from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"invalid YAML{line}", file=where, expected="a YAML mapping") from exc
        if data is None:
            data = {}
        return cls.from_dict(data, source=where)

    @classmethod
    def from_dict(cls, data: Any, *, source: str | None = None) -> AgentConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"got {type(data).__name__}", file=source, expected="a mapping of config keys"
            )
        known = {f.name: f for f in attrs.fields(cls) if f.name not in ("api_key", "source")}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "api_key":
                raise ConfigError(
                    "API keys do not belong in config files",
                    file=source,
                    key="api_key",
                    expected="the OPENAI_API_KEY environment variable",
                )
            if key not in known:
                raise ConfigError(
                    "unknown key",
                    file=source,
                    key=str(key),
                    expected="one of " + ", ".join(sorted(known)),
                )
            kwargs[key] = _check_field(key, value, source)
        return cls(**kwargs, source=source)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data, as it may be written: without the API key, and
        with credentials in ``base_url`` and secret-looking ``extras`` redacted."""
        out: dict[str, Any] = {}
        for f in attrs.fields(type(self)):
            if f.name in ("api_key", "source"):
                continue
            value = getattr(self, f.name)
            if f.name == "profile" and value is not None and not isinstance(value, str):
                # A profile object is written whole, so it comes back exactly.
                to_mapping = getattr(value, "to_mapping", None)
                value = to_mapping() if to_mapping is not None else dict(value)
            if f.name == "backend" and not isinstance(value, str | Mapping):
                # A DaytonaBackend: its settings, never its key.
                to_mapping = getattr(value, "to_mapping", None)
                value = to_mapping() if to_mapping is not None else "daytona"
            elif f.name == "backend" and isinstance(value, Mapping):
                value = redact(dict(value))
            if f.name == "base_url" and isinstance(value, str):
                value = redact_url(value)
            if f.name in ("extras", "extra_body", "extra_headers"):
                value = redact(value)
            if f.name == "mcp_servers":
                value = [_server_as_data(server) for server in value]
            out[f.name] = value
        return out

    def to_file(self, path: str | os.PathLike[str]) -> None:
        """Write the config as YAML. The API key is never written."""
        Path(path).write_text(
            yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8"
        )

    @property
    def profile_name(self) -> str:
        if self.profile is None:
            return "developer"
        if isinstance(self.profile, str):
            return self.profile
        return str(getattr(self.profile, "name", "custom"))

    def resolve_system_prompt(self) -> str:
        """The system prompt text, read from its template file if it names one, with vars filled."""
        prompt = self.system_prompt
        if prompt is None:
            return ""
        where = "system_prompt"
        candidate = self._prompt_path(prompt)
        defaults: dict[str, str] = {}
        if candidate is not None:
            where = str(candidate)
            try:
                prompt = candidate.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"cannot read prompt template ({exc.strerror})", file=where
                ) from exc
            prompt, defaults = _split_front_matter(prompt, where)
        values = {**defaults, **{k: str(v) for k, v in self.vars.items()}}
        return _substitute(prompt, values, where)

    def _prompt_path(self, prompt: str) -> Path | None:
        if "\n" in prompt or len(prompt) > 1024:
            return None
        path = Path(prompt).expanduser()
        if not path.is_absolute() and self.source is not None:
            beside = Path(self.source).parent / path
            if beside.is_file():
                return beside
        return path if path.is_file() else None


_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _substitute(template: str, values: Mapping[str, str], where: str) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ConfigError(
                "template variable has no value",
                file=where,
                key=name,
                expected=(
                    f"a value: `--var {name}=VALUE`, vars: {{{name}: ...}} in the config, "
                    f"or `{name}: ...` in the template's front matter"
                ),
            )
        return values[name]

    return _PLACEHOLDER.sub(fill, template)


def _split_front_matter(text: str, where: str) -> tuple[str, dict[str, str]]:
    """A template may start with YAML front matter giving default ``vars``."""
    if not text.startswith("---\n"):
        return text, {}
    end = text.find("\n---", 4)
    if end < 0:
        return text, {}
    try:
        meta = yaml.safe_load(text[4:end]) or {}
    except yaml.YAMLError as exc:
        raise ConfigError("invalid front matter", file=where, expected="YAML") from exc
    body = text[end + 4 :].lstrip("\n")
    if not isinstance(meta, dict):
        raise ConfigError("front matter is not a mapping", file=where, expected="NAME: value lines")
    # Defaults as top-level keys (`team: platform`), or nested under `vars:`;
    # a nested value wins over a top-level one of the same name.
    nested = meta.get("vars", {})
    if not isinstance(nested, dict):
        raise ConfigError("front matter 'vars' is not a mapping", file=where, key="vars")
    defaults = {k: v for k, v in meta.items() if k != "vars" and not isinstance(v, dict | list)}
    defaults.update(nested)
    return body, {str(k): str(v) for k, v in defaults.items()}


# The request fields an agent (or a run's ``model_options``) may set, besides
# extra_body and extra_headers.
REQUEST_FIELDS = (
    "temperature",
    "top_p",
    "seed",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "tool_choice",
    "parallel_tool_calls",
)


def request_options(
    values: Mapping[str, Any], *, source: str | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The body fields and headers that ``values`` (config fields or a run's
    ``model_options``) ask for, checked as a config file's would be."""
    body: dict[str, Any] = {}
    headers: dict[str, str] = {}
    for key, value in values.items():
        if key not in (*REQUEST_FIELDS, "extra_body", "extra_headers"):
            raise ConfigError(
                "not a model request option",
                file=source,
                key=str(key),
                expected="one of " + ", ".join((*REQUEST_FIELDS, "extra_body", "extra_headers")),
            )
        checked = _check_field(key, value, source)
        if key == "extra_headers":
            headers.update(checked)
        elif key != "extra_body" and checked is not None:
            body[key] = checked
    extra = values.get("extra_body") or {}
    owned = sorted(set(extra) & {"messages", "stream", "stream_options"})
    if owned:
        raise ConfigError(
            f"extra_body may not set {', '.join(owned)}",
            file=source,
            key="extra_body",
            expected="request fields other than messages/stream, which rho_actors sends",
        )
    body.update(extra)
    return body, headers


_STR_OR_NONE = {
    "system_prompt",
    "working_dir",
    "base_url",
    "service_tier",
    "reasoning_effort",
}


def _server_as_data(server: Any) -> Any:
    """An MCP server entry as written to a config: secrets in env and headers redacted."""
    if not isinstance(server, Mapping):
        server = {
            k: v
            for k, v in attrs.asdict(server).items()
            if v not in (None, (), {}) and not (k == "approval" and v == "auto")
        }
    data = dict(server)
    for key in ("env", "headers"):
        if key in data:
            data[key] = redact(dict(data[key]))
    for key in ("args", "allow", "deny"):
        if isinstance(data.get(key), tuple):
            data[key] = list(data[key])
    return data


def _check_field(key: str, value: Any, source: str | None) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(
            f"got {type(value).__name__} {value!r}", file=source, key=key, expected=expected
        )

    if key in _STR_OR_NONE:
        if value is not None and not isinstance(value, str):
            raise bad("a string")
        return value
    if key == "model":
        if not isinstance(value, str) or not value:
            raise bad("a model name")
        return value
    if key in ("vars",):
        if not isinstance(value, Mapping):
            raise bad("a mapping of names to strings")
        return {str(k): str(v) for k, v in value.items()}
    if key in ("extras",):
        if not isinstance(value, Mapping):
            raise bad("a mapping")
        return dict(value)
    if key == "response_format":
        if value is not None and not isinstance(value, Mapping):
            raise bad("a mapping")
        return dict(value) if value is not None else None
    if key == "auto_approve":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if key in ("max_turns",):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise bad("a positive integer")
        return value
    if key == "max_tool_executions":
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            raise bad("a non-negative integer")
        return value
    if key in ("response_timeout", "stream_idle_timeout"):
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise bad("a positive number of seconds")
        return float(value)
    if key in ("temperature", "top_p"):
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise bad("a number")
        return value
    if key in ("seed",):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise bad("an integer")
        return value
    if key in ("max_tokens", "max_completion_tokens"):
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise bad("a positive integer")
        return value
    if key == "stop":
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise bad("a string or a list of strings")
    if key == "tool_choice":
        if value is None or value in ("auto", "none", "required") or isinstance(value, Mapping):
            return dict(value) if isinstance(value, Mapping) else value
        raise bad("'auto', 'none', 'required', or a mapping naming a function")
    if key == "parallel_tool_calls":
        if value is not None and not isinstance(value, bool):
            raise bad("true or false")
        return value
    if key == "mcp_servers":
        if not isinstance(value, list):
            raise bad("a list of server mappings (name, and command or url)")
        return list(value)  # each entry is checked when the Agent is built
    if key == "extra_body":
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise bad("a mapping of request fields")
        return dict(value)
    if key == "extra_headers":
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise bad("a mapping of header names to strings")
        return dict(value)
    if key == "profile":
        if value is not None and not isinstance(value, str | Mapping):
            raise bad("a profile name, a path, or a mapping")
        return value
    if key == "backend":
        if isinstance(value, Mapping) and value.get("type") == "daytona":
            return dict(value)
        if not isinstance(value, str) or value not in ("local", "daytona"):
            raise bad("'local', 'daytona', or a mapping with type: daytona and its settings")
        return value
    return value
