"""Durable record of every rollout, decision and state change (SQLAlchemy).

Every transition is committed before its Kubernetes actions run, and the actions stay recorded
as pending until they are done, so a guard that dies at any moment resumes each rollout from
the last committed step and repeats at most an idempotent patch.

Several replicas share one PostgreSQL database: each unfinished rollout is leased to one replica
(`claim`, a row lease with an expiry taken with ``FOR UPDATE SKIP LOCKED``), renewed by the
ticks once half of it has run. Every change of owner increments the rollout's fencing token,
and every write of a tick carries the token it was claimed with, so a replica that lost its
lease (it stalled, another took over) has its writes refused with `LeaseLost` instead of
overwriting the new owner's progress.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import socket
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    inspect,
    literal_column,
    null,
    or_,
    select,
    text,
    true,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from alerts.base import AlertEvent
from guard import audit as audit_log
from guard import outbox as alert_outbox
from guard.checkpoint import WAL_SIZE_LIMIT, WalCheckpointer
from guard.db import Base, UtcDateTime, dumps_json, engine_url, insert_rows, loads_json
from guard.models import (
    ControlCommand,
    Decision,
    RolloutRequest,
    RolloutState,
    RolloutTimestamps,
    RolloutView,
)
from guard.writer_lock import WriterLock
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
    # A submission asks whether its Deployment has an unfinished rollout; with only the
    # single-column indexes SQLite searched by namespace, reading every rollout ever submitted
    # there.
    __table_args__ = (Index("ix_rollouts_namespace_deployment", "namespace", "deployment"),)

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
    submitted_by: Mapped[str | None] = mapped_column(String(128))
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    fencing_token: Mapped[int] = mapped_column(Integer, default=0)


ADDED_COLUMNS = {
    "submitted_by": "VARCHAR(128)",
    "lease_owner": "VARCHAR(128)",
    "lease_expires_at": "TIMESTAMP",
    "fencing_token": "INTEGER NOT NULL DEFAULT 0",
}


class ReplicaRow(Base):
    """Replicas seen lately, so each can take its fair share of new rollouts."""

    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


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


class LeaseLost(Exception):
    """Another replica owns the rollout now (or it ended); this replica must not act on it."""


@dataclass(frozen=True)
class Fence:
    """Who holds a rollout's lease, and the fencing token it was claimed with."""

    owner: str
    token: int


@dataclass(frozen=True)
class Submission:
    """One hand-off, as `Store.submit` takes it (see there)."""

    request: RolloutRequest
    idempotency_key: str | None
    now: datetime
    actor: str | None = None
    may_supersede_others: bool = True
    audit_as: audit_log.AuditAction = audit_log.AuditAction.SUBMIT
    reason: str | None = None
    leased_to: str | None = None
    lease_seconds: float = 0.0


Submitted = tuple[RolloutView, bool]
"""The rollout, and whether this hand-off created it (False: an Idempotency-Key replay)."""


@dataclass(frozen=True)
class Leases:
    """What one claim leased: each rollout's fencing token, in the order a tick takes them."""

    replica_id: str
    fencing_tokens: dict[str, int]


def new_replica_id() -> str:
    """Unique per process, readable in logs: hostname, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


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
    fence: Fence | None = None
    blocked_by: str | None = None


@dataclass(frozen=True)
class Applied:
    """One rollout's transition to commit, with the alerts it raises."""

    rollout_id: str
    transition: Transition
    analysed_at: datetime | None
    alerts: tuple[alert_outbox.RoutedAlert, ...] = ()
    fence: Fence | None = None  # the lease it was decided under (several replicas)


