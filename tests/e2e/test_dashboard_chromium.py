"""`/dashboard` in headless Chromium: the figures shown are the API's, and a screenshot is saved.

The page has no script, so Chromium's `--dump-dom` (the DOM after layout) and `--screenshot`
are enough: no DevTools client needed. The guard runs as a real `guard serve` process on a store
holding four weeks of history. Chromium signs in as a person would: a local page posts a read
token to `/dashboard/login` (a form, so the token is never in a URL), and the cookie it gets
back carries the browser on to the dashboard.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from guard.models import RolloutState
from guard.records import IncidentRequest, record_incident
from guard.sim.guard_process import GuardProcess
from guard.sim.history import finished_rollout
from guard.store import Store

KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
    "users": [{"name": "u", "user": {"token": "t"}}],
    "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
    "current-context": "x",
}
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: scripts/bootstrap installs it")
        pytest.skip("chromium not installed (scripts/bootstrap installs it)")
    return found


def seed(data_dir: Path) -> None:
    """Four weeks: checkout (payments) deploys most days and fails now and then; search
    (discovery) deploys weekly and never fails."""
    store = Store(f"sqlite:///{data_dir / 'guard.db'}")
    now = datetime.now(UTC)
    for day in range(27, 0, -1):
        started = now - timedelta(days=day, hours=3)
        failing = day % 6 == 0
        finished_rollout(
            store,
            started=started,
            state=RolloutState.ROLLED_BACK if failing else RolloutState.PROMOTED,
            minutes=6 + day % 5,
            bad_after=3 if failing else None,
            lead=timedelta(hours=2 + day % 7),
        )
        if day % 7 == 0:
            finished_rollout(
                store,
                started=started + timedelta(hours=1),
                state=RolloutState.PROMOTED,
                minutes=4,
                deployment="search",
                lead=timedelta(days=1, hours=day),
            )
    promoted = finished_rollout(
        store, started=now - timedelta(hours=5), state=RolloutState.PROMOTED, minutes=8
    )
    opened = now - timedelta(hours=4)
    body = IncidentRequest(opened_at=opened, resolved_at=opened + timedelta(minutes=50))
    record_incident(store, promoted, body)
    store.close()


@pytest.fixture
def seeded_guard(tmp_path: Path) -> GuardProcess:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    seed(data_dir)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(KUBECONFIG), encoding="utf-8")
    config = {
        "store": {"data_dir": str(data_dir)},
        "kubernetes": {"kubeconfig": str(kubeconfig)},
        "services": {"checkout": {"team": "payments"}, "search": {"team": "discovery"}},
    }
    path = tmp_path / "guard.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return GuardProcess(path, tmp_path / "guard.log", tokens={"viewer": ["read"]})


def sign_in_page(guard: GuardProcess, directory: Path) -> str:
    """A local page that submits the sign-in form at once; the guard redirects to /dashboard."""
    page = directory / "sign-in.html"
    page.write_text(
        f"<form method='post' action='{guard.url}/dashboard/login'>"
        f"<input name='token' value='{guard.tokens['viewer']}'></form>"
        "<script>document.forms[0].submit()</script>",
        encoding="utf-8",
    )
    return page.as_uri()


def browse(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            binary,
            *CHROMIUM_FLAGS,
            "--virtual-time-budget=10000",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )


def shown(dom: str) -> dict[str, str]:
    """Tile metric -> the raw value the page carries next to what it displays."""
    pattern = r'data-metric="([a-z_]+)">.*?class="value" data-value="([^"]*)">([^<]*)<'
    return {metric: raw for metric, raw, _text in re.findall(pattern, dom)}


def test_dashboard_shows_the_api_figures_in_chromium(
    seeded_guard: GuardProcess, tmp_path: Path
) -> None:
    binary = chromium()
    with seeded_guard as guard, guard.client() as client:
        overall = client.get("/v1/dora").json()["overall"]
        signed_out = browse(
            binary, tmp_path / "profile-out", "--dump-dom", f"{guard.url}/dashboard"
        )
        url = sign_in_page(guard, tmp_path)
        dom = browse(binary, tmp_path / "profile-dom", "--dump-dom", url).stdout
        screenshot = tmp_path / "dashboard.png"
        browse(
            binary,
            tmp_path / "profile-shot",
            f"--screenshot={screenshot}",
            "--window-size=1400,1900",
            url,
        )

    assert 'action="/dashboard/login"' in signed_out.stdout
    assert "data-metric" not in signed_out.stdout
    assert 'action="/dashboard/logout"' in dom
    values = shown(dom)
    assert float(values["deployment_frequency_per_day"]) == overall["deployment_frequency_per_day"]
    assert float(values["lead_time_median_seconds"]) == overall["lead_time_seconds"]["median"]
    assert float(values["change_failure_rate"]) == overall["change_failure_rate"]
    restore = overall["time_to_restore_seconds"]["median"]
    assert float(values["time_to_restore_median_seconds"]) == restore
    assert float(values["rework_rate"]) == overall["rework_rate"]
    levels = re.findall(r'data-level="([a-z ]+)"', dom)
    assert levels[:4] == [
        overall["levels"][k] or "no level"
        for k in ("deployment_frequency", "lead_time", "change_failure_rate", "time_to_restore")
    ]
    assert dom.count("<svg") == 4
    assert dom.count("/report?format=html") == 20
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 20_000  # a rendered page, not a blank one
