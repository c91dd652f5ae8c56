"""Keeping secrets out of everything rho_actors writes.

Configs, session metas, traces and telemetry are files other people read.
A value stored under a key that looks secret (``api_key``, ``token``,
``password``, ...) is replaced by ``[redacted]`` at any depth, and a URL
loses its password and any secret-looking query parameter, before it is
written. The API key itself is never stored at all (it stays in the
environment or on the config object).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

# A key containing any of these (case-insensitive) has its value redacted.
SECRET_KEY_PARTS = ("key", "token", "secret", "password", "passwd", "credential")
REDACTED = "[redacted]"


# Environment variables a tool's child process never gets (unless a tool is
# built to pass them on): what a command prints ends up in the trace.
_SECRET_ENV_NAME = re.compile(r"(?i).*(API_?KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL).*")


def environment_without_secrets(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default: this process's) without secret-looking variables."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if not _SECRET_ENV_NAME.fullmatch(k)}


def looks_secret(key: object) -> bool:
    lowered = str(key).lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


def redact(value: Any) -> Any:
    """``value`` with secret-looking keys' values replaced, at any depth.

    Nested mappings are searched too: ``{"auth": {"api_key": ...}}`` is as
    much a leak as a top-level key.
    """
    if isinstance(value, Mapping):
        return {key: REDACTED if looks_secret(key) else redact(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


def redact_url(url: str) -> str:
    """``url`` without a password in its user info or a secret in its query."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{REDACTED}@{host}" if ":" in userinfo else f"{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = urllib.parse.urlencode(
            [(k, REDACTED if looks_secret(k) else v) for k, v in pairs], safe="[]"
        )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
