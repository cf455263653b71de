"""The audit log: every change with who, what, when and why.

Readable with the `read` scope: it holds token names, targets and reasons, never a secret, and
whoever may watch rollouts may see who changed them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query

from guard.audit import AuditAction, AuditEntry
from guard.auth import Reader
from guard.errors import ERRORS
from guard.models import aware
from guard.services import Services, get_services

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=ERRORS)
ServicesDep = Annotated[Services, Depends(get_services)]


@router.get("")
def list_audit(
    services: ServicesDep,
    _principal: Reader,
    actor: Annotated[str | None, Query(max_length=128, description="Token name")] = None,
    action: AuditAction | None = None,
    target: Annotated[str | None, Query(max_length=253, description="Rollout id")] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601 with a time zone")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEntry]:
    """Newest first."""
    try:
        aware(since)
    except ValueError as exc:
        detail = [{"loc": ["query", "since"], "msg": str(exc), "type": "value_error"}]
        raise HTTPException(422, detail) from exc
    return services.store.audit_entries(
        actor=actor, action=action, since=since, target=target, limit=limit
    )
