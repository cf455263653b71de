"""API tokens: who is calling, and may they do this.

Tokens are 256-bit random strings (`dg_` + 43 URL-safe characters) known to the guard only by
their SHA-256. A slow password hash (bcrypt, scrypt, argon2) protects guessable secrets; a
256-bit random token cannot be guessed or brute-forced from its hash, and a slow KDF would cost
tens of milliseconds per request. Lookups compare every stored hash with `hmac.compare_digest`,
so timing says nothing about which token, or how much of one, matched.

Authentication (401) runs as ASGI middleware before routing and before the body is read, so an
unauthenticated caller learns nothing, not even which paths exist. Authorisation (403) is a
dependency per endpoint, declared with the bearer scheme so it shows in the OpenAPI document,
and runs before any handler looks anything up: 403 versus 404 never reveals whether a rollout
exists. A browser may carry the token in an HttpOnly cookie set by `/dashboard/login`; that
cookie counts only for GET and HEAD, which change nothing, so a cross-site form cannot act with
it.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from guard.models import Scope
from guard.tokens import Principal, TokenBook

COOKIE = "guard_token"
COOKIE_MAX_AGE_SECONDS = 8 * 3600
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/dashboard/login", "/dashboard/logout"}
)
MAX_TOKEN_LENGTH = 256
ASGIScope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[ASGIScope, Receive, Send], Awaitable[None]]


def bearer_token(scope: ASGIScope) -> str | None:
    """The token of an ASGI request: the Authorization header, else (GET/HEAD) the cookie."""
    headers = _headers(scope)
    authorization = headers.get("authorization", "")
    kind, _, token = authorization.partition(" ")
    if kind.lower() == "bearer" and token.strip():
        return token.strip()[:MAX_TOKEN_LENGTH]
    if scope.get("method") in ("GET", "HEAD"):
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and value:
                return value[:MAX_TOKEN_LENGTH]
    return None


class Authentication:
    """ASGI middleware: every path but `PUBLIC_PATHS` needs a known token, or gets 401.

    The tokens are the app's `state.tokens`, read per request, so replacing that `TokenBook`
    (a config reload) takes effect at once.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        tokens: TokenBook = scope["app"].state.tokens
        token = bearer_token(scope)
        principal = tokens.authenticate(token) if token else None
        if principal is None:
            await _unauthorized(scope, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def _headers(scope: ASGIScope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def _unauthorized(scope: ASGIScope, send: Send) -> None:
    headers = _headers(scope)
    wants_page = scope.get("method") == "GET" and "text/html" in headers.get("accept", "")
    if wants_page:
        body = login_page("Sign in with an API token that has the read scope.").encode()
        content_type = b"text/html; charset=utf-8"
    else:
        body = (
            b'{"detail":"missing or unknown bearer token; send the header '
            b"'Authorization: Bearer <token>' (create one with `guard token create`)\"}"
        )
        content_type = b"application/json"
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b"Bearer"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def login_page(message: str) -> str:
    """A form that posts a token to `/dashboard/login`; no script, nothing in the URL."""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Deploy Guard: sign "
        "in</title><style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;"
        "color:#1f2933}input{width:100%;padding:.5rem;margin:.5rem 0;box-sizing:border-box}"
        "</style></head><body><h1>Deploy Guard</h1>"
        f"<p>{html.escape(message)}</p>"
        "<form method='post' action='/dashboard/login'>"
        "<label for='token'>API token</label>"
        "<input id='token' name='token' type='password' autocomplete='off' required>"
        "<button type='submit'>Sign in</button></form></body></html>"
    )


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="An API token from `guard token create`. Scopes: deploy (submit and control "
    "its own rollouts), operate (control any rollout, restore revisions, record incidents), "
    "read; deploy and operate imply read.",
)


def require(*scopes: Scope) -> Callable[..., Awaitable[Principal]]:
    """Dependency: the caller, who must hold one of `scopes` (403 otherwise).

    Async because it does no I/O: FastAPI runs a sync dependency in the thread pool, a hop
    that cost every request more than the check itself.
    """

    async def dependency(
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        principal: Principal | None = getattr(request.state, "principal", None)
        if principal is None:  # the middleware lets no such request through; be safe anyway
            raise HTTPException(
                401, "missing or unknown bearer token", {"WWW-Authenticate": "Bearer"}
            )
        if not any(principal.can(scope) for scope in scopes):
            wanted = " or ".join(repr(s.value) for s in scopes)
            raise HTTPException(403, f"token {principal.name!r} lacks the {wanted} scope")
        return principal

    dependency.__name__ = f"require_{'_or_'.join(s.value for s in scopes)}"
    return dependency


Reader = Annotated[Principal, Depends(require(Scope.READ))]
Deployer = Annotated[Principal, Depends(require(Scope.DEPLOY))]
Operator = Annotated[Principal, Depends(require(Scope.OPERATE))]
Controller = Annotated[Principal, Depends(require(Scope.DEPLOY, Scope.OPERATE))]
