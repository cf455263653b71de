"""Browser sign-in for the dashboard and the HTML reports.

The page posts a token once; the guard answers with an HttpOnly, SameSite=Lax cookie and sends
the browser on to `/dashboard`. The cookie authenticates GET and HEAD only (see `guard.auth`),
so it can read but never change anything, and a token never appears in a URL.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from guard.auth import COOKIE, COOKIE_MAX_AGE_SECONDS, MAX_TOKEN_LENGTH, login_page
from guard.models import Scope
from guard.tokens import TokenBook

router = APIRouter(prefix="/dashboard", tags=["dashboard"])


@router.get("/login", response_class=HTMLResponse)
def login_form() -> HTMLResponse:
    """The sign-in form."""
    return HTMLResponse(login_page("Sign in with an API token that has the read scope."))


@router.post(
    "/login",
    response_class=RedirectResponse,
    status_code=303,
    responses={
        401: {
            "description": "Unknown token, or one without the read scope",
            "content": {"text/html": {}},
        }
    },
    openapi_extra={
        "requestBody": {
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {"token": {"type": "string", "maxLength": 256}},
                        "required": ["token"],
                    }
                }
            },
            "required": True,
        }
    },
)
async def login(request: Request) -> Response:
    """Check the posted token; set the cookie and go to the dashboard."""
    try:
        form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=8)
    except ValueError:  # more fields than a sign-in form has
        form = {}
    token = (form.get("token") or [""])[0].strip()[:MAX_TOKEN_LENGTH]
    tokens: TokenBook = request.app.state.tokens
    principal = tokens.authenticate(token) if token else None
    if principal is None or not principal.can(Scope.READ):
        return HTMLResponse(login_page("Unknown token, or one without the read scope."), 401)
    response = RedirectResponse("/dashboard", status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=COOKIE_MAX_AGE_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout", status_code=303, response_class=RedirectResponse)
def logout() -> Response:
    """Forget the cookie."""
    response = RedirectResponse("/dashboard/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
