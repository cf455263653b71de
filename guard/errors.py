"""Error answers every API route may give, declared once so the OpenAPI document lists them
and clients (and the schema fuzz test) can rely on their shape."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorBody(BaseModel):
    """What went wrong and what to do about it."""

    detail: str


def _error(description: str) -> dict[str, Any]:
    # `content` keeps errors declared as JSON on routes whose success is HTML or text too.
    return {"model": ErrorBody, "description": description, "content": {"application/json": {}}}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("The body could not be read as JSON (e.g. not UTF-8)"),
    401: _error("Missing or unknown bearer token"),
    403: _error("The token lacks the scope this call needs"),
    404: _error("No such rollout, service or deployment (or not one this token may act on)"),
    409: _error("Conflicts with the current state; the detail says what to do"),
    413: _error("Request body larger than server.max_body_bytes"),
}
