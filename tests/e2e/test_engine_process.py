"""`guard serve` as two processes: the API (uvicorn) and the engine it forks (guard.engine_process).

Each test runs a real `guard serve` against the simulator and Prometheus and looks at the
processes from outside, through /proc, signals and the API: who is whose child, who dies with
whom, what `/readyz`, `/metrics` and the exit code say, and that SIGHUP reaches the API.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from guard.config import load_config
from guard.sim.guard_process import GuardProcess
from guard.sim.stack import SimulatedStack
from guard.store import Store
from guard.tokens import new_token, token_digest

from .conftest import GOOD, submit

T = TypeVar("T")


def _until(what: str, condition: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll `condition` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise TimeoutError(f"not seen after {timeout}s: {what}")


def _children(pid: int) -> list[int]:
    """The live children of `pid`'s main thread (the one that forks, in `guard serve`)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(child) for child in text.split() if _running(int(child))]


def _stat(pid: int) -> tuple[str, str] | None:
    """State letter and start time of `pid`, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return fields[0], fields[19]  # state, starttime


def _running(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _gone(pid: int, started: str) -> bool:
    """The process that started at `started` no longer runs (exited, a zombie, or its pid is
    some other process's now)."""
    stat = _stat(pid)
    return stat is None or stat[0] in ("Z", "X") or stat[1] != started


def _engine_pid(guard: GuardProcess) -> int:
    """The API's only child, which says in the log that it is the engine."""
    assert guard.pid is not None
    children = _children(guard.pid)
    assert len(children) == 1, f"children of the API {guard.pid}: {children}"
    engine = children[0]
    logged = _until(
        "the engine's start line",
        lambda: re.findall(r"engine \S+ started \(pid (\d+)\)", guard.log_path.read_text()),
    )
    assert logged == [str(engine)]
    return engine


def _config(stack: SimulatedStack, tmp_path: Path, promote_after: int = 1000, **extra: Any) -> Path:
    """By default rollouts stay progressing: 1000 healthy intervals to promote."""
    config = stack.guard_config(
        tmp_path / "data", interval_seconds=1, healthy_intervals_to_promote=promote_after
    )
    path = tmp_path / "guard.yaml"
    path.write_text(yaml.safe_dump({**config, **extra}), encoding="utf-8")
    return path


def _api_lease(guard: GuardProcess, rollout_id: str) -> dict[str, Any] | None:
    """Who drives the rollout, as the API shows it."""
    with guard.client() as client:
        rollout = client.get(f"/v1/rollouts/{rollout_id}").json()
    lease: dict[str, Any] | None = rollout["details"]["lease"]
    return lease


def _stored_lease(config_path: Path, rollout_id: str) -> dict[str, Any] | None:
    """Who drives the rollout, read from the store once the guard is down."""
    store = Store(load_config(config_path, {}).store.resolved_url)
    try:
        view = store.get(rollout_id)
    finally:
        store.close()
    assert not view.state.terminal  # a lease is only shown for an unfinished rollout
    lease: dict[str, Any] | None = view.details["lease"]
    return lease


def _readyz(guard: GuardProcess) -> httpx.Response | None:
    try:
        return httpx.get(f"{guard.url}/readyz", timeout=2)
    except httpx.HTTPError:
        return None


def test_the_guard_is_an_api_process_with_the_engine_as_its_one_child(
    stack: SimulatedStack, tmp_path: Path
) -> None:
    with GuardProcess(_config(stack, tmp_path), tmp_path / "guard.log") as guard:
        engine = _engine_pid(guard)
        assert engine != guard.pid


def test_sigkill_of_the_api_takes_the_engine_with_it(stack: SimulatedStack, tmp_path: Path) -> None:
    path = _config(stack, tmp_path)
    with GuardProcess(path, tmp_path / "guard.log") as guard:
        engine = _engine_pid(guard)
        stat = _stat(engine)
        assert stat is not None
        rollout_id = submit(guard, GOOD)["id"]
        held = _until("the rollout leased", lambda: _api_lease(guard, rollout_id))

        guard.kill()

        assert guard.returncode == -signal.SIGKILL
        _until("the engine gone after its API was killed", lambda: _gone(engine, stat[1]))
    # Killed with its API, as if their node had died, not stopped: it released nothing.
    stored = _stored_lease(path, rollout_id)
    assert stored is not None and stored["replica"] == held["replica"]


def test_sigkill_of_the_engine_stops_the_api_with_exit_code_1(
    stack: SimulatedStack, tmp_path: Path
) -> None:
    with GuardProcess(_config(stack, tmp_path), tmp_path / "guard.log") as guard:
        engine = _engine_pid(guard)

        os.kill(engine, signal.SIGKILL)

        def noticed() -> bool:
            if guard.returncode is not None:
                return True
            ready = _readyz(guard)
            if ready is None:  # refused: the API has closed its socket on its way out
                return False
            return ready.status_code == 503 and "engine" in ready.text

        _until("/readyz failing on the engine, or the API gone", noticed)
        assert guard.wait(timeout=30) == 1, guard.log_tail()
        log = guard.log_path.read_text()
        assert "engine process exited (code -9)" in log
        assert "error: the guard's engine exited with code -9" in log


def test_metrics_merge_the_engines_and_the_apis_in_one_exposition(
    stack: SimulatedStack, tmp_path: Path
) -> None:
    with GuardProcess(_config(stack, tmp_path, promote_after=2), tmp_path / "guard.log") as guard:
        promoted = guard.wait_for(submit(guard, GOOD)["id"])
        assert promoted["state"] == "promoted"
        opened = datetime.fromisoformat(promoted["timestamps"]["finished_at"]) + timedelta(
            minutes=5
        )
        resolved = opened + timedelta(minutes=30)
        with guard.client() as client:
            url = f"/v1/rollouts/{promoted['id']}/incident"
            assert client.post(url, json={"opened_at": opened.isoformat()}).status_code == 201
            body = {"opened_at": opened.isoformat(), "resolved_at": resolved.isoformat()}
            assert client.post(url, json=body).status_code == 200

            def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
                response = client.get("/metrics")
                assert response.status_code == 200, response.text
                families = list(text_string_to_metric_families(response.text))
                names = Counter(family.name for family in families)
                assert [n for n, count in names.items() if count > 1] == []
                samples = [
                    (sample.name, tuple(sorted(sample.labels.items())), sample.value)
                    for family in families
                    for sample in family.samples
                ]
                keys = Counter((name, labels) for name, labels, _ in samples)
                assert [key for key, count in keys.items() if count > 1] == []
                found = {(name, labels): value for name, labels, value in samples}
                ticks = found.get(("guard_tick_duration_seconds_count", ()), 0)
                return found if ticks > 0 else None

            found = _until("ticks counted in /metrics", scraped)

    checkout = (("service", "checkout"),)
    # the engine's: it promoted the rollout, and observed it
    assert found[("guard_deployments_total", (("outcome", "promoted"), *checkout))] == 1
    assert found[("guard_lead_time_seconds_count", checkout)] == 1
    # the API's: the incident it recorded and resolved
    assert found[("guard_time_to_restore_seconds_count", (*checkout, ("source", "incident")))] == 1
    assert found[("guard_time_to_restore_seconds_sum", (*checkout, ("source", "incident")))] == (
        (resolved - opened).total_seconds()
    )
    # each process's writers: the API wrote the hand-off and the incident, the engine each step
    for process in ("api", "engine"):
        labels = (("process", process),)
        assert found[("guard_store_writer_lock_holds_total", labels)] >= 2
        assert found[("guard_store_writer_lock_held_seconds_total", labels)] > 0
        assert ("guard_store_writer_lock_wait_seconds_total", labels) in found


def test_sigterm_stops_both_processes_and_the_engine_releases_its_leases(
    stack: SimulatedStack, tmp_path: Path
) -> None:
    path = _config(stack, tmp_path)
    with GuardProcess(path, tmp_path / "guard.log") as guard:
        engine = _engine_pid(guard)
        stat = _stat(engine)
        assert stat is not None
        rollout_id = submit(guard, GOOD)["id"]
        held = _until("the rollout leased", lambda: _api_lease(guard, rollout_id))
        assert held["replica"].split("-")[-2] == str(guard.pid)  # hostname-pid-random

        guard.stop()

        assert guard.returncode == 0, guard.log_tail()
        assert _gone(engine, stat[1])  # the API waited for it
    assert _stored_lease(path, rollout_id) is None  # another guard may take it over at once


def test_sighup_brings_the_reloaded_tokens_file_to_the_api(
    stack: SimulatedStack, tmp_path: Path
) -> None:
    """The tokens file is read by the API; only SIGHUP reloads it, as the config file itself
    does not change (the engine's reloader polls that one)."""
    tokens_file = tmp_path / "tokens.yaml"
    tokens_file.write_text("[]\n", encoding="utf-8")
    path = _config(stack, tmp_path, auth={"tokens_file": str(tokens_file)})
    token = new_token()
    with GuardProcess(path, tmp_path / "guard.log") as guard, guard.client(token) as client:
        assert client.get("/v1/rollouts").status_code == 401
        entry = {"name": "late-reader", "sha256": token_digest(token), "scopes": ["read"]}
        tokens_file.write_text(yaml.safe_dump([entry]), encoding="utf-8")

        guard.hangup()

        _until("the new token accepted", lambda: client.get("/v1/rollouts").status_code == 200)
        with guard.client() as admin:
            assert admin.get("/v1/rollouts").status_code == 200  # the environment's stay
