"""Alert deliveries: what was sent, what is pending and what failed, with the last error.

Shows receivers by name only; their settings point at secrets and are never returned.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from guard.auth import Reader
from guard.errors import ERRORS
from guard.outbox import DeliveryStatus
from guard.services import Services, get_services

router = APIRouter(prefix="/v1/alerts", tags=["alerts"], responses=ERRORS)
ServicesDep = Annotated[Services, Depends(get_services)]


class AlertDelivery(BaseModel):
    """One alert event on its way to one receiver."""

    id: int
    dedup_key: str
    event_id: str
    kind: str
    rollout_id: str
    receiver: str
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None
    expires_at: datetime
    last_error: str | None
    summary: str
    severity: str


@router.get("")
def list_alerts(
    services: ServicesDep,
    _principal: Reader,
    status: DeliveryStatus | None = None,
    rollout_id: Annotated[str | None, Query(max_length=36)] = None,
    receiver: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertDelivery]:
    """Newest first; `status` is pending, sending, sent or failed."""
    views = services.store.outbox.list(
        status=status.value if status else None,
        rollout_id=rollout_id,
        receiver=receiver,
        limit=limit,
    )
    return [AlertDelivery(**asdict(view)) for view in views]
