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
import yaml
from pydantic import ValidationError

from guard.config import ConfigError, load_config
from guard.models import RolloutRequest, Scope

app = typer.Typer(help="Deploy Guard: guarded Kubernetes rollouts.", no_args_is_help=True)
config_app = typer.Typer(help="Work with guard configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")
token_app = typer.Typer(help="Create API tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")

EXIT_PROMOTED, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
ServerOption = Annotated[str, typer.Option(envvar="GUARD_URL", help="Base URL of the guard's API")]
DEFAULT_SERVER = "http://127.0.0.1:8080"
TokenOption = Annotated[
    str | None,
    typer.Option(envvar="GUARD_TOKEN", help="API token (from `guard token create`)"),
]


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option(help="YAML config file")] = None,
    host: Annotated[str | None, typer.Option(help="Overrides server.host")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides server.port")] = None,
) -> None:
    """Run the guard: its API in this process, its engine in a child (guard.engine_process)."""
    import logging
    import signal

    from guard import heap
    from guard.engine_process import EngineProcess

    settings = _load(config)
    # Until the app installs its reload handler, a SIGHUP must not end the process (the default).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # httpx logs every request URL at INFO, credentials in a Prometheus URL included.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # APScheduler logs two lines per job run at INFO: six a second, saying nothing; its warnings
    # (a tick skipped because the last still runs) and job errors stay.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    engine = EngineProcess(settings, config)
    # Before the API's imports: a page that either process writes after the fork is copied, so
    # each loads only what it runs (the API no Kubernetes client, the engine no web framework).
    engine.start()
    try:
        import uvicorn

        from guard.api import create_app

        application = create_app(settings, engine=engine)
        heap.settle()
        # uvicorn re-raises the SIGTERM it stopped on once it has shut down: with the default
        # action this process would end there, before it stops the engine (which then dies with
        # it, its leases held) and before the exit code below. The engine has its own handler.
        signal.signal(signal.SIGTERM, _terminated)
        uvicorn.run(
            application,
            host=host or settings.server.host,
            port=port if port is not None else settings.server.port,
            log_level="info",
            access_log=settings.server.access_log,
        )
    except _Terminated:
        pass
    finally:
        engine.stop()
    if engine.exitcode:
        typer.echo(f"error: the guard's engine exited with code {engine.exitcode}", err=True)
        raise typer.Exit(1)


class _Terminated(Exception):
    """SIGTERM reached `guard serve` outside uvicorn's own handler (see `serve`)."""


def _terminated(_signum: int, _frame: object) -> None:
    raise _Terminated


@config_app.command("validate")
def config_validate(file: Path) -> None:
    """Check a config file; every mistake is printed with the path of its key."""
    _load(file)
    typer.echo(f"{file}: valid")


@token_app.command("create")
def token_create(
    scope: Annotated[list[Scope], typer.Option(help="deploy, operate or read; repeatable")],
    name: Annotated[str, typer.Option(help="Who the token is; shown in the audit log")],
) -> None:
    """Print a new token once, and the config entry holding only its hash."""
    from guard.config import TokenConfig
    from guard.tokens import new_token, token_digest

    token = new_token()
    try:
        entry = TokenConfig(name=name, sha256=token_digest(token), scopes=sorted(set(scope)))
    except ValidationError as exc:
        _bad_input(*(f"--{e['loc'][0]}: {e['msg']}" for e in exc.errors()))
    typer.echo(f"token (shown once; store it in your CI secrets): {token}")
    typer.echo("add to the guard's config (auth.tokens) or to its auth.tokens_file:")
    typer.echo(
        yaml.safe_dump(
            {"auth": {"tokens": [entry.model_dump(mode="json")]}}, sort_keys=False
        ).rstrip()
    )


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
    token: TokenOption = None,
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
    with _client(server, token) as client:
        response = _patiently(
            lambda: client.post(
                "/v1/rollouts",
                json=request.model_dump(mode="json", exclude_none=True),
                headers={"Idempotency-Key": key},
            ),
            until=time.monotonic() + min(timeout, 120),
        )
        if response is None:
            typer.echo(f"error: the guard at {server} did not answer", err=True)
            raise typer.Exit(EXIT_FAILED)
        if response.status_code in (401, 403, 409, 413, 422):
            _bad_input(*_server_errors(response))
        response.raise_for_status()
        rollout = response.json()
        typer.echo(f"rollout {rollout['id']} submitted ({request.namespace}/{request.deployment})")
        if wait:
            raise typer.Exit(_watch(client, rollout["id"], timeout))


