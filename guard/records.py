"""Delivery records: incidents found after promotion, and deployment records for DORA metrics.

Kept apart from `guard.store` (which other work changes often) in its own table on the same
`Base` and engine, so the rollout store stays the single writer of rollouts and this module only
reads them. `Store` creates every table on `Base`; `ensure_tables` covers a store built before
this module was imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import Integer, String, Text, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from guard import audit as audit_log
from guard.config import GuardConfig
from guard.db import Base, UtcDateTime
from guard.dora import DeploymentRecord, IncidentRecord, outcome_of
from guard.models import TERMINAL_STATES, RolloutState, aware
from guard.store import Conflict, NotFound, RolloutRow, Store

UNASSIGNED_TEAM = "unassigned"


class IncidentRow(Base):
    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[str] = mapped_column(String(36), index=True, unique=True)
    service: Mapped[str] = mapped_column(String(253), index=True)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    link: Mapped[str | None] = mapped_column(Text)


class IncidentRequest(BaseModel):
    """A failure of a promoted change, found after its promotion."""

    model_config = ConfigDict(extra="forbid")

    opened_at: datetime = Field(description="When the failure was detected")
    resolved_at: datetime | None = Field(default=None, description="When service was restored")
    link: str | None = Field(default=None, max_length=2048, description="Incident ticket URL")

    @field_validator("opened_at", "resolved_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return aware(value)

    @model_validator(mode="after")
    def _ordered(self) -> IncidentRequest:
        if self.resolved_at is not None and self.resolved_at < self.opened_at:
            raise ValueError("resolved_at must not be before opened_at")
        return self


class Incident(IncidentRequest):
    rollout_id: str
    service: str


class TooEarly(ValueError):
    """The incident claims to start before the change was promoted."""


_READY: set[int] = set()


def ensure_tables(engine: Engine) -> None:
    """Create the incidents table once per engine (a no-op when `Store` already did)."""
    if id(engine) in _READY:
        return
    IncidentRow.metadata.create_all(engine, tables=[IncidentRow.__table__])  # type: ignore[list-item]
    _READY.add(id(engine))


@dataclass(frozen=True)
class IncidentChange:
    """What a POST did: created the incident, and/or resolved it (so time to restore is
    observed exactly once, however often a client retries)."""

    incident: Incident
    created: bool
    resolved_now: bool


def record_incident(
    store: Store, rollout_id: str, body: IncidentRequest, *, actor: str | None = None
) -> IncidentChange:
    """Record (or resolve) the incident of a promoted rollout.

    One incident per rollout: it is one failed change however many tickets it raised. Posting
    again with the same `opened_at` and a `resolved_at` resolves an open incident; anything else
    that disagrees with the stored one is a conflict. `actor` audits the change in the same
    transaction.
    """
    ensure_tables(store.engine)
    with Session(store.engine) as session, session.begin():
        rollout = session.get(RolloutRow, rollout_id)
        if rollout is None:
            raise NotFound(rollout_id)
        _check_promoted(rollout, body)
        row = session.scalar(select(IncidentRow).where(IncidentRow.rollout_id == rollout_id))
        if row is None:
            row = IncidentRow(
                rollout_id=rollout_id,
                service=rollout.service,
                opened_at=body.opened_at,
                resolved_at=body.resolved_at,
                link=body.link,
            )
            session.add(row)
            change = IncidentChange(_incident(row), True, row.resolved_at is not None)
        else:
            was_open = row.resolved_at is None
            _merge(row, body)
            change = IncidentChange(_incident(row), False, was_open and row.resolved_at is not None)
        if actor is not None and (change.created or change.resolved_now):
            audit_log.record(
                session,
                audit_log.entry(
                    at=datetime.now(UTC),
                    actor=actor,
                    action=audit_log.AuditAction.INCIDENT,
                    target=rollout_id,
                    reason=body.link,
                    details={"service": rollout.service, **body.model_dump(mode="json")},
                ),
            )
        return change


def _check_promoted(rollout: RolloutRow, body: IncidentRequest) -> None:
    if rollout.state != RolloutState.PROMOTED.value or rollout.outcome_reason == "unchanged":
        raise Conflict(
            f"rollout {rollout.id} is {rollout.state}, not a promoted change; an incident records "
            "a failure found after promotion (a rollback is already counted as a failure)"
        )
    promoted_at = rollout.finished_at
    if promoted_at is not None and body.opened_at < promoted_at:
        raise TooEarly(f"opened_at is before the rollout was promoted ({promoted_at.isoformat()})")


def _merge(row: IncidentRow, body: IncidentRequest) -> None:
    same_start = row.opened_at == body.opened_at.astimezone(UTC)
    if not same_start or (row.resolved_at is not None and body.resolved_at != row.resolved_at):
        raise Conflict(
            f"rollout {row.rollout_id} already has an incident opened at "
            f"{row.opened_at.isoformat()}; post the same opened_at with resolved_at to resolve it"
        )
    if body.resolved_at is not None:
        row.resolved_at = body.resolved_at
    if body.link:
        row.link = body.link


def _incident(row: IncidentRow) -> Incident:
    return Incident(
        rollout_id=row.rollout_id,
        service=row.service,
        opened_at=row.opened_at,
        resolved_at=row.resolved_at,
        link=row.link,
    )


class SentAlert(BaseModel):
    """One alert delivered about a rollout: channel, when, and what it said."""

    channel: str
    sent_at: datetime
    summary: str


def alerts_sent(store: Store, rollout_id: str) -> list[SentAlert]:
    """Deliveries the outbox confirmed for this rollout, oldest first; pending ones are not sent."""
    deliveries = store.outbox.list(rollout_id=rollout_id, status="sent", limit=1000)
    return [
        SentAlert(channel=d.receiver, sent_at=d.sent_at, summary=f"{d.kind}: {d.summary}")
        for d in reversed(deliveries)
        if d.sent_at is not None
    ]


def incidents_of(store: Store, rollout_id: str) -> list[Incident]:
    ensure_tables(store.engine)
    with Session(store.engine) as session:
        query = select(IncidentRow).where(IncidentRow.rollout_id == rollout_id)
        return [_incident(row) for row in session.scalars(query)]


def team_of(config: GuardConfig, service: str, labels: dict[str, Any]) -> str:
    """The config's `services.<name>.team` first (the operator owns the ownership map), then the
    request's `team` label, so a pipeline can name a team for a service the config omits."""
    configured = config.services.get(service)
    if configured is not None and configured.team:
        return configured.team
    label = labels.get("team")
    return str(label) if label else UNASSIGNED_TEAM


