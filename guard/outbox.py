"""The alert outbox: alerts are rows written with the transition that caused them.

Written in the same transaction as the rollout's state change (see `Store.apply`), an alert
can neither be lost by a crash after the change nor sent for a change that was never stored.
Each (event, receiver) pair is one delivery row with a unique dedup key. A sender claims rows
with a conditional UPDATE (so two senders, in one guard or two replicas, never take the same
row; on PostgreSQL it picks them ``FOR UPDATE SKIP LOCKED``, passing over rows another replica
is claiming rather than waiting for it), sends, then marks them sent; a sent row is final and
never claimed again. A claim that is never acknowledged (the sender died mid-request) expires
after its lease and is retried: delivery is at least once, and receivers that honour the dedup
key see it exactly once.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    JSON,
    CursorResult,
    ForeignKey,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from alerts.base import AlertEvent
from guard.db import Base, UtcDateTime


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class AlertEventRow(Base):
    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(200), unique=True)
    # None for the guard's own events (a config reload), which belong to no rollout.
    rollout_id: Mapped[str | None] = mapped_column(ForeignKey("rollouts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)


class DeliveryRow(Base):
    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_row_id: Mapped[int] = mapped_column(ForeignKey("alert_events.id"), index=True)
    dedup_key: Mapped[str] = mapped_column(String(400), unique=True)
    receiver: Mapped[str] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


@dataclass(frozen=True)
class RoutedAlert:
    """An event and the receivers it goes to (possibly none: it is still recorded)."""

    event: AlertEvent
    receivers: Sequence[str]


@dataclass(frozen=True)
class Claimed:
    """A delivery this sender owns until `claimed_until`, identified by its token."""

    delivery_id: int
    dedup_key: str
    receiver: str
    attempts: int
    event: AlertEvent
    token: str


@dataclass(frozen=True)
class DeliveryView:
    """One delivery as `GET /v1/alerts` shows it; never a secret, only the receiver's name."""

    id: int
    dedup_key: str
    event_id: str
    kind: str
    rollout_id: str
    receiver: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None
    expires_at: datetime
    last_error: str | None
    summary: str
    severity: str


def dedup_key(event_id: str, receiver: str) -> str:
    """Stable per rollout, event and receiver: a retry or a second replica reuses it."""
    return f"{event_id}/{receiver}"


def record(
    session: Session, routed: Sequence[RoutedAlert], *, now: datetime, expire_after: float
) -> None:
    """Add events and their deliveries to the caller's transaction; a known event is skipped."""
    for item in routed:
        event = item.event
        known = session.scalar(select(AlertEventRow.id).where(AlertEventRow.event_id == event.id))
        if known is not None:
            continue
        row = AlertEventRow(
            event_id=event.id,
            rollout_id=event.rollout_id or None,
            kind=event.kind.value,
            at=event.at,
            body=event.model_dump(mode="json"),
        )
        session.add(row)
        session.flush()
        for receiver in item.receivers:
            session.add(
                DeliveryRow(
                    event_row_id=row.id,
                    dedup_key=dedup_key(event.id, receiver),
                    receiver=receiver,
                    status=DeliveryStatus.PENDING.value,
                    attempts=0,
                    created_at=now,
                    next_attempt_at=now,
                    expires_at=now + timedelta(seconds=expire_after),
                )
            )


def history(session: Session, rollout_ids: Sequence[str]) -> dict[str, list[AlertEvent]]:
    """Every alert event of these rollouts, oldest first."""
    found: dict[str, list[AlertEvent]] = {rollout_id: [] for rollout_id in rollout_ids}
    if not rollout_ids:
        return found
    rows = session.connection().execute(_HISTORY_OF, {"ids": list(rollout_ids)})
    for rollout_id, body in rows:
        if rollout_id is not None:
            found[rollout_id].append(AlertEvent.model_validate(body))
    return found


# Built once: a tick asks it for every batch of rollouts, and building it cost more than
# running it.
_HISTORY_OF = (
    select(AlertEventRow.rollout_id, AlertEventRow.body)
    .where(AlertEventRow.rollout_id.in_(bindparam("ids", expanding=True)))
    .order_by(AlertEventRow.id)
)


