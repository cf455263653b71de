"""An in-process guard app on a real store, with one token per scope mix.

No engine runs; `make_client` sends the all-scopes token unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from guard.api import create_app
from guard.config import parse_config
from guard.tokens import token_digest

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:9"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""
SCOPES = {
    "admin": ["deploy", "operate", "read"],
    "ci": ["deploy"],
    "ci-other": ["deploy"],
    "ops": ["operate"],
    "reader": ["read"],
}
TOKENS = {
    name: (f"dg_{name}-token-for-tests-".ljust(48, "0"), scopes) for name, scopes in SCOPES.items()
}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name][0]}"}


def auth_section() -> dict[str, Any]:
    return {
        "tokens": [
            {"name": name, "sha256": token_digest(token), "scopes": scopes}
            for name, (token, scopes) in TOKENS.items()
        ]
    }


MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[MakeClient]:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG, encoding="utf-8")
    with ExitStack() as stack:

        def make(**config: Any) -> TestClient:
            raw = {
                "store": {"data_dir": str(tmp_path / "data")},
                "kubernetes": {"kubeconfig": str(kubeconfig), "request_timeout_seconds": 2},
                "auth": auth_section(),
                **config,
            }
            app = create_app(parse_config(raw))
            client = TestClient(app, headers=bearer("admin"))
            return stack.enter_context(client)

        yield make


@pytest.fixture
def tokens() -> dict[str, tuple[str, list[str]]]:
    """Name -> (token, scopes) of the tokens `make_client` configures."""
    return TOKENS