def delivery_records(
    store: Store, config: GuardConfig, *, since: datetime
) -> tuple[list[DeploymentRecord], list[IncidentRecord]]:
    """Finished rollouts submitted since `since` and every incident recorded against them."""
    ensure_tables(store.engine)
    terminal = [s.value for s in TERMINAL_STATES]
    query = select(RolloutRow).where(
        RolloutRow.state.in_(terminal), RolloutRow.submitted_at >= since
    )
    with Session(store.engine) as session:
        deployments = [_record(row, config) for row in session.scalars(query)]
        ids = {d.rollout_id for d in deployments}
        incident_rows = session.scalars(
            select(IncidentRow).where(IncidentRow.service.in_({d.service for d in deployments}))
        ).all()
        incidents = [
            IncidentRecord(i.rollout_id, i.opened_at, i.resolved_at)
            for i in incident_rows
            if i.rollout_id in ids or i.resolved_at is None or i.resolved_at >= since
        ]
    return deployments, incidents


def _record(row: RolloutRow, config: GuardConfig) -> DeploymentRecord:
    request = row.request
    labels = request.get("labels") or {}
    commit_time = request.get("commit_time")
    return DeploymentRecord(
        rollout_id=row.id,
        service=row.service,
        team=team_of(config, row.service, labels),
        outcome=outcome_of(row.state, row.outcome_reason, row.started_at),
        submitted_at=row.submitted_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        commit_time=datetime.fromisoformat(commit_time) if commit_time else None,
        first_bad_sample_at=row.first_bad_sample_at,
        rollback_started_at=row.rollback_started_at,
        rollback_verified_at=row.rollback_verified_at,
        rework_label=str(labels.get("rework", "")).lower() == "true",
    )