class Outbox:
    """Claiming, acknowledging and listing deliveries; one short transaction per call."""

    def __init__(
        self,
        reading: Callable[[], AbstractContextManager[Session]],
        writing: Callable[[], AbstractContextManager[Session]],
    ) -> None:
        """`reading` and `writing` are the store's transactions: a write takes the store's
        writer lock (see `Store._writing`), as every other write does."""
        self._reading = reading
        self._writing = writing

    def add(self, routed: Sequence[RoutedAlert], *, now: datetime, expire_after: float) -> None:
        """Record events that belong to no rollout transition (the guard's own), in their own
        transaction."""
        with self._writing() as session:
            record(session, routed, now=now, expire_after=expire_after)

    def claim(
        self, *, now: datetime, limit: int, lease_seconds: float, token: str
    ) -> list[Claimed]:
        """Take up to `limit` due deliveries (or ones whose claim lapsed) for this sender."""
        self.expire(now=now)
        due = or_(
            and_(
                DeliveryRow.status == DeliveryStatus.PENDING.value,
                DeliveryRow.next_attempt_at <= now,
            ),
            and_(
                DeliveryRow.status == DeliveryStatus.SENDING.value,
                DeliveryRow.claimed_until < now,
            ),
        )
        until = now + timedelta(seconds=lease_seconds)
        with self._writing() as session:
            candidates = list(
                session.scalars(
                    select(DeliveryRow.id)
                    .where(due)
                    .order_by(DeliveryRow.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            taken = [
                delivery_id
                for delivery_id in candidates
                if _rowcount(
                    session,
                    update(DeliveryRow)
                    .where(DeliveryRow.id == delivery_id, due)
                    .values(
                        status=DeliveryStatus.SENDING.value,
                        claim_token=token,
                        claimed_until=until,
                        attempts=DeliveryRow.attempts + 1,
                    )
                    .execution_options(synchronize_session=False),
                )
                == 1
            ]
        return self._claimed(taken, token)

    def _claimed(self, ids: list[int], token: str) -> list[Claimed]:
        if not ids:
            return []
        with self._reading() as session:
            rows = session.execute(
                select(DeliveryRow, AlertEventRow)
                .join(AlertEventRow, DeliveryRow.event_row_id == AlertEventRow.id)
                .where(DeliveryRow.id.in_(ids), DeliveryRow.claim_token == token)
                .order_by(DeliveryRow.id)
            ).all()
            return [
                Claimed(
                    delivery_id=d.id,
                    dedup_key=d.dedup_key,
                    receiver=d.receiver,
                    attempts=d.attempts,
                    event=AlertEvent.model_validate(e.body),
                    token=token,
                )
                for d, e in rows
            ]

    def mark_sent(self, claimed: Claimed, *, now: datetime) -> bool:
        """Final; False if the claim had lapsed and another sender took the row meanwhile."""
        return self._finish(
            claimed, status=DeliveryStatus.SENT, sent_at=now, claim_token=None, claimed_until=None
        )

    def mark_retry(self, claimed: Claimed, *, error: str, next_attempt_at: datetime) -> bool:
        """Back to pending, or failed if the next attempt would come after the expiry."""
        with self._writing() as session:
            row = session.get(DeliveryRow, claimed.delivery_id)
            if row is None or row.claim_token != claimed.token or row.status != "sending":
                return False
            row.last_error = error
            row.claim_token = None
            row.claimed_until = None
            if next_attempt_at > row.expires_at:
                row.status = DeliveryStatus.FAILED.value
                row.last_error = f"expired after {row.attempts} attempt(s); last error: {error}"
            else:
                row.status = DeliveryStatus.PENDING.value
                row.next_attempt_at = next_attempt_at
            return True

    def mark_failed(self, claimed: Claimed, *, error: str) -> bool:
        """Permanent: the receiver rejected the alert and a retry would be rejected too."""
        return self._finish(
            claimed, status=DeliveryStatus.FAILED, last_error=error, claim_token=None,
            claimed_until=None,
        )  # fmt: skip

    def _finish(self, claimed: Claimed, *, status: DeliveryStatus, **values: Any) -> bool:
        with self._writing() as session:
            statement = (
                update(DeliveryRow)
                .where(
                    DeliveryRow.id == claimed.delivery_id,
                    DeliveryRow.claim_token == claimed.token,
                    DeliveryRow.status == DeliveryStatus.SENDING.value,
                )
                .values(status=status.value, **values)
                .execution_options(synchronize_session=False)
            )
            return _rowcount(session, statement) == 1

    def expire(self, *, now: datetime) -> int:
        """Deliveries past their expiry become failed, keeping their last error: pending ones, and
        claimed ones whose sender died (its lease lapsed) so nobody would retry them in time."""
        lapsed = and_(
            DeliveryRow.status == DeliveryStatus.SENDING.value, DeliveryRow.claimed_until < now
        )
        with self._writing() as session:
            rows = session.scalars(
                select(DeliveryRow).where(
                    or_(DeliveryRow.status == DeliveryStatus.PENDING.value, lapsed),
                    DeliveryRow.expires_at <= now,
                )
            ).all()
            for row in rows:
                row.status = DeliveryStatus.FAILED.value
                row.last_error = (
                    f"expired after {row.attempts} attempt(s); last error: {row.last_error}"
                )
            return len(rows)

    def list(
        self,
        *,
        status: str | None = None,
        rollout_id: str | None = None,
        receiver: str | None = None,
        limit: int = 100,
    ) -> list[DeliveryView]:
        """Newest first."""
        query = (
            select(DeliveryRow, AlertEventRow)
            .join(AlertEventRow, DeliveryRow.event_row_id == AlertEventRow.id)
            .order_by(DeliveryRow.id.desc())
            .limit(limit)
        )
        if status is not None:
            query = query.where(DeliveryRow.status == status)
        if rollout_id is not None:
            query = query.where(AlertEventRow.rollout_id == rollout_id)
        if receiver is not None:
            query = query.where(DeliveryRow.receiver == receiver)
        with self._reading() as session:
            return [_view(d, e) for d, e in session.execute(query).all()]


def _rowcount(session: Session, statement: Any) -> int:
    result = cast(CursorResult[Any], session.execute(statement))
    return int(result.rowcount)


def _view(delivery: DeliveryRow, event: AlertEventRow) -> DeliveryView:
    return DeliveryView(
        id=delivery.id,
        dedup_key=delivery.dedup_key,
        event_id=event.event_id,
        kind=event.kind,
        rollout_id=event.rollout_id or "",
        receiver=delivery.receiver,
        status=delivery.status,
        attempts=delivery.attempts,
        created_at=delivery.created_at,
        next_attempt_at=(
            delivery.next_attempt_at if delivery.status == DeliveryStatus.PENDING.value else None
        ),
        sent_at=delivery.sent_at,
        expires_at=delivery.expires_at,
        last_error=delivery.last_error,
        summary=str(event.body.get("summary", "")),
        severity=str(event.body.get("severity", "")),
    )
