"""The `guard` command: run the service, hand off a release, watch it, validate config.

Exit codes are part of the contract with CD pipelines: 0 promoted, 1 rolled back, aborted or
failed, 2 bad input (nothing was started).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import ValidationError

from guard.config import ConfigError, load_config
from guard.models import RolloutRequest

app = typer.Typer(help="Deploy Guard: guarded Kubernetes rollouts.", no_args_is_help=True)
config_app = typer.Typer(help="Work with guard configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")

EXIT_PROMOTED, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
ServerOption = Annotated[str, typer.Option(envvar="GUARD_URL", help="Base URL of the guard's API")]
DEFAULT_SERVER = "http://127.0.0.1:8080"


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option(help="YAML config file")] = None,
    host: Annotated[str | None, typer.Option(help="Overrides server.host")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides server.port")] = None,
) -> None:
    """Run the guard's API and scheduler."""
    import logging

    import uvicorn

    from guard.api import create_app

    settings = _load(config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        create_app(settings),
        host=host or settings.server.host,
        port=port if port is not None else settings.server.port,
        log_level="info",
    )


@config_app.command("validate")
def config_validate(file: Path) -> None:
    """Check a config file; every mistake is printed with the path of its key."""
    _load(file)
    typer.echo(f"{file}: valid")


