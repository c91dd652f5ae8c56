"""Secrets are never written: credentials in URLs, extras and metadata are redacted in
every file a run writes (issue 13, class "secrets")."""

from __future__ import annotations

import base64
from pathlib import Path

from rho_actors import (
    Agent,
    AgentConfig,
    RuntimeOptions,
    SessionStore,
    close_runtime,
    create_runtime,
    run_prompt,
    start_runtime,
)
from rho_actors._secrets import redact_url
from rho_actors.testing import Reply, ScriptedServer

PLANTED = "PLANTED-s3cr3t-7Q"


def _files_containing(root: Path, needle: str) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and needle.encode() in path.read_bytes():
            hits.append(str(path.relative_to(root)))
    return hits


async def test_no_file_a_run_writes_holds_a_planted_secret(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """base_url user info, extras and telemetry metadata: used, but written nowhere."""
    server.default = lambda request: Reply.text("hello")
    url = server.base_url.replace("http://", f"http://user:{PLANTED}@")
    store = SessionStore(tmp_path / "sessions")
    runtime = create_runtime(
        "You are terse.",
        options=RuntimeOptions(
            base_url=url,
            model="m",
            working_dir=str(tmp_path),
            team_id="acme",
            project_id="p",
            observability_config=str(tmp_path / "telemetry.db"),
            telemetry_metadata={"job": "j1", "deploy_token": PLANTED},
            store=store,
        ),
    )
    runtime.agent.config.extras["api_key"] = PLANTED
    await start_runtime(runtime)
    result = await run_prompt(runtime, "hi")
    await close_runtime(runtime, result.status)
    assert result.status == "completed"
    runtime.agent.config.to_file(tmp_path / "agent.yaml")
    # The control: the secret really was in play (sent as the request's basic auth).
    sent = server.chat_requests[-1].headers.get("authorization", "")
    assert PLANTED in base64.b64decode(sent.split()[-1]).decode()
    assert _files_containing(tmp_path, PLANTED) == []
    # base_url, extras.api_key and the telemetry metadata the runtime keeps in extras
    assert (tmp_path / "agent.yaml").read_text().count("[redacted]") == 3


def test_urls_lose_passwords_and_secret_query_parameters() -> None:
    """A URL keeps its user, host and harmless parameters, and nothing secret."""
    assert redact_url(f"https://bob:{PLANTED}@api.example/v1?api-key={PLANTED}&region=eu") == (
        "https://bob:[redacted]@api.example/v1?api-key=[redacted]&region=eu"
    )
    assert redact_url(f"https://{PLANTED}@api.example/v1") == "https://[redacted]@api.example/v1"
    assert redact_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    config = AgentConfig(base_url=f"https://api.example/v1?token={PLANTED}")
    assert PLANTED not in str(config.to_dict())
    assert Agent(config).model_settings().base_url == f"https://api.example/v1?token={PLANTED}"
