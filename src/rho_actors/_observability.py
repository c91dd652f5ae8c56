"""Observability: per-session telemetry for teams and projects.

With ``team_id`` and ``project_id`` set, a runtime records its session, every
model call (tokens, cost where the model's price is known, duration), every
tool call (duration, error) and every run (status, totals) in the telemetry
database, through the Store actor like all other persistence. Rows are
collected during a run and written in one batch when the run ends, so the
hot path only appends to a list.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._events import RunResult
from ._session import Session
from ._store._actor import StoreRef, serve_store
from ._telemetry import (
    RunRow,
    SessionRow,
    TelemetryDB,
    TelemetryRow,
    ToolRow,
    TurnRow,
    cost_usd,
    default_telemetry_path,
)


@asynccontextmanager
async def _transient_store(db: TelemetryDB) -> AsyncIterator[StoreRef]:
    """A Store actor for writes made outside any run (session start and close)."""
    async with trio.open_nursery() as nursery:
        store = await nursery.start(serve_store, None, db)
        try:
            yield store
        finally:
            store.close()


class Observability:
    """Collects telemetry rows for one session and hands them to the Store."""

    def __init__(
        self,
        *,
        session: Session,
        team_id: str,
        project_id: str,
        db_path: str | None,
        metadata: Mapping[str, Any],
    ) -> None:
        self.session = session
        self.team_id = team_id
        self.project_id = project_id
        self.db = TelemetryDB(db_path or default_telemetry_path())
        self.metadata = dict(metadata)
        self.started_at: float | None = None
        self._rows: list[TelemetryRow] = []
        self._turn = 0

    def _session_row(self, status: str, ended_at: float | None) -> SessionRow:
        return SessionRow(
            session_id=self.session.id,
            team_id=self.team_id,
            project_id=self.project_id,
            model=self.session.agent.config.model,
            profile=self.session.profile.name,
            status=status,
            started_at=self.started_at or time.time(),
            ended_at=ended_at,
            metadata=self.metadata,
        )

    async def start(self) -> None:
        if self.started_at is None:
            self.started_at = time.time()
            self._rows.append(self._session_row("running", None))
            await self.flush()

    async def close(self, status: str) -> None:
        self._rows.append(self._session_row(status, time.time()))
        await self.flush()

    # Called by the run, synchronously, on the hot path: append only.

    def model_call(self, run: int, usage: Mapping[str, int], duration_ms: float) -> None:
        self._turn += 1
        model = self.session.agent.config.model
        self._rows.append(
            TurnRow(
                session_id=self.session.id,
                run=run,
                turn=self._turn,
                model=model,
                input_tokens=usage.get("input_tokens", 0),
                output_tokens=usage.get("output_tokens", 0),
                cached_tokens=usage.get("cached_tokens", 0),
                reasoning_tokens=usage.get("reasoning_tokens", 0),
                duration_ms=duration_ms,
                cost_usd=cost_usd(
                    model,
                    usage.get("input_tokens", 0),
                    usage.get("output_tokens", 0),
                    usage.get("cached_tokens", 0),
                ),
                ts=time.time(),
            )
        )

    def tool_call(
        self, run: int, name: str, duration_ms: float, is_error: bool, error: str | None
    ) -> None:
        self._rows.append(
            ToolRow(
                session_id=self.session.id,
                run=run,
                tool_name=name,
                duration_ms=duration_ms,
                is_error=is_error,
                error=error,
                ts=time.time(),
            )
        )

    def run_finished(self, run: int, result: RunResult, started_at: float) -> None:
        model = self.session.agent.config.model
        usage = result.usage
        ended = time.time()
        self._rows.append(
            RunRow(
                session_id=self.session.id,
                run=run,
                status=result.status,
                error=result.error,
                cancel_reason=result.cancel_reason,
                input_tokens=int(usage.get("input_tokens", 0)),
                output_tokens=int(usage.get("output_tokens", 0)),
                cached_tokens=int(usage.get("cached_tokens", 0)),
                reasoning_tokens=int(usage.get("reasoning_tokens", 0)),
                cost_usd=cost_usd(
                    model,
                    int(usage.get("input_tokens", 0)),
                    int(usage.get("output_tokens", 0)),
                    int(usage.get("cached_tokens", 0)),
                ),
                duration_ms=(ended - started_at) * 1000,
                started_at=started_at,
                ended_at=ended,
            )
        )
        self._turn = 0

    async def flush(self) -> None:
        """Send collected rows to the session's Store actor (or a transient one)."""
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        services = self.session._services
        store = services.store if services is not None else None
        if store is not None and store.telemetry is self.db:
            await store.record_telemetry(rows)
            return
        async with _transient_store(self.db) as transient:
            await transient.record_telemetry(rows)
