"""Durable record of every rollout, decision and state change (SQLAlchemy).

Every transition is committed before its Kubernetes actions run, and the actions stay recorded
as pending until they are done, so a guard that dies at any moment resumes each rollout from
the last committed step and repeats at most an idempotent patch.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from alerts.base import AlertEvent
from guard import outbox as alert_outbox
from guard.db import Base, UtcDateTime
from guard.models import (
    TERMINAL_STATES,
    ControlCommand,
    Decision,
    RolloutRequest,
    RolloutState,
    RolloutTimestamps,
    RolloutView,
)
from strategies.base import Action, Transition

TIMESTAMP_FIELDS = tuple(RolloutTimestamps.model_fields)
EXPOSED_STRATEGY_STATE = (
    "stable_revision",
    "stable_hash",
    "candidate_hash",
    "candidate_serving_at",
    "steps",
    "step_index",
    "effective_weights",
    "phase",
    "preflight",
    "freeze_override",
    "restore",
)


class RolloutRow(Base):
    __tablename__ = "rollouts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    request_digest: Mapped[str] = mapped_column(String(64))
    namespace: Mapped[str] = mapped_column(String(63), index=True)
    deployment: Mapped[str] = mapped_column(String(253), index=True)
    service: Mapped[str] = mapped_column(String(253), index=True)
    strategy: Mapped[str] = mapped_column(String(32))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True)
    step: Mapped[str] = mapped_column(String(128), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    outcome_reason: Mapped[str | None] = mapped_column(String(64))
    strategy_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    commands: Mapped[list[str]] = mapped_column(JSON, default=list)
    command_notes: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    pending_actions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    last_analysis_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    submitted_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    first_bad_sample_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    rollback_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    rollback_verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class DecisionRow(Base):
    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.id"), index=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)


class EventRow(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.id"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    state: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)


class NotFound(Exception):
    pass


class Conflict(Exception):
    """The request cannot be taken as it stands; the message says why and what to do."""


@dataclass(frozen=True)
class ActiveRollout:
    """What the engine needs of an unfinished rollout in one tick."""

    id: str
    request: RolloutRequest
    state: RolloutState
    step: str
    strategy_state: dict[str, Any]
    commands: list[ControlCommand]
    pending_actions: list[Action]
    last_analysis_at: datetime | None
    alert_history: list[AlertEvent] = field(default_factory=list)
    submitted_at: datetime | None = None
    command_notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Applied:
    """One rollout's transition to commit, with the alerts it raises."""

    rollout_id: str
    transition: Transition
    analysed_at: datetime | None
    alerts: tuple[alert_outbox.RoutedAlert, ...] = ()


