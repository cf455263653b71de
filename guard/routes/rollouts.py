"""Rollout hand-off and control: what CD pipelines and operators call.

Submissions are idempotent on the `Idempotency-Key` header, so a pipeline may retry a POST after
a timeout without starting a second rollout.

A `deploy` token controls only the rollouts it submitted; another's rollout answers 404 exactly
as a missing one. `deploy` implies `read`, so this hides nothing the token could not list; it
gives one answer for "no rollout of yours here" (a client handles a single case) and keeps a
refusal from becoming a probe if scopes are ever split. An `operate` token controls any
rollout. Scopes are checked before any lookup, so 403 never depends on what exists.

The handlers are async and hand only the store's call to the thread pool, and a submission or
a single rollout's read not even that on a local SQLite file (`guard.store.read_store`,
`guard.handoff`): FastAPI runs a sync handler in a thread and then validates its answer in
another, two hops per request where none is needed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Response, status
from starlette.concurrency import run_in_threadpool

from guard.auth import Controller, Deployer, Reader
from guard.clock import utcnow
from guard.errors import ERRORS
from guard.models import (
    ControlCommand,
    ControlRequest,
    RolloutRequest,
    RolloutState,
    RolloutView,
    Scope,
)
from guard.services import Services, get_services
from guard.store import Conflict, NotFound, Submission, read_store
from guard.tokens import Principal
from strategies.registry import STRATEGIES

router = APIRouter(prefix="/v1/rollouts", tags=["rollouts"], responses=ERRORS)
ServicesDep = Annotated[Services, Depends(get_services)]
RolloutId = Annotated[str, Path(max_length=36)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": RolloutView, "description": "Replay of an Idempotency-Key"}},
)
async def submit(
    request: RolloutRequest,
    response: Response,
    services: ServicesDep,
    principal: Deployer,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> RolloutView:
    """Start a guarded rollout; the same Idempotency-Key returns the same rollout."""
    if request.strategy not in STRATEGIES:
        known = ", ".join(sorted(STRATEGIES))
        detail = [
            {
                "loc": ["body", "strategy"],
                "msg": f"unknown strategy; known: {known}",
                "type": "value_error",
            }
        ]
        raise HTTPException(422, detail)
    submission = Submission(
        request,
        idempotency_key,
        utcnow(),
        actor=principal.name,
        may_supersede_others=principal.can(Scope.OPERATE),
        leased_to=services.engine.replica_id if services.engine else None,
        lease_seconds=services.config.store.lease_seconds,
    )
    try:
        view, created = await services.handoffs.submit(submission)
    except Conflict as exc:
        raise HTTPException(409, str(exc)) from exc
    if not created:
        response.status_code = status.HTTP_200_OK
    return view


@router.get("")
async def list_rollouts(
    services: ServicesDep,
    _principal: Reader,
    state: RolloutState | None = None,
    namespace: Annotated[str | None, Query(max_length=63)] = None,
    deployment: Annotated[str | None, Query(max_length=253)] = None,
    service: Annotated[str | None, Query(max_length=253)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RolloutView]:
    """Newest first; decisions are left out here, ask for one rollout to see them."""
    return await run_in_threadpool(
        services.store.list_rollouts,
        state=state.value if state else None,
        namespace=namespace,
        deployment=deployment,
        service=service,
        limit=limit,
    )


@router.get("/{rollout_id}")
async def get_rollout(
    rollout_id: RolloutId, services: ServicesDep, _principal: Reader
) -> RolloutView:
    try:
        return await read_store(services.store, services.store.get, rollout_id)
    except NotFound as exc:
        raise HTTPException(404, f"no rollout {rollout_id}") from exc


def _control(
    command: ControlCommand,
) -> Callable[[str, Services, Principal, ControlRequest | None], Awaitable[RolloutView]]:
    async def handler(
        rollout_id: RolloutId,
        services: ServicesDep,
        principal: Controller,
        body: ControlRequest | None = None,
    ) -> RolloutView:
        body = body or ControlRequest()
        on_behalf = {"on_behalf_of": body.actor} if body.actor else {}
        try:
            return await run_in_threadpool(
                services.store.command,
                rollout_id,
                command,
                note=body.describe(principal.name),
                now=utcnow(),
                actor=principal.name,
                owner=None if principal.can(Scope.OPERATE) else principal.name,
                reason=body.reason,
                details=on_behalf,
            )
        except NotFound as exc:
            raise HTTPException(404, f"no rollout {rollout_id}") from exc
        except Conflict as exc:
            raise HTTPException(409, str(exc)) from exc

    handler.__doc__ = (
        f"Ask the rollout to {command.value}; applied at the next tick. The optional body's "
        "actor and reason are recorded with the command, in the decision it leads to and in "
        "the audit log. Needs operate, or deploy for a rollout the same token submitted."
    )
    return handler


for _command in ControlCommand:
    router.post(f"/{{rollout_id}}/{_command.value}", name=f"{_command.value}_rollout")(
        _control(_command)
    )
