"""An in-process guard app on a real store, with one token per scope mix.

The scheduler does not run; `make_client` sends the all-scopes token unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from guard.api import create_app
from guard.auth import token_digest
from guard.config import parse_config

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:9"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""
TOKENS = {
    "admin": ("dg_admin-token-for-tests-0000000000000000000000", ["deploy", "operate", "read"]),
    "ci": ("dg_ci-token-for-tests-000000000000000000000000000", ["deploy"]),
    "ci-other": ("dg_ci-other-token-for-tests-000000000000000000000", ["deploy"]),
    "ops": ("dg_ops-token-for-tests-00000000000000000000000000", ["operate"]),
    "reader": ("dg_reader-token-for-tests-0000000000000000000000", ["read"]),
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
            app = create_app(parse_config(raw), run_scheduler=False)
            client = TestClient(app, headers=bearer("admin"))
            return stack.enter_context(client)

        yield make