class Store:
    """All reads and writes of rollouts; one short transaction per call."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = threading.RLock()

    @property
    def outbox(self) -> alert_outbox.Outbox:
        """Claiming and listing alert deliveries, on the same database."""
        return alert_outbox.Outbox(self._sessions)

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> bool:
        with self._session() as session:
            session.execute(select(1))
        return True

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        """One writer at a time in this process.

        SQLite's driver starts a transaction only at the first write, so a read-then-write
        (is this key used? is a rollout active? which commands are queued?) is not atomic
        without it: two pipelines could start two rollouts on one Deployment, or an abort could
        be lost to a concurrent tick. Several replicas need PostgreSQL (row locks) instead.
        """
        with self._write_lock, self._sessions.begin() as session:
            yield session

    def submit(
        self, request: RolloutRequest, *, idempotency_key: str | None, now: datetime
    ) -> tuple[RolloutView, bool]:
        """Create a rollout, or return the one this idempotency key already created."""
        payload = request.model_dump(mode="json")
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        with self._writing() as session:
            if idempotency_key is not None:
                existing = session.scalar(
                    select(RolloutRow).where(RolloutRow.idempotency_key == idempotency_key)
                )
                if existing is not None:
                    if existing.request_digest != digest:
                        raise Conflict(
                            f"Idempotency-Key {idempotency_key!r} was used for a different "
                            f"request (rollout {existing.id}); use a new key for a new request"
                        )
                    return self._view(session, existing), False
            active = session.scalar(
                select(RolloutRow).where(
                    RolloutRow.namespace == request.namespace,
                    RolloutRow.deployment == request.deployment,
                    RolloutRow.state.not_in([s.value for s in TERMINAL_STATES]),
                )
            )
            new_id = str(uuid.uuid4())
            if active is not None and not request.supersede:
                raise Conflict(
                    f"rollout {active.id} of {request.namespace}/{request.deployment} is still "
                    f"{active.state}; wait for it, abort it first, or submit with supersede"
                )
            if active is not None:
                note = f"the guard: superseded by rollout {new_id}"
                _queue(session, active, ControlCommand.ABORT, note, now)
            row = RolloutRow(
                id=new_id,
                idempotency_key=idempotency_key,
                request_digest=digest,
                namespace=request.namespace,
                deployment=request.deployment,
                service=request.service_name,
                strategy=request.strategy,
                request=payload,
                state=RolloutState.PENDING.value,
                step="queued",
                message="waiting for the next tick",
                strategy_state={},
                commands=[],
                command_notes={},
                pending_actions=[],
                submitted_at=now,
            )
            session.add(row)
            session.add(EventRow(rollout_id=row.id, at=now, state=row.state, message="submitted"))
            session.flush()
            return self._view(session, row, decisions=False), True  # a new rollout has none

    def get(self, rollout_id: str) -> RolloutView:
        with self._session() as session:
            row = session.get(RolloutRow, rollout_id)
            if row is None:
                raise NotFound(rollout_id)
            return self._view(session, row)

    def list_rollouts(
        self,
        *,
        state: str | None = None,
        namespace: str | None = None,
        deployment: str | None = None,
        service: str | None = None,
        limit: int = 100,
    ) -> list[RolloutView]:
        query = select(RolloutRow).order_by(RolloutRow.submitted_at.desc()).limit(limit)
        for column, value in (
            (RolloutRow.state, state),
            (RolloutRow.namespace, namespace),
            (RolloutRow.deployment, deployment),
            (RolloutRow.service, service),
        ):
            if value is not None:
                query = query.where(column == value)
        with self._session() as session:
            return [self._view(session, row, decisions=False) for row in session.scalars(query)]

    def active(self) -> list[ActiveRollout]:
        terminal = [s.value for s in TERMINAL_STATES]
        query = select(RolloutRow).where(RolloutRow.state.not_in(terminal))
        with self._session() as session:
            rows = [
                _active(row) for row in session.scalars(query.order_by(RolloutRow.submitted_at))
            ]
            alerts = alert_outbox.history(session, [row.id for row in rows])
        return [replace(row, alert_history=alerts[row.id]) for row in rows]

    def command(
        self,
        rollout_id: str,
        command: ControlCommand,
        *,
        note: str = "an operator",
        now: datetime | None = None,
    ) -> RolloutView:
        """Queue a manual command with who sent it and why; the next tick carries it out."""
        with self._writing() as session:
            row = session.get(RolloutRow, rollout_id, with_for_update=True)
            if row is None:
                raise NotFound(rollout_id)
            if RolloutState(row.state).terminal:
                raise Conflict(
                    f"rollout {rollout_id} already ended ({row.state}); nothing to {command}"
                )
            _queue(session, row, command, note, now or datetime.now(UTC))
            return self._view(session, row)

    def apply(
        self,
        rollout_id: str,
        transition: Transition,
        *,
        analysed_at: datetime | None,
        now: datetime,
        alerts: Sequence[alert_outbox.RoutedAlert] = (),
        alert_expiry_seconds: float = 6 * 3600,
    ) -> None:
        """Commit one tick's transition, its decision, pending actions and alerts together."""
        self.apply_many(
            [Applied(rollout_id, transition, analysed_at, tuple(alerts))],
            now=now,
            alert_expiry_seconds=alert_expiry_seconds,
        )

    def apply_many(
        self, applied: Sequence[Applied], *, now: datetime, alert_expiry_seconds: float = 6 * 3600
    ) -> None:
        """Commit many rollouts' transitions in one transaction: a tick over a thousand
        rollouts pays for one commit and one batched flush, not a thousand of each."""
        with self._writing() as session:
            ids = [a.rollout_id for a in applied]
            # Only the columns a transition merges with (queued commands, first timestamps):
            # the engine already holds the rest, and decoding every row's JSON again cost more
            # than the writes.
            current = {
                row.id: row
                for row in session.execute(
                    select(*_MERGED)
                    .where(RolloutRow.id.in_(ids))
                    .order_by(RolloutRow.id)  # one lock order for every writer
                    .with_for_update()
                )
            }
            updates = []
            for item in applied:
                row = current.get(item.rollout_id)
                if row is None:
                    raise NotFound(item.rollout_id)
                updates.append(_apply(session, row, item, now))
                alert_outbox.record(
                    session, item.alerts, now=now, expire_after=alert_expiry_seconds
                )
            session.execute(update(RolloutRow), updates)

    def actions_done(self, rollout_id: str) -> None:
        with self._writing() as session:
            row = session.get(RolloutRow, rollout_id)
            if row is not None:
                row.pending_actions = []

    def _view(self, session: Session, row: RolloutRow, *, decisions: bool = True) -> RolloutView:
        decision_rows: Iterable[DecisionRow] = (
            session.scalars(
                select(DecisionRow).where(DecisionRow.rollout_id == row.id).order_by(DecisionRow.id)
            )
            if decisions
            else []
        )
        events = session.scalars(
            select(EventRow).where(EventRow.rollout_id == row.id).order_by(EventRow.id)
        )
        return RolloutView(
            id=row.id,
            state=RolloutState(row.state),
            step=row.step,
            strategy=row.strategy,
            request=RolloutRequest.model_validate(row.request),
            message=row.message,
            outcome_reason=row.outcome_reason,
            timestamps=RolloutTimestamps(**{name: getattr(row, name) for name in TIMESTAMP_FIELDS}),
            pending_commands=[ControlCommand(c) for c in row.commands],
            decisions=[Decision.model_validate(d.body) for d in decision_rows],
            details={
                **{k: row.strategy_state.get(k) for k in EXPOSED_STRATEGY_STATE},
                "history": [
                    {"at": e.at.isoformat(), "state": e.state, "message": e.message} for e in events
                ],
            },
        )