@app.command()
def deploy(
    namespace: Annotated[str, typer.Option(help="Namespace of the Deployment")],
    deployment: Annotated[str, typer.Option(help="Deployment name")],
    image: Annotated[list[str], typer.Option(help="CONTAINER=IMAGE, repeatable")],
    strategy: Annotated[str, typer.Option(help="rolling, canary or bluegreen")] = "rolling",
    steps: Annotated[
        str | None, typer.Option(help="Canary weights, e.g. 5,20,pause,50 (default: config)")
    ] = None,
    override_freeze: Annotated[
        str | None, typer.Option(help="Reason to deploy during a freeze window (recorded)")
    ] = None,
    supersede: Annotated[
        bool, typer.Option(help="Roll back the rollout in flight for this Deployment first")
    ] = False,
    service: Annotated[str | None, typer.Option(help="Service name for per-service config")] = None,
    commit_sha: Annotated[str | None, typer.Option(help="Commit being deployed")] = None,
    commit_time: Annotated[str | None, typer.Option(help="ISO 8601 commit time")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Defaults to a new UUID")] = None,
    wait: Annotated[
        bool, typer.Option(help="Wait for the outcome; exit 1 unless promoted")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait")] = 3600.0,
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """Hand a release to the guard."""
    images: dict[str, str] = {}
    for item in image:
        container, sep, reference = item.partition("=")
        if not sep:
            _bad_input(
                f"--image {item!r}: expected CONTAINER=IMAGE, e.g. checkout=registry/checkout:1.4.2"
            )
        images[container] = reference
    try:
        request = RolloutRequest(
            namespace=namespace,
            deployment=deployment,
            images=images,
            strategy=strategy,
            service=service,
            commit_sha=commit_sha,
            commit_time=datetime.fromisoformat(commit_time) if commit_time else None,
            steps=_steps(steps) if steps else None,
            override_freeze=override_freeze,
            supersede=supersede,
        )
    except ValidationError as exc:
        _bad_input(*(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    except ValueError as exc:
        _bad_input(f"commit_time: {exc}")
    key = idempotency_key or str(uuid.uuid4())
    with httpx.Client(base_url=server, timeout=30) as client:
        response = client.post(
            "/v1/rollouts",
            json=request.model_dump(mode="json", exclude_none=True),
            headers={"Idempotency-Key": key},
        )
        if response.status_code in (409, 422):
            _bad_input(*_server_errors(response))
        response.raise_for_status()
        rollout = response.json()
        typer.echo(f"rollout {rollout['id']} submitted ({request.namespace}/{request.deployment})")
        if wait:
            raise typer.Exit(_watch(client, rollout["id"], timeout))


@app.command()
def status(rollout_id: str, server: ServerOption = DEFAULT_SERVER) -> None:
    """Print one rollout with its decisions as JSON."""
    typer.echo(json.dumps(_get(server, f"/v1/rollouts/{rollout_id}"), indent=2))


@app.command("list")
def list_rollouts(
    state: Annotated[str | None, typer.Option()] = None,
    namespace: Annotated[str | None, typer.Option()] = None,
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """Recent rollouts, newest first."""
    params = {k: v for k, v in {"state": state, "namespace": namespace}.items() if v}
    for rollout in _get(server, "/v1/rollouts", params=params):
        request = rollout["request"]
        typer.echo(
            f"{rollout['id']}  {rollout['state']:<12} {request['namespace']}/"
            f"{request['deployment']}  {rollout['timestamps']['submitted_at']}"
        )


ActorOption = Annotated[
    str | None, typer.Option(envvar="USER", help="Who asks (recorded); default $USER")
]
ReasonOption = Annotated[str | None, typer.Option(help="Why (recorded with the command)")]


def _control(command: str) -> None:
    def run(
        rollout_id: str,
        actor: ActorOption = None,
        reason: ReasonOption = None,
        server: ServerOption = DEFAULT_SERVER,
    ) -> None:
        body = {k: v for k, v in {"actor": actor, "reason": reason}.items() if v}
        with httpx.Client(base_url=server, timeout=30) as client:
            response = client.post(f"/v1/rollouts/{rollout_id}/{command}", json=body)
            if response.status_code >= 400:
                _bad_input(*_server_errors(response))
        typer.echo(f"{command} requested for rollout {rollout_id}")

    run.__doc__ = f"Ask a running rollout to {command}."
    app.command(command)(run)


for _command in ("abort", "pause", "resume", "promote"):
    _control(_command)


@app.command()
def revisions(
    service: str,
    namespace: Annotated[str | None, typer.Option()] = None,
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """The current revision of a service and the last three that can be restored."""
    params = {"namespace": namespace} if namespace else None
    typer.echo(json.dumps(_get(server, f"/v1/services/{service}/revisions", params), indent=2))


@app.command()
def rollback(
    service: str,
    to: Annotated[int, typer.Option("--to", help="Revision to restore (see `guard revisions`)")],
    namespace: Annotated[str | None, typer.Option()] = None,
    strategy: Annotated[str | None, typer.Option(help="Default: the last rollout's")] = None,
    supersede: Annotated[bool, typer.Option(help="Roll back a rollout in flight first")] = False,
    actor: ActorOption = None,
    reason: ReasonOption = None,
    wait: Annotated[bool, typer.Option(help="Wait for the outcome")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait")] = 3600.0,
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """Restore one of a service's last three revisions as a guarded rollout."""
    body = {
        "to_revision": to, "namespace": namespace, "strategy": strategy,
        "supersede": supersede, "actor": actor, "reason": reason,
    }  # fmt: skip
    with httpx.Client(base_url=server, timeout=30) as client:
        response = client.post(
            f"/v1/services/{service}/rollback",
            json={k: v for k, v in body.items() if v is not None},
        )
        if response.status_code >= 400:
            _bad_input(*_server_errors(response))
        rollout = response.json()
        typer.echo(f"rollout {rollout['id']} restores revision {to} of {service}")
        if wait:
            raise typer.Exit(_watch(client, rollout["id"], timeout))


@app.command()
def demo(
    scrape_interval: Annotated[float, typer.Option(help="Prometheus scrape interval, s")] = 1.0,
    analysis_interval: Annotated[float, typer.Option(help="Analysis interval, s")] = 2.0,
) -> None:
    """A good and a bad release per strategy on a simulated cluster with a real Prometheus."""
    from guard.demo import run_demo

    raise typer.Exit(run_demo(scrape_interval=scrape_interval, analysis_interval=analysis_interval))


def _watch(client: httpx.Client, rollout_id: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    seen_decisions = 0
    last_line = ""
    while time.monotonic() < deadline:
        rollout = client.get(f"/v1/rollouts/{rollout_id}").json()
        for decision in rollout["decisions"][seen_decisions:]:
            typer.echo(f"  decision {decision['verdict']:<12} {decision['summary']}")
        seen_decisions = len(rollout["decisions"])
        line = f"{rollout['state']}: {rollout['step']} - {rollout['message']}"
        if line != last_line:
            typer.echo(line)
            last_line = line
        if rollout["state"] in ("promoted", "rolled_back", "aborted", "failed", "refused"):
            return EXIT_PROMOTED if rollout["state"] == "promoted" else EXIT_FAILED
        time.sleep(1.0)
    typer.echo(f"gave up waiting after {timeout:g}s; the rollout goes on", err=True)
    return EXIT_FAILED


def _steps(text: str) -> list[int | str]:
    """'5,20,pause,50' -> [5, 20, 'pause', 50]; the request model checks the values."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    return [int(item) if item.isdigit() else item for item in items]


def _get(server: str, path: str, params: dict[str, str] | None = None) -> Any:
    with httpx.Client(base_url=server, timeout=30) as client:
        response = client.get(path, params=params)
        if response.status_code >= 400:
            _bad_input(*_server_errors(response))
        return response.json()


def _server_errors(response: httpx.Response) -> list[str]:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return [f"HTTP {response.status_code}: {response.text[:300]}"]
    if isinstance(detail, list):
        return [f"{'.'.join(map(str, d.get('loc', [])[1:]))}: {d.get('msg')}" for d in detail]
    return [f"HTTP {response.status_code}: {detail}"]


def _load(path: Path | None) -> Any:
    try:
        return load_config(path, os.environ)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from exc


def _bad_input(*lines: str) -> Any:
    for line in lines:
        typer.echo(f"error: {line}", err=True)
    sys.stderr.flush()
    raise typer.Exit(EXIT_BAD_INPUT)
