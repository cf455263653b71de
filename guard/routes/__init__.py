"""HTTP routes, one module per area; `ROUTERS` is the one place they are registered."""

from fastapi import APIRouter

from guard.routes import alerts, audit, dora, login, operations, rollouts, services

ROUTERS: list[APIRouter] = [
    rollouts.router,
    services.router,
    alerts.router,
    operations.router,
    dora.router,
    audit.router,
    login.router,
]
