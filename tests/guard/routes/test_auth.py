"""Tokens, scopes, ownership, the audit log and the request limits, on an in-process app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from guard.cli import app as cli
from guard.config import AuthConfig, ConfigError, parse_config
from guard.models import Scope
from guard.tokens import TokenBook, token_digest

SECRETS = {
    name: f"dg_{name}-token-for-tests-".ljust(48, "0")
    for name in ("admin", "ci", "ci-other", "ops", "reader")
}
TOKENS = {name: (token,) for name, token in SECRETS.items()}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRETS[name]}"}


BODY = {"namespace": "shop", "deployment": "checkout", "images": {"checkout": "reg/checkout:1.2"}}


@pytest.fixture
def client(
    make_client: Callable[..., TestClient], tokens: dict[str, tuple[str, list[str]]]
) -> TestClient:
    assert {name: token for name, (token, _) in tokens.items()} == SECRETS
    return make_client()


def submit(client: TestClient, token: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/v1/rollouts", json={**BODY, **extra}, headers=bearer(token))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer dg_wrong"}, {"Authorization": "Basic eDp5"}],
    ids=["none", "unknown", "not-bearer"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/rollouts"),
        ("GET", "/v1/rollouts/nope"),
        ("POST", "/v1/rollouts"),
        ("POST", "/v1/rollouts/nope/abort"),
        ("GET", "/v1/audit"),
        ("GET", "/v1/dora"),
        ("GET", "/openapi.json"),
        ("GET", "/no/such/path"),
    ],
)
def test_without_a_known_token_everything_is_401(
    client: TestClient, method: str, path: str, headers: dict[str, str]
) -> None:
    client.headers.pop("Authorization")
    response = client.request(method, path, headers=headers, json=BODY)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "nope" not in response.text


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/dashboard/login"])
def test_probes_metrics_and_sign_in_need_no_token(client: TestClient, path: str) -> None:
    client.headers.pop("Authorization")
    assert client.get(path).status_code == 200


def test_read_token_reads_but_cannot_change(client: TestClient) -> None:
    rollout = submit(client, "ci")
    client.post(f"/v1/rollouts/{rollout['id']}/pause", headers=bearer("ci"))
    history = [
        h["message"]
        for h in client.get(f"/v1/rollouts/{rollout['id']}").json()["details"]["history"]
    ]
    assert "pause requested by ci" in history
    reader = bearer("reader")
    assert client.get(f"/v1/rollouts/{rollout['id']}", headers=reader).status_code == 200
    assert client.get("/v1/audit", headers=reader).status_code == 200
    for path in ("/v1/rollouts", f"/v1/rollouts/{rollout['id']}/abort"):
        response = client.post(path, json=BODY, headers=reader)
        assert response.status_code == 403
        assert "'reader'" in response.json()["detail"]


def test_wrong_scope_is_403_whether_or_not_the_rollout_exists(client: TestClient) -> None:
    rollout = submit(client, "ci")
    reader = bearer("reader")
    existing = client.post(f"/v1/rollouts/{rollout['id']}/abort", headers=reader)
    missing = client.post("/v1/rollouts/00000000-0000-0000-0000-000000000000/abort", headers=reader)
    assert existing.status_code == missing.status_code == 403
    assert existing.json() == missing.json()


def test_deploy_token_controls_its_own_rollouts_only(client: TestClient) -> None:
    mine = submit(client, "ci")
    theirs = submit(client, "ci-other", namespace="pay")
    pause = client.post(f"/v1/rollouts/{mine['id']}/pause", headers=bearer("ci"))
    assert pause.status_code == 200 and pause.json()["pending_commands"] == ["pause"]
    other = client.post(f"/v1/rollouts/{theirs['id']}/pause", headers=bearer("ci"))
    missing_id = "00000000-0000-0000-0000-000000000000"
    missing = client.post(f"/v1/rollouts/{missing_id}/pause", headers=bearer("ci"))
    assert other.status_code == missing.status_code == 404
    assert other.json()["detail"].replace(theirs["id"], missing_id) == missing.json()["detail"]
    assert client.get(f"/v1/rollouts/{theirs['id']}").json()["pending_commands"] == []


def test_operate_token_controls_any_rollout_but_cannot_submit(client: TestClient) -> None:
    rollout = submit(client, "ci")
    response = client.post(
        f"/v1/rollouts/{rollout['id']}/abort",
        json={"actor": "alice", "reason": "wrong build"},
        headers=bearer("ops"),
    )
    assert response.status_code == 200
    history = [h["message"] for h in response.json()["details"]["history"]]
    assert "abort requested by alice: wrong build" in history
    assert client.post("/v1/rollouts", json=BODY, headers=bearer("ops")).status_code == 403


def test_deploy_token_may_not_supersede_anothers_rollout(client: TestClient) -> None:
    submit(client, "ci")
    response = client.post(
        "/v1/rollouts",
        json={**BODY, "images": {"checkout": "reg/checkout:1.3"}, "supersede": True},
        headers=bearer("ci-other"),
    )
    assert response.status_code == 409
    assert "operate" in response.json()["detail"]
    assert submit(client, "ci", images={"checkout": "reg/checkout:1.3"}, supersede=True)


def test_rollout_records_its_submitter(client: TestClient) -> None:
    rollout = submit(client, "ci")
    assert rollout["submitted_by"] == "ci"


def test_changes_are_audited_with_who_what_and_why(client: TestClient) -> None:
    rollout = submit(client, "ci", override_freeze="hotfix for INC-7", commit_sha="9f2c1e7")
    client.post(
        f"/v1/rollouts/{rollout['id']}/pause", json={"reason": "look"}, headers=bearer("ops")
    )
    entries = client.get("/v1/audit").json()
    assert [(e["actor"], e["action"], e["target"], e["reason"]) for e in entries] == [
        ("ops", "pause", rollout["id"], "look"),
        ("ci", "freeze_override", rollout["id"], "hotfix for INC-7"),
        ("ci", "submit", rollout["id"], None),
    ]
    assert entries[2]["details"]["commit_sha"] == "9f2c1e7"
    assert entries[2]["details"]["images"] == BODY["images"]
    only_ops = client.get("/v1/audit", params={"actor": "ops"}).json()
    assert [e["action"] for e in only_ops] == ["pause"]
    pauses = client.get("/v1/audit", params={"action": "pause", "limit": 5}).json()
    assert len(pauses) == 1
    later = client.get("/v1/audit", params={"since": "2999-01-01T00:00:00Z"}).json()
    assert later == []
    naive = client.get("/v1/audit", params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422 and naive.json()["detail"][0]["loc"] == ["query", "since"]
    overflow = client.get("/v1/audit", params={"since": "0001-01-01T00:00:00+01:00"})
    assert overflow.status_code == 422 and "out of range" in overflow.text


def test_times_that_do_not_exist_in_utc_are_422_not_500(client: TestClient) -> None:
    response = client.post(
        "/v1/rollouts", json={**BODY, "commit_time": "0001-01-01T00:00:00+05:00"}
    )
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][-1] == "commit_time"


def test_an_idempotent_replay_is_not_audited_twice(client: TestClient) -> None:
    headers = {**bearer("ci"), "Idempotency-Key": "build-7"}
    assert client.post("/v1/rollouts", json=BODY, headers=headers).status_code == 201
    assert client.post("/v1/rollouts", json=BODY, headers=headers).status_code == 200
    assert len(client.get("/v1/audit").json()) == 1


def test_store_audit_records_changes_made_elsewhere(client: TestClient) -> None:
    from guard.audit import AuditAction

    store = client.app.state.services.store  # type: ignore[attr-defined]
    store.audit(actor="sighup", action=AuditAction.CONFIG_RELOAD, target="guard.yaml")
    assert client.get("/v1/audit").json()[0]["action"] == "config_reload"


def test_large_bodies_are_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(server={"max_body_bytes": 2048})
    big = {**BODY, "labels": {f"k{i}": "v" * 60 for i in range(40)}}
    response = client.post("/v1/rollouts", json=big)
    assert response.status_code == 413
    assert "max_body_bytes" in response.json()["detail"]

    def chunks() -> Any:
        yield b'{"namespace": "shop", "x": "'
        for _ in range(10):
            yield b"y" * 512
        yield b'"}'

    streamed = client.post(
        "/v1/rollouts", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ({"team": "has space"}, "label value"),
        ({"team": "x" * 64}, "label value"),
        ({"bad key!": "v"}, "label key"),
        ({"-lead/x": "v"}, "label key"),
    ],
)
def test_labels_follow_kubernetes_rules(
    client: TestClient, labels: dict[str, str], problem: str
) -> None:
    response = client.post("/v1/rollouts", json={**BODY, "labels": labels})
    assert response.status_code == 422
    assert problem in response.text


def test_valid_labels_are_taken(client: TestClient) -> None:
    labels = {"team": "payments", "example.com/tier": "web_1.2", "empty": ""}
    assert submit(client, "ci", labels=labels)["request"]["labels"] == labels


def test_openapi_declares_the_bearer_scheme_and_error_answers(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    submit_op = schema["paths"]["/v1/rollouts"]["post"]
    assert submit_op["security"] == [{"token": []}]
    assert {"401", "403", "409", "413", "422"} <= set(submit_op["responses"])
    assert "security" not in schema["paths"]["/healthz"]["get"]


def test_dashboard_sign_in_sets_a_cookie_that_only_reads(client: TestClient) -> None:
    client.headers.pop("Authorization")
    page = client.get("/dashboard", headers={"accept": "text/html"})
    assert page.status_code == 401 and "<form method='post' action='/dashboard/login'>" in page.text
    wrong = client.post("/dashboard/login", data={"token": "dg_nope"}, follow_redirects=False)
    assert wrong.status_code == 401
    signed = client.post(
        "/dashboard/login", data={"token": TOKENS["admin"][0]}, follow_redirects=False
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/dashboard"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and TOKENS["admin"][0] in cookie
    assert client.get("/dashboard").status_code == 200
    assert client.get("/v1/rollouts").status_code == 200
    assert client.post("/v1/rollouts", json=BODY).status_code == 401
    client.post("/dashboard/logout", follow_redirects=False)
    assert client.get("/v1/rollouts").status_code == 401


def test_token_create_prints_the_token_once_and_a_config_entry() -> None:
    result = CliRunner().invoke(
        cli, ["token", "create", "--scope", "deploy", "--scope", "read", "--name", "ci"]
    )
    assert result.exit_code == 0, result.output
    token = result.output.split("secrets): ")[1].split()[0]
    assert token.startswith("dg_") and len(token) == 46
    snippet = yaml.safe_load(result.output.split("auth.tokens_file:\n")[1])
    entry = snippet["auth"]["tokens"][0]
    assert entry == {"name": "ci", "sha256": token_digest(token), "scopes": ["deploy", "read"]}
    assert result.output.count(token) == 1
    config = parse_config(snippet)
    principal = TokenBook.from_config(config.auth).authenticate(token)
    assert principal is not None and principal.name == "ci"


def test_token_create_rejects_a_bad_name_naming_the_option() -> None:
    result = CliRunner().invoke(cli, ["token", "create", "--scope", "read", "--name", "Bad Name"])
    assert result.exit_code == 2
    assert "--name" in result.output


def test_tokens_file_adds_tokens_and_its_mistakes_name_the_file(tmp_path: Path) -> None:
    good = tmp_path / "tokens.yaml"
    entry = {"name": "ops", "sha256": token_digest("dg_x"), "scopes": ["operate"]}
    good.write_text(yaml.safe_dump([entry]), encoding="utf-8")
    book = TokenBook.from_config(AuthConfig(tokens_file=good))
    principal = book.authenticate("dg_x")
    assert principal is not None and principal.can(Scope.READ) and principal.can(Scope.OPERATE)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump([{"name": "ops", "sha256": "abc", "scopes": []}]), "utf-8")
    with pytest.raises(ConfigError) as error:
        TokenBook.from_config(AuthConfig(tokens_file=bad))
    assert any("bad.yaml" in p and "sha256" in p for p in error.value.problems)


def test_config_rejects_duplicate_token_names() -> None:
    twice = {"name": "ci", "sha256": "0" * 64, "scopes": ["read"]}
    with pytest.raises(ConfigError, match="used twice"):
        parse_config({"auth": {"tokens": [twice, {**twice, "sha256": "1" * 64}]}})


def test_replacing_the_apps_token_book_takes_effect_at_once(client: TestClient) -> None:
    """What a config reload does: the next request is judged by the new tokens."""
    from guard.config import TokenConfig

    app: Any = client.app
    app.state.tokens = TokenBook(
        [TokenConfig(name="new", sha256=token_digest("dg_new"), scopes=[Scope.READ])]
    )
    assert client.get("/v1/rollouts").status_code == 401
    assert client.get("/v1/rollouts", headers={"Authorization": "Bearer dg_new"}).status_code == 200