class Store:
    """All reads and writes of rollouts; one short transaction per call."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        parsed = make_url(engine_url(url))
        sqlite = parsed.get_backend_name() == "sqlite"
        # Each request holds a connection in its own thread (up to anyio's 40); past a pool of
        # 5 every checkout opened a SQLite file, set its pragmas and closed it again.
        self._local_file = sqlite and parsed.database not in (None, "", ":memory:")
        pool = {"pool_size": 40} if self._local_file else {}
        self.engine: Engine = create_engine(
            parsed,
            # A local SQLite file has no connection to lose; a ping per checkout is pure cost.
            pool_pre_ping=not sqlite,
            json_serializer=dumps_json,
            json_deserializer=loads_json,
            **pool,
        )
        self._sqlite = self.engine.dialect.name == "sqlite"
        if self._sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.writer = WriterLock(
            Path(f"{parsed.database}-writer-lock") if self._local_file else None
        )
        self._checkpointer: WalCheckpointer | None = None
        if self._local_file:
            event.listen(self.engine, "connect", _no_checkpoint_in_commits)
            assert parsed.database is not None
            self._checkpointer = WalCheckpointer(parsed.database, owner=self, writer=self.writer)
        with self.writer:  # the guard's two processes open a new file at once
            Base.metadata.create_all(self.engine)
            _add_columns(self.engine)
            _add_indexes(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # A request never changes once submitted; validating a thousand of them every tick did.
        self._requests: dict[str, RolloutRequest] = {}

    @property
    def outbox(self) -> alert_outbox.Outbox:
        """Claiming and listing alert deliveries, on the same database."""
        return alert_outbox.Outbox(self._session, self._writing)

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self.engine.dispose()
        self.writer.close()

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
        """One writer at a time.

        SQLite's driver starts a transaction only at the first write, so a read-then-write
        (is this key used? is a rollout active? which commands are queued?) is not atomic
        without this: two pipelines could start two rollouts on one Deployment, or an abort
        could be lost to a concurrent tick. The writer lock orders the writers of the guard's
        processes (see guard.writer_lock), and on SQLite the transaction takes the database's
        write lock at its start (BEGIN IMMEDIATE) against any other. Across replicas
        PostgreSQL's row locks and `_serialize` do the same.
        """
        with self.writer, self._sessions.begin() as session:
            if self._sqlite:
                # On the driver's connection: through SQLAlchemy's execution it cost every write
                # 0.02 ms more, a thirtieth of a hand-off's hold.
                cursor = session.connection().connection.cursor()
                cursor.execute("BEGIN IMMEDIATE")
                cursor.close()
            yield session

    @property
    def local_file(self) -> bool:
        """A SQLite file on this machine: no network in any call, and in WAL mode a read never
        waits for a writer."""
        return self._local_file

    def _serialize(self, session: Session, *keys: str) -> None:
        """Hold PostgreSQL advisory locks on these keys until the transaction ends.

        A read-then-insert (is this Deployment busy? is this idempotency key used?) has no row
        to lock yet, so two replicas could both pass the check; the lock makes them take turns.
        SQLite has one writer anyway.
        """
        if self.engine.dialect.name != "postgresql":
            return
        for key in sorted(keys):
            session.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))

    def submit(
        self,
        request: RolloutRequest,
        *,
        idempotency_key: str | None,
        now: datetime,
        actor: str | None = None,
        may_supersede_others: bool = True,
        audit_as: audit_log.AuditAction = audit_log.AuditAction.SUBMIT,
        reason: str | None = None,
        leased_to: str | None = None,
        lease_seconds: float = 0.0,
    ) -> tuple[RolloutView, bool]:
        """Create a rollout, or return the one this idempotency key already created.

        `actor` (a token name) owns the new rollout and is written to the audit log with it, in
        this transaction. Without `may_supersede_others` it may supersede only its own rollout.
        With `leased_to`, on SQLite (one replica), the guard that took the hand-off holds the
        new rollout's lease from the start: its next tick drives it without a lease write, which
        at hundreds of submissions a second was a burst of writes each tick that held hand-offs
        up. On PostgreSQL the next ticks spread new rollouts over the replicas by fair share.
        """
        submission = Submission(
            request, idempotency_key, now, actor, may_supersede_others, audit_as, reason,
            leased_to, lease_seconds,
        )  # fmt: skip
        answer = self.submit_many([submission])[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def submit_many(self, submissions: Sequence[Submission]) -> list[Submitted | Exception]:
        """Several hand-offs in one transaction, each answered as `submit` would answer it alone.

        A commit cost a third of a hand-off, and most of it wrote the same table and index pages
        again; the group's new rows are inserted together at its end (`_HeldRows`). A `Conflict`
        is raised before its submission writes anything, so the others go on in the same
        transaction; any other error undoes it, and each is then tried alone. For one writer
        (SQLite): on PostgreSQL two replicas' batches could take advisory locks in opposite
        orders.
        """
        try:
            with self._writing() as session:
                held = _HeldRows()
                grouped: list[Submitted | Exception] = [
                    self._submit_or_conflict(session, s, held) for s in submissions
                ]
                held.write(session)
                return grouped
        except Exception as exc:
            if len(submissions) == 1:
                return [exc]
        answers: list[Submitted | Exception] = []
        for submission in submissions:
            answers += self.submit_many([submission])
        return answers

    def _submit_or_conflict(
        self, session: Session, submission: Submission, held: _HeldRows
    ) -> Submitted | Conflict:
        try:
            return self._submit(session, submission, held)
        except Conflict as exc:
            return exc

    def _submit(self, session: Session, submission: Submission, held: _HeldRows) -> Submitted:
        """The new rollout's rows go to `held`, for the caller to write."""
        request, now = submission.request, submission.now
        idempotency_key = submission.idempotency_key
        if idempotency_key in held.keys or (request.namespace, request.deployment) in held.targets:
            held.write(session)  # the queries below must see them
        payload = request.model_dump(mode="json")
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        locks = [f"deployment/{request.namespace}/{request.deployment}"]
        self._serialize(session, *locks, *([f"key/{idempotency_key}"] * bool(idempotency_key)))
        connection = session.connection()  # Core: ORM statements cost more than the SQL
        target = (request.namespace, request.deployment)
        # One statement for both questions (is this key used? is this Deployment busy?): each
        # statement cost a hand-off about 0.1 ms of the API's CPU, most of it SQLAlchemy's.
        found = connection.execute(
            _BY_KEY_OR_DEPLOYMENT,
            {"key": idempotency_key, "namespace": target[0], "deployment": target[1]},
        ).all()
        existing = next(
            (r for r in found if idempotency_key and r.idempotency_key == idempotency_key), None
        )
        if existing is not None:
            if existing.request_digest != digest:
                raise Conflict(
                    f"Idempotency-Key {idempotency_key!r} was used for a different "
                    f"request (rollout {existing.id}); use a new key for a new request"
                )
            return _view(connection, existing), False
        # Any other row found is an unfinished rollout of this Deployment.
        active = next((r for r in found if (r.namespace, r.deployment) == target), None)
        new_id = str(uuid.uuid4())
        if active is not None and not request.supersede:
            raise Conflict(
                f"rollout {active.id} of {request.namespace}/{request.deployment} is still "
                f"{active.state}; wait for it, abort it first, or submit with supersede"
            )
        if (
            active is not None
            and not submission.may_supersede_others
            and active.submitted_by != submission.actor
        ):
            raise Conflict(
                f"rollout {active.id} of {request.namespace}/{request.deployment} was "
                "submitted by another token; only its submitter or a token with the operate "
                "scope may supersede it"
            )
        if active is not None:
            note = f"the guard: superseded by rollout {new_id}"
            superseded = session.get_one(RolloutRow, active.id)
            _queue(session, superseded, ControlCommand.ABORT, note, now)
        values: dict[str, Any] = {
            "id": new_id,
            "idempotency_key": idempotency_key,
            "request_digest": digest,
            "namespace": request.namespace,
            "deployment": request.deployment,
            "service": request.service_name,
            "strategy": request.strategy,
            "request": payload,
            "state": RolloutState.PENDING.value,
            "step": "queued",
            "message": "waiting for the next tick",
            "strategy_state": {},
            "commands": [],
            "command_notes": {},
            "pending_actions": [],
            "submitted_at": now,
            "submitted_by": submission.actor,
        }
        if submission.leased_to is not None and self.engine.dialect.name == "sqlite":
            values |= {
                "lease_owner": submission.leased_to,
                "lease_expires_at": now + timedelta(seconds=submission.lease_seconds),
                "fencing_token": 1,
            }
        held.add(values, idempotency_key, (request.namespace, request.deployment))
        submitted = {"rollout_id": new_id, "at": now, "state": values["state"]}
        held.events.append({**submitted, "message": "submitted"})
        row = SimpleNamespace(**({column.key: None for column in _VIEWED} | values))
        if submission.actor is not None:
            superseded_id = active.id if active is not None else None
            held.audit += _audit_submit(
                row,
                request,
                submission.audit_as,
                submission.actor,
                submission.reason,
                superseded_id,
                now,
            )
        history = [(now, row.state, "submitted")]
        return _view(connection, row, new=(request, history)), True

    def get(self, rollout_id: str) -> RolloutView:
        with self.engine.begin() as connection:
            row = connection.execute(_VIEWED_BY_ID, {"id": rollout_id}).first()
            if row is None:
                raise NotFound(rollout_id)
            return _view(connection, row)

    def list_rollouts(
        self,
        *,
        state: str | None = None,
        namespace: str | None = None,
        deployment: str | None = None,
        service: str | None = None,
        limit: int = 100,
    ) -> list[RolloutView]:
        query = select(*_VIEWED).order_by(RolloutRow.submitted_at.desc()).limit(limit)
        for column, value in (
            (RolloutRow.state, state),
            (RolloutRow.namespace, namespace),
            (RolloutRow.deployment, deployment),
            (RolloutRow.service, service),
        ):
            if value is not None:
                query = query.where(column == value)
        with self.engine.begin() as connection:
            return [_view(connection, row, decisions=False) for row in connection.execute(query)]

    def active(self) -> list[ActiveRollout]:
        """Every unfinished rollout, read only (no lease taken)."""
        query = select(*RolloutRow.__table__.columns).where(_unfinished())
        with self._session() as session:
            rows = session.connection().execute(query.order_by(RolloutRow.submitted_at))
            return self._hand_out(session, list(rows), None)

    def claim(self, replica_id: str, lease_seconds: float, now: datetime) -> list[ActiveRollout]:
        """`lease`, then `leased` for all of them; a tick runs the two apart, and reads in
        batches, so its event loop serves requests in between."""
        leases = self.lease(replica_id, lease_seconds, now)
        return self.leased(leases, list(leases.fencing_tokens))

    def lease(self, replica_id: str, lease_seconds: float, now: datetime) -> Leases:
        """Lease this replica's rollouts for `lease_seconds`; each with the fencing token it holds.

        In one transaction: renew the leases it holds once half of one has run, take over those
        whose lease expired (the owner died or stalled; the fencing token goes up) and take
        never-leased rollouts up to a fair share (unfinished rollouts / replicas seen within two
        lease periods, so a slow tick does not make a live replica look gone), so several
        replicas spread new work (on SQLite, one replica by definition, it takes them all).
        ``FOR UPDATE SKIP LOCKED`` passes over rows another replica is claiming at this moment,
        so claims never wait on each other nor take a row twice.
        """
        until = now + timedelta(seconds=lease_seconds)
        stale = now - timedelta(seconds=2 * lease_seconds)
        with self._writing() as session:
            seen = session.get(ReplicaRow, replica_id)
            if seen is None:
                session.add(ReplicaRow(id=replica_id, seen_at=now))
            else:
                seen.seen_at = now
            forgotten = now - timedelta(seconds=10 * lease_seconds)
            session.execute(delete(ReplicaRow).where(ReplicaRow.seen_at < forgotten))
            session.flush()
            share: int | None = None  # no bound: this replica takes every takeable rollout
            takeable: Any = true()
            mine = 0
            if self.engine.dialect.name != "sqlite":
                # On SQLite, one replica by definition: a lease held by someone else was this
                # guard's before it restarted, so the new process resumes at once. It needs no
                # share, nor the counts behind one: counting its own unfinished rollouts read
                # every one of them under the writer lock at each tick.
                replicas = session.scalar(
                    select(func.count()).select_from(ReplicaRow).where(ReplicaRow.seen_at >= stale)
                )
                unfinished = session.scalar(
                    select(func.count()).select_from(RolloutRow).where(_unfinished())
                )
                share = max(1, math.ceil((unfinished or 0) / max(1, replicas or 1)))
                takeable = or_(
                    RolloutRow.lease_owner.is_(None),
                    RolloutRow.lease_owner == replica_id,
                    RolloutRow.lease_expires_at < now,
                )
                mine = (
                    session.scalar(
                        select(func.count())
                        .select_from(RolloutRow)
                        .where(_unfinished(), RolloutRow.lease_owner == replica_id)
                    )
                    or 0
                )
            # A held lease is renewed once half of it has run, not every tick: rewriting every
            # unfinished row each tick was most of a claim's time under the writer lock. The
            # leases still fresh need no write, so they are not read here either.
            half_left = now + timedelta(seconds=lease_seconds / 2)
            to_write = or_(
                RolloutRow.lease_owner.is_(None),
                RolloutRow.lease_owner != replica_id,
                RolloutRow.lease_expires_at.is_(None),
                RolloutRow.lease_expires_at <= half_left,
            )
            candidates = session.execute(
                select(
                    RolloutRow.id,
                    RolloutRow.state,
                    RolloutRow.lease_owner,
                    RolloutRow.fencing_token,
                )
                .where(_unfinished(), takeable, to_write)
                .order_by(RolloutRow.submitted_at, RolloutRow.id)
                .with_for_update(skip_locked=True)
            ).all()
            taken: list[Any] = []
            for row in candidates:
                if row.lease_owner is None and share is not None:
                    if mine >= share:
                        continue
                    mine += 1
                taken.append(row)
            renewed = [row.id for row in taken if row.lease_owner == replica_id]
            acquired = [row for row in taken if row.lease_owner != replica_id]
            session.add_all(
                EventRow(
                    rollout_id=row.id,
                    at=now,
                    state=row.state,
                    message=(
                        f"replica {replica_id} took over from {row.lease_owner}, whose lease "
                        f"expired"
                    ),
                )
                for row in acquired
                if row.lease_owner is not None
            )
            _bulk_update(session, renewed, lease_expires_at=until)
            _bulk_update(
                session,
                [row.id for row in acquired],
                lease_owner=replica_id,
                fencing_token=func.coalesce(RolloutRow.fencing_token, 0) + 1,
                lease_expires_at=until,
            )
        # What this replica holds now, with the tokens just committed, read without the writer
        # lock (a thousand rows of it held hand-offs up at every tick). Only this replica
        # changes a lease it holds before it expires; one that expired and was not renewed
        # (another replica's claim had it locked) may be changing hands.
        with self._session() as session:
            held = session.execute(
                select(RolloutRow.id, RolloutRow.fencing_token)
                .where(
                    _unfinished(),
                    RolloutRow.lease_owner == replica_id,
                    RolloutRow.lease_expires_at > now,
                )
                .order_by(RolloutRow.submitted_at, RolloutRow.id)
            )
            fences = {rollout_id: token or 0 for rollout_id, token in held}
        # The rollouts this replica drives now; the requests of the rest may go.
        self._requests = {k: v for k, v in self._requests.items() if k in fences}
        return Leases(replica_id, fences)

    def leased(self, leases: Leases, ids: Sequence[str]) -> list[ActiveRollout]:
        """These leased rollouts, as the engine takes them.

        Read after the leases are committed, without the writer lock: decoding a thousand rows'
        JSON under it held every hand-off up for tens of ms a tick. The leases make them this
        replica's to change until they expire; the fences are the tokens the lease committed.
        """
        with self._session() as session:
            rows = session.connection().execute(_ROLLOUTS_BY_IDS, {"ids": list(ids)})
            return self._hand_out(session, list(rows), leases)

    def renew(self, rollout_id: str, fence: Fence, lease_seconds: float, now: datetime) -> None:
        """Extend a lease still held with this fence, before acting on it; else `LeaseLost`."""
        with self._writing() as session:
            row = _fenced(session, rollout_id, fence)
            row.lease_expires_at = now + timedelta(seconds=lease_seconds)

    def release(self, replica_id: str) -> int:
        """Give up this replica's leases (on a clean shutdown) so another takes over at once."""
        with self._writing() as session:
            rows = session.scalars(
                select(RolloutRow)
                .where(RolloutRow.lease_owner == replica_id)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                row.lease_expires_at = None
                row.lease_owner = None
            session.execute(delete(ReplicaRow).where(ReplicaRow.id == replica_id))
            return len(rows)

    def _hand_out(
        self, session: Session, rows: Sequence[Any], leases: Leases | None
    ) -> list[ActiveRollout]:
        """Rows as the engine takes them: alert history, fence (the token each was leased
        with), and what blocks a pending one."""
        alerts = alert_outbox.history(session, [row.id for row in rows])
        blockers: dict[tuple[str, str], list[tuple[datetime, str]]] = {}
        pending = [row for row in rows if row.state == RolloutState.PENDING.value]
        if pending:
            others = session.connection().execute(
                _UNFINISHED_OF_DEPLOYMENTS, {"deployments": list({r.deployment for r in pending})}
            )
            for namespace, deployment, submitted_at, rollout_id in others:
                blockers.setdefault((namespace, deployment), []).append((submitted_at, rollout_id))
        handed: list[ActiveRollout] = []
        for row in rows:
            fence = None
            if leases is not None:
                fence = Fence(leases.replica_id, leases.fencing_tokens[row.id])
            blocked_by = None
            if row.state == RolloutState.PENDING.value:
                earlier = [
                    other
                    for other in blockers.get((row.namespace, row.deployment), [])
                    if other < (row.submitted_at, row.id)
                ]
                blocked_by = min(earlier)[1] if earlier else None
            active = _active(row, self._requests.get(row.id))
            if leases is not None:
                self._requests[row.id] = active.request
            handed.append(
                replace(active, alert_history=alerts[row.id], fence=fence, blocked_by=blocked_by)
            )
        return handed

    def command(
        self,
        rollout_id: str,
        command: ControlCommand,
        *,
        note: str = "an operator",
        now: datetime | None = None,
        actor: str | None = None,
        owner: str | None = None,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> RolloutView:
        """Queue a manual command with who sent it and why; the next tick carries it out.

        With `owner`, a rollout submitted by anyone else is NotFound, exactly as a missing one:
        a deploy token learns nothing about rollouts that are not its own. `actor` writes the
        command to the audit log in the same transaction.
        """
        with self._writing() as session:
            row = session.get(RolloutRow, rollout_id, with_for_update=True)
            if row is None or (owner is not None and row.submitted_by != owner):
                raise NotFound(rollout_id)
            if RolloutState(row.state).terminal:
                raise Conflict(
                    f"rollout {rollout_id} already ended ({row.state}); nothing to {command}"
                )
            at = now or datetime.now(UTC)
            _queue(session, row, command, note, at)
            if actor is not None:
                audit_log.record(
                    session,
                    audit_log.entry(
                        at=at,
                        actor=actor,
                        action=audit_log.AuditAction(command.value),
                        target=row.id,
                        reason=reason,
                        details={"service": row.service, **(details or {})},
                    ),
                )
            session.flush()  # the view reads the history with plain SQL, so no autoflush
            return _view(session.connection(), row)

    def audit(
        self,
        *,
        actor: str,
        action: audit_log.AuditAction,
        target: str,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> None:
        """Record a change made outside the store's own writes (e.g. a config reload)."""
        with self._writing() as session:
            audit_log.record(
                session,
                audit_log.entry(
                    at=now or datetime.now(UTC),
                    actor=actor,
                    action=action,
                    target=target,
                    reason=reason,
                    details=details,
                ),
            )

    def audit_entries(
        self,
        *,
        actor: str | None = None,
        action: audit_log.AuditAction | None = None,
        since: datetime | None = None,
        target: str | None = None,
        limit: int = 100,
    ) -> list[audit_log.AuditEntry]:
        with self._session() as session:
            return audit_log.entries(
                session, actor=actor, action=action, since=since, target=target, limit=limit
            )

    def apply(
        self,
        rollout_id: str,
        transition: Transition,
        *,
        analysed_at: datetime | None,
        now: datetime,
        alerts: Sequence[alert_outbox.RoutedAlert] = (),
        alert_expiry_seconds: float = 6 * 3600,
        fence: Fence | None = None,
    ) -> None:
        """Commit one tick's transition, its decision, pending actions and alerts together.

        With a fence, only if the lease is still held with that token (else `LeaseLost`).
        """
        self.apply_many(
            [Applied(rollout_id, transition, analysed_at, tuple(alerts), fence)],
            now=now,
            alert_expiry_seconds=alert_expiry_seconds,
        )

    def apply_many(
        self, applied: Sequence[Applied], *, now: datetime, alert_expiry_seconds: float = 6 * 3600
    ) -> None:
        """Commit many rollouts' transitions in one transaction: a tick over a thousand
        rollouts pays for one commit and one batched flush, not a thousand of each. All or
        none: `NotFound` or `LeaseLost` for any of them rolls the whole batch back."""
        with self._writing() as session:
            ids = [a.rollout_id for a in applied]
            # Only the columns a transition merges with (queued commands, first timestamps):
            # the engine already holds the rest, and decoding every row's JSON again cost more
            # than the writes.
            current = {
                row.id: row for row in session.connection().execute(_MERGED_BY_IDS, {"ids": ids})
            }
            updates, decisions, events = [], [], []
            for item in applied:
                row = current.get(item.rollout_id)
                if row is None:
                    raise NotFound(item.rollout_id)
                _check_fence(item.rollout_id, row.lease_owner, row.fencing_token, item.fence)
                values, decision, event = _apply(row, item, now)
                updates.append(values)
                decisions += [decision] if decision else []
                events += [event] if event else []
                alert_outbox.record(
                    session, item.alerts, now=now, expire_after=alert_expiry_seconds
                )
            _update_rows(session, updates)
            if decisions:
                insert_rows(session, DecisionRow, decisions)
            if events:
                insert_rows(session, EventRow, events)

    def actions_done(self, rollout_id: str, fence: Fence | None = None) -> None:
        with self._writing() as session:
            row = _fenced(session, rollout_id, fence)
            row.pending_actions = []


def _view(
    connection: Connection,
    row: Any,
    *,
    decisions: bool = True,
    new: tuple[RolloutRequest, list[tuple[datetime, str, str]]] | None = None,
) -> RolloutView:
    """The API's view of a rollout: `row` is a `RolloutRow` or a row of `_VIEWED`.

    `new` is the request and history of a rollout created in this transaction: it has no
    decisions and nothing else to read back, which spares a hand-off a query and a validation
    of the request it was just given.
    """
    decision_bodies: list[dict[str, Any]] = []
    history: list[Any] = []
    if new is not None:
        history = new[1]
    elif decisions:
        trail = connection.execute(_TRAIL_OF, {"rollout_id": row.id})
        for kind, _seq, body, at, state, message in trail:
            if kind == _DECISION:
                decision_bodies.append(body)
            else:
                history.append((at, state, message))
    else:
        history = list(connection.execute(_EVENTS_OF, {"rollout_id": row.id}))
    return RolloutView(
        id=row.id,
        state=RolloutState(row.state),
        step=row.step,
        strategy=row.strategy,
        request=new[0] if new is not None else RolloutRequest.model_validate(row.request),
        message=row.message,
        outcome_reason=row.outcome_reason,
        submitted_by=row.submitted_by,
        timestamps=RolloutTimestamps(**{name: getattr(row, name) for name in TIMESTAMP_FIELDS}),
        pending_commands=[ControlCommand(c) for c in row.commands],
        decisions=[Decision.model_validate(body) for body in decision_bodies],
        details={
            **{k: row.strategy_state.get(k) for k in EXPOSED_STRATEGY_STATE},
            "lease": _lease(row),
            "history": [
                {"at": at.isoformat(), "state": state, "message": message}
                for at, state, message in history
            ],
        },
    )


_MERGED = (
    RolloutRow.id,
    RolloutRow.lease_owner,
    RolloutRow.fencing_token,
    RolloutRow.state,
    RolloutRow.commands,
    RolloutRow.command_notes,
    *(getattr(RolloutRow, name) for name in TIMESTAMP_FIELDS),
)


def _apply(
    row: Any, item: Applied, now: datetime
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
    """The column values of one rollout after its transition (for a bulk UPDATE by primary
    key), and the rows of its decision and state-change event, if any."""
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
    decision = None
    if transition.decision is not None:
        decision = {"rollout_id": row.id, "body": transition.decision.model_dump(mode="json")}
    event = None
    if row.state != values["state"]:
        message = transition.message or ""
        event = {"rollout_id": row.id, "at": now, "state": values["state"], "message": message}
    return values, decision, event


def _lease(row: Any) -> dict[str, Any] | None:
    """Which replica drives the rollout, until when, and its fencing token."""
    if row.lease_owner is None or RolloutState(row.state).terminal:
        return None
    expires = row.lease_expires_at.isoformat() if row.lease_expires_at else None
    return {"replica": row.lease_owner, "expires_at": expires, "fencing_token": row.fencing_token}


def _unfinished() -> Any:
    """The four unfinished states named, not "not one of the five terminal ones": the state
    index then finds them, where a NOT IN scanned every rollout ever stored, twice a tick."""
    return RolloutRow.state.in_([s.value for s in RolloutState if not s.terminal])


# The statements of a hand-off and of a rollout's view, built once: building one cost more
# than running it.
_VIEWED = (
    RolloutRow.id,
    RolloutRow.state,
    RolloutRow.step,
    RolloutRow.strategy,
    RolloutRow.request,
    RolloutRow.message,
    RolloutRow.outcome_reason,
    RolloutRow.submitted_by,
    RolloutRow.commands,
    RolloutRow.strategy_state,
    RolloutRow.lease_owner,
    RolloutRow.lease_expires_at,
    RolloutRow.fencing_token,
    *(getattr(RolloutRow, name) for name in TIMESTAMP_FIELDS),
)
_ROLLOUTS = Base.metadata.tables[RolloutRow.__tablename__]
_UPDATE_BY_ID = update(_ROLLOUTS).where(_ROLLOUTS.c.id == bindparam("rollout_id"))
_VIEWED_BY_ID = select(*_VIEWED).where(RolloutRow.id == bindparam("id"))
_BY_KEY_OR_DEPLOYMENT = select(
    *_VIEWED,
    RolloutRow.request_digest,
    RolloutRow.idempotency_key,
    RolloutRow.namespace,
    RolloutRow.deployment,
).where(
    or_(
        RolloutRow.idempotency_key == bindparam("key"),
        and_(
            RolloutRow.namespace == bindparam("namespace"),
            RolloutRow.deployment == bindparam("deployment"),
            _unfinished(),
        ),
    )
)
_EVENTS_OF = (
    select(EventRow.at, EventRow.state, EventRow.message)
    .where(EventRow.rollout_id == bindparam("rollout_id"))
    .order_by(EventRow.id)
)
# A tick's statements, built once: building one (and its cache key) cost SQLAlchemy up to
# 0.15 ms, several times a batch.
_ROLLOUTS_BY_IDS = (
    select(*_ROLLOUTS.columns)
    .where(_ROLLOUTS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_ROLLOUTS.c.submitted_at, _ROLLOUTS.c.id)
)
_UNFINISHED_OF_DEPLOYMENTS = select(
    RolloutRow.namespace, RolloutRow.deployment, RolloutRow.submitted_at, RolloutRow.id
).where(_unfinished(), RolloutRow.deployment.in_(bindparam("deployments", expanding=True)))
_MERGED_BY_IDS = (
    select(*_MERGED)
    .where(RolloutRow.id.in_(bindparam("ids", expanding=True)))
    .order_by(RolloutRow.id)  # one lock order for every writer
    .with_for_update()
)
_DECISION, _EVENT = 0, 1
_TRAIL_OF = (
    # A rollout's decisions, then its events, in one statement: each statement cost a rollout's
    # read more than the database's work for it. The first select's types decode both.
    union_all(
        select(
            literal_column(str(_DECISION), Integer).label("kind"),
            DecisionRow.id.label("seq"),
            DecisionRow.body,
            type_coerce(null(), UtcDateTime).label("at"),
            type_coerce(null(), String).label("state"),
            type_coerce(null(), Text).label("message"),
        ).where(DecisionRow.rollout_id == bindparam("rollout_id")),
        select(
            literal_column(str(_EVENT), Integer),
            EventRow.id,
            type_coerce(null(), JSON),
            EventRow.at,
            EventRow.state,
            EventRow.message,
        ).where(EventRow.rollout_id == bindparam("rollout_id")),
    ).order_by("kind", "seq")
)


def _update_rows(session: Session, updates: Sequence[dict[str, Any]]) -> None:
    """Rows by primary key, as plain Core: one executemany per set of columns changed. The
    ORM's bulk update did the same grouping at three times the cost (a tick's batch of 25 held
    the writer lock 1.5-2.6 ms, against 0.5-0.7 ms), while hand-offs waited for it."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for values in updates:
        row = {("rollout_id" if key == "id" else key): value for key, value in values.items()}
        groups.setdefault(tuple(sorted(row)), []).append(row)
    connection = session.connection()
    for rows in groups.values():
        connection.execute(_UPDATE_BY_ID, rows)


def _bulk_update(session: Session, ids: Sequence[str], **values: Any) -> None:
    """One UPDATE for all these rollouts (already locked by the caller), not one per row."""
    if ids:
        session.execute(
            update(RolloutRow)
            .where(RolloutRow.id.in_(ids))
            .values(**values)
            .execution_options(synchronize_session=False)
        )


def _fenced(session: Session, rollout_id: str, fence: Fence | None) -> RolloutRow:
    """The row, locked; with a fence, only if that replica still holds it with that token."""
    row = session.get(RolloutRow, rollout_id, with_for_update=True)
    if row is None:
        raise NotFound(rollout_id)
    _check_fence(rollout_id, row.lease_owner, row.fencing_token, fence)
    return row


def _check_fence(
    rollout_id: str, owner: str | None, token: int | None, fence: Fence | None
) -> None:
    if fence is not None and (owner, token) != (fence.owner, fence.token):
        raise LeaseLost(
            f"rollout {rollout_id}: lease (token {fence.token}) lost to "
            f"{owner or 'nobody'} (token {token})"
        )


def _add_columns(engine: Engine) -> None:
    """A store created by an earlier version gains the newer columns (create_all adds none)."""
    present = {column["name"] for column in inspect(engine).get_columns("rollouts")}
    missing = [name for name in ADDED_COLUMNS if name not in present]
    if not missing:
        return
    with engine.begin() as connection:
        for name in missing:
            connection.execute(
                text(f"ALTER TABLE rollouts ADD COLUMN {name} {ADDED_COLUMNS[name]}")
            )


def _add_indexes(engine: Engine) -> None:
    """A store created by an earlier version gains the newer indexes (create_all adds none to a
    table that exists)."""
    for index in Base.metadata.tables[RolloutRow.__tablename__].indexes:
        index.create(engine, checkfirst=True)


def _active(row: Any, request: RolloutRequest | None = None) -> ActiveRollout:
    return ActiveRollout(
        id=row.id,
        request=request or RolloutRequest.model_validate(row.request),
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


def _audit_submit(
    row: Any,
    request: RolloutRequest,
    action: audit_log.AuditAction,
    actor: str,
    reason: str | None,
    superseded_id: str | None,
    now: datetime,
) -> list[dict[str, Any]]:
    details: dict[str, Any] = {
        "service": row.service,
        "namespace": row.namespace,
        "deployment": row.deployment,
        "strategy": row.strategy,
        "images": request.images,
    }
    if request.commit_sha:
        details["commit_sha"] = request.commit_sha
    if superseded_id is not None:
        details["superseded"] = superseded_id
    entries = [
        audit_log.entry(
            at=now, actor=actor, action=action, target=row.id, reason=reason, details=details
        )
    ]
    if request.override_freeze:
        entries.append(
            audit_log.entry(
                at=now,
                actor=actor,
                action=audit_log.AuditAction.FREEZE_OVERRIDE,
                target=row.id,
                reason=request.override_freeze,
                details={"service": row.service},
            )
        )
    return entries


@dataclass
class _HeldRows:
    """New rollouts' rows, inserted together: three statements for a group of hand-offs, not
    three each (with the two queries, the statements were most of a hand-off's store time).

    Held rows are invisible to queries, so a submission whose idempotency key or Deployment
    matches one writes them first (`Store._submit`); any other query could not match them.
    """

    rollouts: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    targets: set[tuple[str, str]] = field(default_factory=set)  # (namespace, deployment)

    def add(self, rollout: dict[str, Any], key: str | None, target: tuple[str, str]) -> None:
        self.rollouts.append(rollout)
        self.keys.update([key] if key is not None else [])
        self.targets.add(target)

    def write(self, session: Session) -> None:
        for model, rows in (
            (RolloutRow, self.rollouts),  # before their events: a foreign key
            (EventRow, self.events),
            (audit_log.AuditRow, self.audit),
        ):
            if rows:
                insert_rows(session, model, rows)
        self.rollouts, self.events, self.audit = [], [], []
        self.keys.clear()
        self.targets.clear()


def _no_checkpoint_in_commits(connection: Any, _record: Any) -> None:
    """A local file's WAL is checkpointed by `guard.checkpoint`, off the event loop; the writer
    that starts it over cuts the file back to `WAL_SIZE_LIMIT`."""
    connection.execute("PRAGMA wal_autocheckpoint=0")
    connection.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """The busy timeout first: switching a new file to WAL takes an exclusive lock, which
    another process opening it at the same moment must wait for, not fail on."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


P = ParamSpec("P")
T = TypeVar("T")


async def read_store(store: Store, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a read on the event loop when the store is a local file (in WAL mode it never waits
    for a writer), else in a thread (a network database can stall the loop).

    On the loop it costs less: under load 16 pool threads handing the GIL back and forth doubled
    a request's CPU, and a tick's thread holding the writer lock waited for the GIL behind the
    loop (up to a switch interval after each SQLite call), so hand-offs waited on it in turn.
    """
    if not store.local_file:
        return await asyncio.to_thread(call, *args, **kwargs)
    return call(*args, **kwargs)


async def write_store(store: Store, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a write on the event loop once the store's writer lock is free (awaited, so the loop
    serves others meanwhile) when the store is a local file; else in a thread."""
    if not store.local_file:
        return await asyncio.to_thread(call, *args, **kwargs)
    async with store.writer.held_on_loop():
        return call(*args, **kwargs)
