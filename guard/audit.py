"""Append-only audit log: who changed what, when and why.

Each entry is written in the same transaction as the change it describes, so the log never
claims a change that did not happen nor misses one that did. Nothing in the guard updates or
deletes an entry; the table is on the shared `Base`, so `Store` creates it with the others.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import JSON, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from guard.db import Base, UtcDateTime, insert_rows

MAX_REASON = 500


class AuditAction(enum.StrEnum):
    SUBMIT = "submit"
    FREEZE_OVERRIDE = "freeze_override"
    ABORT = "abort"
    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    RESTORE = "restore"
    INCIDENT = "incident"
    CONFIG_RELOAD = "config_reload"


class AuditRow(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(32), index=True)
    target: Mapped[str] = mapped_column(String(253), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AuditEntry(BaseModel):
    """One change as the audit log keeps it."""

    id: int
    at: datetime
    actor: str = Field(description="Name of the token that made the change")
    action: AuditAction
    target: str = Field(description="Rollout id, or service name for a restore")
    reason: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


def record(session: Session, *rows: dict[str, Any]) -> None:
    """Add entries (`entry`) to the caller's transaction."""
    insert_rows(session, AuditRow, list(rows))


def entry(
    *,
    at: datetime,
    actor: str,
    action: AuditAction,
    target: str,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An entry's row, as `record` writes it."""
    return {
        "at": at,
        "actor": actor[:128],
        "action": action.value,
        "target": target[:253],
        "reason": reason[:MAX_REASON] if reason else None,
        "details": details or {},
    }


def entries(
    session: Session,
    *,
    actor: str | None = None,
    action: AuditAction | None = None,
    since: datetime | None = None,
    target: str | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Newest first."""
    query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
    if actor is not None:
        query = query.where(AuditRow.actor == actor)
    if action is not None:
        query = query.where(AuditRow.action == action.value)
    if since is not None:
        query = query.where(AuditRow.at >= since)
    if target is not None:
        query = query.where(AuditRow.target == target)
    return [
        AuditEntry(
            id=row.id,
            at=row.at,
            actor=row.actor,
            action=AuditAction(row.action),
            target=row.target,
            reason=row.reason,
            details=row.details or {},
        )
        for row in session.scalars(query)
    ]
