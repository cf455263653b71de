"""API tokens as the guard knows them: by SHA-256, with the scopes each grants.

Apart from `guard.auth` (the API's middleware and dependencies) so that the engine's process,
which checks the tokens of a reloaded config, loads no web framework.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import TypeAdapter, ValidationError

from guard.config import AuthConfig, ConfigError, TokenConfig
from guard.models import Scope

TOKEN_PREFIX = "dg_"
IMPLIED: dict[Scope, frozenset[Scope]] = {
    Scope.DEPLOY: frozenset({Scope.DEPLOY, Scope.READ}),
    Scope.OPERATE: frozenset({Scope.OPERATE, Scope.READ}),
    Scope.READ: frozenset({Scope.READ}),
}


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the token's name and everything its scopes grant."""

    name: str
    scopes: frozenset[Scope]

    def can(self, scope: Scope) -> bool:
        return scope in self.scopes


class TokenBook:
    """Every configured token, looked up by hash."""

    def __init__(self, tokens: list[TokenConfig]) -> None:
        names = [t.name for t in tokens]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise ConfigError([f"auth: the token name {duplicate!r} is used twice"])
        self._entries = [
            (
                t.sha256,
                Principal(t.name, frozenset(s for scope in t.scopes for s in IMPLIED[scope])),
            )
            for t in tokens
        ]

    @classmethod
    def from_config(cls, config: AuthConfig) -> TokenBook:
        """The config's tokens plus those of `tokens_file`, which is read once, now."""
        return cls([*config.tokens, *read_tokens_file(config.tokens_file)])

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, token: str) -> Principal | None:
        digest = token_digest(token)
        found = None
        for stored, principal in self._entries:  # no early exit: constant work per lookup
            if hmac.compare_digest(stored, digest):
                found = principal
        return found


def read_tokens_file(path: Path | None) -> list[TokenConfig]:
    if path is None:
        return []
    where = f"auth.tokens_file ({path})"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    except OSError as exc:
        raise ConfigError([f"{where}: cannot read: {exc.strerror}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"{where}: not valid YAML: {exc}"]) from exc
    try:
        return TypeAdapter(list[TokenConfig]).validate_python(raw)
    except ValidationError as exc:
        raise ConfigError(
            [f"{where}[{']['.join(map(str, e['loc']))}]: {e['msg']}" for e in exc.errors()]
            + [f"{where}: expected a list of {{name, sha256, scopes}}"]
        ) from exc