@app.command()
def status(
    rollout_id: str, server: ServerOption = DEFAULT_SERVER, token: TokenOption = None
) -> None:
    """Print one rollout with its decisions as JSON."""
    typer.echo(json.dumps(_get(server, token, f"/v1/rollouts/{rollout_id}"), indent=2))


@app.command("list")
def list_rollouts(
    state: Annotated[str | None, typer.Option()] = None,
    namespace: Annotated[str | None, typer.Option()] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
) -> None:
    """Recent rollouts, newest first."""
    params = {k: v for k, v in {"state": state, "namespace": namespace}.items() if v}
    for rollout in _get(server, token, "/v1/rollouts", params=params):
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
        token: TokenOption = None,
    ) -> None:
        body = {k: v for k, v in {"actor": actor, "reason": reason}.items() if v}
        with _client(server, token) as client:
            response = client.post(f"/v1/rollouts/{rollout_id}/{command}", json=body)
            if response.status_code >= 400:
                _bad_input(*_server_errors(response))
        typer.echo(f"{command} requested for rollout {rollout_id}")

    run.__doc__ = f"Ask a running rollout to {command}."
    app.command(command)(run)


for _command in ("abort", "pause", "resume", "promote"):
    _control(_command)


@app.command()
def dora(
    service: Annotated[str | None, typer.Option(help="Only this service")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team")] = None,
    window: Annotated[str, typer.Option(help="Window ending now: 12h, 30d, 4w")] = "30d",
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
) -> None:
    """DORA metrics with their levels and the release KPIs, as a table."""
    params = {k: v for k, v in {"service": service, "team": team, "window": window}.items() if v}
    typer.echo(dora_table(_get(server, token, "/v1/dora", params=params)))


def dora_table(body: dict[str, Any]) -> str:
    """Render `GET /v1/dora` as text: one row per group, then the overall KPIs."""
    header = ("group", "deploys", "per day", "lead time", "CFR", "restore", "rework", "levels")
    rows = [header]
    for summary in (body["overall"], *body["by_service"], *body["by_team"]):
        levels = summary["levels"]
        rows.append(
            (
                f"{summary['scope']}:{summary['group']}" if summary["scope"] != "all" else "all",
                str(summary["deployments"]),
                f"{summary['deployment_frequency_per_day']:.2f}",
                _duration(summary["lead_time_seconds"]["median"]),
                _percent(summary["change_failure_rate"]),
                _duration(summary["time_to_restore_seconds"]["median"]),
                _percent(summary["rework_rate"]),
                "/".join(
                    (levels[k] or "-")
                    for k in ("deployment_frequency", "lead_time", "change_failure_rate")
                )
                + f"/{levels['time_to_restore'] or '-'}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.append("")
    lines.append(
        f"levels (frequency/lead time/CFR/restore): {body['benchmark']}; "
        f"window {body['window_days']:g} days"
    )
    for kpi in body["overall"]["kpis"]:
        fmt = _percent if kpi["unit"] == "ratio" else _duration
        lines.append(
            f"KPI {kpi['name']:<24} {fmt(kpi['value']):>10} ({kpi['statistic']}) "
            f"target {kpi['comparison']} {fmt(kpi['target'])}: {kpi['status']}"
        )
    return "\n".join(lines)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.1f} %"


@app.command()
def revisions(
    service: str,
    namespace: Annotated[str | None, typer.Option()] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
) -> None:
    """The current revision of a service and the last three that can be restored."""
    params = {"namespace": namespace} if namespace else None
    body = _get(server, token, f"/v1/services/{service}/revisions", params)
    typer.echo(json.dumps(body, indent=2))


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
    token: TokenOption = None,
) -> None:
    """Restore one of a service's last three revisions as a guarded rollout."""
    body = {
        "to_revision": to, "namespace": namespace, "strategy": strategy,
        "supersede": supersede, "actor": actor, "reason": reason,
    }  # fmt: skip
    with _client(server, token) as client:
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


@app.command()
def backtest(
    files: Annotated[list[Path] | None, typer.Argument(help="Scenario files (JSON)")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config with the thresholds")] = None,
    output: Annotated[str, typer.Option("--format", help="json or table")] = "json",
    from_prometheus: Annotated[str | None, typer.Option(help="Replay a past window")] = None,
    service: Annotated[str | None, typer.Option(help="Service for per-service config")] = None,
    namespace: Annotated[str | None, typer.Option(help="With --from-prometheus")] = None,
    candidate: Annotated[str | None, typer.Option(help="New version's pod-template-hash")] = None,
    baseline: Annotated[str | None, typer.Option(help="Stable version's pod-template-hash")] = None,
    start: Annotated[str | None, typer.Option(help="ISO 8601 start of the window")] = None,
    end: Annotated[str | None, typer.Option(help="ISO 8601 end of the window")] = None,
) -> None:
    """Replay recorded metrics through the guard's analyzers and policy; no cluster needed."""
    from guard import backtest as bt

    if output not in ("json", "table"):
        _bad_input(f"--format {output!r}: expected json or table")
    settings = _load(config)
    try:
        if from_prometheus:
            scenarios = [_prometheus_scenario(settings, from_prometheus, service, namespace,
                                              candidate, baseline, start, end)]  # fmt: skip
        elif files:
            scenarios = [bt.load_scenario(file, settings) for file in files]
        else:
            _bad_input("give scenario FILEs or --from-prometheus URL")
    except bt.ScenarioError as exc:
        _bad_input(str(exc))
    for scenario in scenarios:
        result = bt.replay(scenario, settings.analysis_for(scenario.service or ""))
        lines = bt.json_lines(result) if output == "json" else bt.table_lines(result)
        for line in lines:
            typer.echo(line)


def _prometheus_scenario(
    settings: Any,
    url: str,
    service: str | None,
    namespace: str | None,
    candidate: str | None,
    baseline: str | None,
    start: str | None,
    end: str | None,
) -> Any:
    import asyncio

    from guard import backtest as bt
    from guard.prometheus import PrometheusClient

    missing = [
        f"--{name}"
        for name, value in (
            ("service", service),
            ("namespace", namespace),
            ("candidate", candidate),
            ("start", start),
            ("end", end),
        )
        if not value
    ]
    if missing:
        _bad_input(f"--from-prometheus needs {', '.join(missing)}")
    assert service and namespace and candidate and start and end
    try:
        window = (datetime.fromisoformat(start), datetime.fromisoformat(end))
    except ValueError as exc:
        _bad_input(f"--start/--end: {exc}; use ISO 8601 with a time zone")
    if window[0].tzinfo is None or window[1].tzinfo is None or window[0] >= window[1]:
        _bad_input("--start/--end: need time zones and start before end")

    async def load() -> Any:
        client = PrometheusClient(url, timeout_seconds=settings.prometheus.timeout_seconds)
        try:
            return await bt.scenario_from_prometheus(
                client,
                settings.analysis_for(service),
                service=service,
                namespace=namespace,
                candidate=candidate,
                baseline=baseline,
                start=window[0],
                end=window[1],
            )
        finally:
            await client.close()

    return asyncio.run(load())


def _watch(client: httpx.Client, rollout_id: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    seen_decisions = 0
    last_line = ""
    while time.monotonic() < deadline:
        response = _patiently(lambda: client.get(f"/v1/rollouts/{rollout_id}"), until=deadline)
        if response is None or response.status_code != 200:
            break
        rollout = response.json()
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


def _patiently(send: Any, *, until: float) -> httpx.Response | None:
    """Retry while the guard restarts (connection refused, 5xx): the rollout goes on meanwhile,
    and a pipeline must not read a guard restart as a rollback. POSTs carry an Idempotency-Key,
    so a retry never starts a second rollout."""
    delay = 0.5
    while True:
        try:
            response: httpx.Response = send()
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}"
        else:
            if response.status_code < 500:
                return response
            problem = f"HTTP {response.status_code}"
        if time.monotonic() + delay > until:
            return None
        typer.echo(f"  guard unavailable ({problem}); retrying in {delay:g}s", err=True)
        time.sleep(delay)
        delay = min(delay * 2, 10.0)


def _steps(text: str) -> list[int | str]:
    """'5,20,pause,50' -> [5, 20, 'pause', 50]; the request model checks the values."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    return [int(item) if item.isdigit() else item for item in items]


def _client(server: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server, timeout=30, headers=headers)


def _get(server: str, token: str | None, path: str, params: dict[str, str] | None = None) -> Any:
    with _client(server, token) as client:
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
    if response.status_code == 401:
        return [f"HTTP 401: {detail}", "pass the token with --token or GUARD_TOKEN"]
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
