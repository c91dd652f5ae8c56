"""AgentConfig: YAML round trip, environment defaults, prompt templates, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from rho_actors import Agent, AgentConfig, ConfigError


def test_yaml_round_trip(tmp_path: Path) -> None:
    """to_file then from_file gives back an equal config."""
    config = AgentConfig(
        system_prompt="You are {{ role }}.",
        vars={"role": "a tester"},
        model="gpt-x",
        profile="readonly",
        working_dir="/tmp/w",
        base_url="http://localhost:1/v1",
        service_tier="flex",
        reasoning_effort="high",
        response_format={"type": "json_object"},
        auto_approve=False,
        extras={"team": "qa"},
        max_turns=7,
    )
    path = tmp_path / "agent.yaml"
    config.to_file(path)
    loaded = AgentConfig.from_file(path)
    assert loaded == config
    assert loaded.resolve_system_prompt() == "You are a tester."


def test_api_key_is_never_written(tmp_path: Path) -> None:
    """The API key stays out of the YAML file and the repr."""
    config = AgentConfig(api_key="sk-secret-123")
    path = tmp_path / "agent.yaml"
    config.to_file(path)
    assert "sk-secret-123" not in path.read_text()
    assert "sk-secret-123" not in repr(config)


def test_api_key_in_a_file_is_refused(tmp_path: Path) -> None:
    """Putting a key in the config file is an error that says where it belongs."""
    path = tmp_path / "agent.yaml"
    path.write_text("api_key: sk-x\n")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        AgentConfig.from_file(path)


def test_env_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Model, base URL and profile default from the environment."""
    monkeypatch.setenv("RHO_ACTORS_MODEL", "env-model")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env.example/v1")
    monkeypatch.setenv("RHO_ACTORS_PROFILE", "readonly")
    config = AgentConfig()
    assert (config.model, config.base_url, config.profile) == (
        "env-model",
        "http://env.example/v1",
        "readonly",
    )
    monkeypatch.setenv("RHO_ACTORS_BASE_URL", "http://rho.example/v1")
    assert AgentConfig().base_url == "http://rho.example/v1"


@pytest.mark.parametrize(
    ("yaml_text", "key", "expected"),
    [
        ("max_turns: lots\n", "max_turns", "a positive integer"),
        ("auto_approve: maybe\n", "auto_approve", "true or false"),
        ("modle: gpt\n", "modle", "one of"),
        ("vars: [1, 2]\n", "vars", "a mapping"),
        ("backend: cloud\n", "backend", "'local', 'daytona'"),
    ],
)
def test_bad_config_names_file_key_and_expectation(
    tmp_path: Path, yaml_text: str, key: str, expected: str
) -> None:
    """A bad value is reported with the file, the key and what was expected."""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        AgentConfig.from_file(path)
    message = str(info.value)
    assert str(path) in message
    assert repr(key) in message
    assert expected in message


def test_invalid_yaml_reports_the_line(tmp_path: Path) -> None:
    """Broken YAML names the file and the line."""
    path = tmp_path / "broken.yaml"
    path.write_text("model: a\nvars: {unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml.*line"):
        AgentConfig.from_file(path)


def test_prompt_template_file_with_front_matter(tmp_path: Path) -> None:
    """A template file is read relative to the config, with default vars from front matter."""
    (tmp_path / "prompt.md").write_text(
        "---\nvars:\n  tone: terse\n---\nYou are {{ role }}, be {{tone}}.\n"
    )
    (tmp_path / "agent.yaml").write_text("system_prompt: prompt.md\nvars:\n  role: an auditor\n")
    config = AgentConfig.from_file(tmp_path / "agent.yaml")
    assert config.resolve_system_prompt() == "You are an auditor, be terse.\n"
    assert Agent(config).system_prompt == "You are an auditor, be terse.\n"


def test_missing_template_variable_is_an_error(tmp_path: Path) -> None:
    """A placeholder without a value names the variable and the template file."""
    prompt = tmp_path / "p.txt"
    prompt.write_text("Hello {{ name }}")
    with pytest.raises(ConfigError) as info:
        AgentConfig(system_prompt=str(prompt)).resolve_system_prompt()
    assert "'name'" in str(info.value) and str(prompt) in str(info.value)


def test_literal_prompt_is_used_as_is() -> None:
    """Text that is not a file path is the prompt itself."""
    assert AgentConfig(system_prompt="Just text.").resolve_system_prompt() == "Just text."


def test_bad_base_url_is_a_config_error() -> None:
    """A base_url without a scheme is refused before any request."""
    with pytest.raises(ConfigError, match="base_url"):
        Agent(AgentConfig(base_url="localhost:8000")).model_settings()
