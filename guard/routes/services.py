"""Per-service views and actions: the revisions that can be restored, and restoring one.

A restore is an ordinary guarded rollout of a previous revision's images, so it gets the same
pre-flight (minus the stable-metrics check: restoring is the cure for a bad stable), analysis,
evidence and rollback as any release.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status

from guard.audit import AuditAction
from guard.auth import Operator, Reader
from guard.clock import utcnow
from guard.errors import ERRORS
from guard.kube import DeploymentSnapshot
from guard.models import RestoreRequest, RolloutRequest, RolloutView
from guard.services import Services, get_services
from guard.store import Conflict
from strategies.registry import STRATEGIES

router = APIRouter(prefix="/v1/services", tags=["services"], responses=ERRORS)
ServicesDep = Annotated[Services, Depends(get_services)]
ServiceName = Annotated[str, Path(max_length=253)]
RESTORABLE = 3


@router.get("/{service}/revisions")
def revisions(
    service: ServiceName,
    services: ServicesDep,
    _principal: Reader,
    namespace: Annotated[str | None, Query(max_length=63)] = None,
) -> dict[str, Any]:
    """The current revision and the last three that `rollback --to` can restore."""
    last = _last_rollout(services, service, namespace)
    deployment = _deployment(services, last.request.namespace, last.request.deployment)
    return {
        "namespace": deployment.namespace,
        "deployment": deployment.name,
        "current": {"revision": deployment.revision, "images": deployment.images},
        "restorable": [
            {"revision": revision, "images": images} for revision, images in _restorable(deployment)
        ],
    }


@router.post("/{service}/rollback", status_code=status.HTTP_201_CREATED)
def rollback(
    service: ServiceName, body: RestoreRequest, services: ServicesDep, principal: Operator
) -> RolloutView:
    """Start a guarded rollout of one of the last three revisions."""
    last = _last_rollout(services, service, body.namespace)
    namespace = body.namespace or last.request.namespace
    name = body.deployment or last.request.deployment
    deployment = _deployment(services, namespace, name)
    images = dict(_restorable(deployment)).get(body.to_revision)
    if images is None:
        known = ", ".join(str(r) for r, _ in _restorable(deployment)) or "none"
        _unprocessable(
            "to_revision", f"revision {body.to_revision} of {namespace}/{name} is not "
            f"restorable; the last {RESTORABLE} are: {known} (current: {deployment.revision})",
        )  # fmt: skip
    strategy = body.strategy or last.request.strategy
    if strategy not in STRATEGIES:
        _unprocessable("strategy", f"unknown strategy {strategy!r}; known: {sorted(STRATEGIES)}")
    request = RolloutRequest(
        namespace=namespace, deployment=name, service=service, images=images,
        strategy=strategy, supersede=body.supersede, restore_revision=body.to_revision,
        labels={"restored-by": principal.name},
    )  # fmt: skip
    try:
        view, _ = services.store.submit(
            request, idempotency_key=None, now=utcnow(), actor=principal.name,
            audit_as=AuditAction.RESTORE, reason=body.reason,
        )  # fmt: skip
    except Conflict as exc:
        raise HTTPException(409, str(exc)) from exc
    return view


def _unprocessable(field: str, message: str) -> None:
    raise HTTPException(422, [{"loc": ["body", field], "msg": message, "type": "value_error"}])


def _last_rollout(services: Services, service: str, namespace: str | None) -> RolloutView:
    found = services.store.list_rollouts(service=service, namespace=namespace, limit=1)
    if not found:
        raise HTTPException(404, f"no rollout of service {service!r} is known to the guard")
    return found[0]


def _deployment(services: Services, namespace: str, name: str) -> DeploymentSnapshot:
    deployment = services.kube.read_deployment(namespace, name)
    if deployment is None:
        raise HTTPException(404, f"deployment {namespace}/{name} not found")
    return deployment


def _restorable(deployment: DeploymentSnapshot) -> list[tuple[int, dict[str, str]]]:
    """Previous revisions, newest first, each once per distinct set of images."""
    seen = [deployment.images]
    out: list[tuple[int, dict[str, str]]] = []
    for rs in sorted(deployment.replica_sets, key=lambda r: -r.revision):
        containers = rs.template.get("spec", {}).get("containers", [])
        images = {c["name"]: c.get("image", "") for c in containers}
        if rs.revision < deployment.revision and images not in seen:
            seen.append(images)
            out.append((rs.revision, images))
    return out[:RESTORABLE]