_MERGED = (
    RolloutRow.id,
    RolloutRow.state,
    RolloutRow.commands,
    RolloutRow.command_notes,
    *(getattr(RolloutRow, name) for name in TIMESTAMP_FIELDS),
)


def _apply(session: Session, row: Any, item: Applied, now: datetime) -> dict[str, Any]:
    """The column values of one rollout after its transition (for a bulk UPDATE by primary
    key), with its decision and state-change event added to the session."""
    transition = item.transition
    consumed = {c.value for c in transition.consumed_commands}
    values: dict[str, Any] = {
        "id": row.id,
        "state": transition.state.value,
        "step": transition.step[:128],
        "strategy_state": transition.strategy_state,
        "pending_actions": [action.to_json() for action in transition.actions],
        "commands": [c for c in row.commands if c not in consumed],
        "command_notes": {k: v for k, v in (row.command_notes or {}).items() if k not in consumed},
    }
    if transition.message is not None:
        values["message"] = transition.message
    if transition.outcome_reason is not None:
        values["outcome_reason"] = transition.outcome_reason
    if item.analysed_at is not None:
        values["last_analysis_at"] = item.analysed_at
    for name, value in transition.timestamps.items():
        if getattr(row, name) is None:
            values[name] = value
    if transition.decision is not None:
        body = transition.decision.model_dump(mode="json")
        session.add(DecisionRow(rollout_id=row.id, body=body))
    if row.state != values["state"]:
        message = transition.message or ""
        session.add(EventRow(rollout_id=row.id, at=now, state=values["state"], message=message))
    return values


def _active(row: RolloutRow) -> ActiveRollout:
    return ActiveRollout(
        id=row.id,
        request=RolloutRequest.model_validate(row.request),
        state=RolloutState(row.state),
        step=row.step,
        strategy_state=dict(row.strategy_state),
        commands=[ControlCommand(c) for c in row.commands],
        pending_actions=[Action.from_json(a) for a in row.pending_actions],
        last_analysis_at=row.last_analysis_at,
        submitted_at=row.submitted_at,
        command_notes=dict(row.command_notes or {}),
    )


def _queue(
    session: Session, row: RolloutRow, command: ControlCommand, note: str, now: datetime
) -> None:
    """Add a command once, remember who asked and why, and put that in the history."""
    if command.value not in row.commands:
        row.commands = [*row.commands, command.value]
    row.command_notes = {**(row.command_notes or {}), command.value: note}
    message = f"{command.value} requested by {note}"
    session.add(EventRow(rollout_id=row.id, at=now, state=row.state, message=message))


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
