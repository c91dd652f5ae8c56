"""A session's journal: what it persists, and how it reaches the Store.

The State emits a trace record for every change; the journal queues them
(its observer), creates the session in the store whole on the first write
(config, meta, and a trace opening with ``session_start``), then appends and
waits for the Store's acknowledgement, and keeps ``meta.json`` (the
:class:`~rho_actors._records.SessionMeta` cache) current at run and turn
boundaries so a monitor in another process sees status, turns and the tool
running now.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Protocol

import yaml

from .. import _records as r
from .._agent import Agent
from .._errors import ActorError, StoreError
from .._profiles import PermissionProfile
from .._secrets import redact
from .._state import State
from .._store._actor import StoreRef


class Journaled(Protocol):
    """What the journal reads of its session."""

    agent: Agent
    _live_turns: int
    _current_tool: str | None
    _telemetry_metadata: dict[str, Any] | None

    @property
    def id(self) -> str: ...
    @property
    def state(self) -> State: ...
    @property
    def profile_name(self) -> str: ...
    @property
    def profile(self) -> PermissionProfile: ...


class Journal:
    """Queued records, the session's meta, and whether it exists in the store yet."""

    __slots__ = ("_meta", "_outbox", "_profile_changed", "on_disk")

    def __init__(self) -> None:
        # Encoded records waiting for the next persist (None while empty:
        # ten thousand idle sessions should not each carry an empty list).
        self._outbox: list[bytes] | None = None
        self._meta: r.SessionMeta | None = None
        self.on_disk = False
        self._profile_changed = False

    def profile_changed(self) -> None:
        """The session's profile was reconfigured: rewrite its config with the next write."""
        self._profile_changed = self.on_disk

    def record(self, envelope: r.Envelope) -> None:
        """The State's observer: queue one record."""
        if self._outbox is None:
            self._outbox = []
        self._outbox.append(r.encode(envelope))

    def drop_unsent(self) -> None:
        """Forget records not yet acknowledged (a crashed actor's, or a session without a store)."""
        self._outbox = None

    def forget_meta(self) -> None:
        """Free the cached meta (hibernation); it is read back on wake."""
        self._meta = None

    def adopt(self, session_id: str, meta: dict[str, Any] | None) -> None:
        """The session was loaded from the store: it exists there, with this meta."""
        self.on_disk = True
        self._meta = r.decode_meta(meta) or r.SessionMeta(id=session_id, created_at=time.time())

    async def persist(
        self,
        session: Journaled,
        store: StoreRef,
        *,
        run_started: bool = False,
        prompt: str | None = None,
        run_finished: bool = False,
        live: bool = False,
    ) -> None:
        """Send queued records to the Store and wait for the commit.

        ``meta.json`` is rewritten at run start and end, and with ``live`` at
        turn and tool boundaries.
        """
        try:
            if not self.on_disk:
                await self._create(session, store)
            elif self._outbox:
                lines, self._outbox = self._outbox, None
                await store.append(session.id, lines)
            if self._profile_changed:
                self._profile_changed = False
                await store.write_config(session.id, _config_yaml(session))
            if run_started or run_finished or live:
                meta = self._meta
                if meta is None:
                    meta = self._meta = r.SessionMeta(id=session.id)
                if run_started and prompt and not meta.first_prompt:
                    meta.first_prompt = prompt[:500]
                self._refresh(meta, session)
                await store.write_meta(session.id, r.encode_meta(meta))
        except ActorError as exc:
            # The Store actor is gone (its owner shut it down): nothing more
            # can be acknowledged, which the run reports like a write failure.
            raise StoreError(
                f"the store stopped before the write was acknowledged ({exc.message})",
                session_id=session.id,
                operation=exc.operation,
            ) from exc

    def _refresh(self, meta: r.SessionMeta, session: Journaled) -> None:
        state = session.state
        meta.status = state.status
        meta.updated_at = time.time()
        meta.run_count = state.run_count
        meta.total_tokens = int(state.usage.get("total_tokens", 0))
        meta.model = session.agent.config.model
        meta.profile = session.profile_name
        meta.pid = os.getpid()
        meta.turns = session._live_turns
        meta.current_tool = session._current_tool

    async def _create(self, session: Journaled, store: StoreRef) -> None:
        """Create the session in the store whole: config, meta, and a trace that
        opens with who this session is followed by every record so far.

        Marked on disk only once the Store acknowledged all of it: a failed
        creation (a permission error) is retried whole on the next write.
        """
        config = _config_yaml(session)
        now = time.time()
        meta = r.SessionMeta(id=session.id, created_at=now)
        self._refresh(meta, session)
        meta.total_tokens = 0
        if session._telemetry_metadata:
            meta.metadata = redact(json.loads(json.dumps(session._telemetry_metadata, default=str)))
        start = r.Envelope(
            seq=0,
            ts=now,
            record=r.SessionStarted(
                session_id=session.id,
                created_at=now,
                model=session.agent.config.model,
                profile=session.profile_name,
            ),
        )
        lines = [r.encode(start), *(self._outbox or ())]
        await store.create(session.id, config, r.encode_meta(meta), lines)
        self._outbox = None
        self._meta = meta
        self.on_disk = True


def _config_yaml(session: Journaled) -> str:
    """The agent's config with the session's effective profile written whole.

    A resumed or recovered session gets exactly the profile it ran with: a
    customised profile does not come back as the built-in of its name, and
    a built-in that changes later never widens a stored session.
    """
    data = session.agent.config.to_dict()
    data["profile"] = session.profile.to_mapping()
    return yaml.safe_dump(data, sort_keys=False)
