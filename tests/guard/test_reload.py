"""Config hot reload: what is applied, what is refused and why, and the alerts it raises."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from guard.audit import AuditAction
from guard.config import GuardConfig, load_config
from guard.reload import ConfigReloader, changed_keys, check
from guard.store import Store

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _write(path: Path, raw: dict[str, Any] | str) -> Path:
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw), encoding="utf-8")
    return path


def _base(tmp_path: Path, **analysis: Any) -> dict[str, Any]:
    return {
        "store": {"data_dir": str(tmp_path / "data")},
        "analysis": {"interval_seconds": 2, **analysis},
    }


def test_changed_keys_are_dotted_leaf_paths() -> None:
    old = {"analysis": {"tiers": {"high": {"error_rate": 0.02}}, "interval_seconds": 2}}
    new = {"analysis": {"tiers": {"high": {"error_rate": 0.03}}, "interval_seconds": 2}}
    assert changed_keys(old, new) == ["analysis.tiers.high.error_rate"]


def test_a_valid_file_is_accepted_with_what_changed(tmp_path: Path) -> None:
    path = _write(tmp_path / "g.yaml", _base(tmp_path))
    current = load_config(path, {})
    _write(path, _base(tmp_path, healthy_intervals_to_promote=7))

    outcome = check(current, path, {})

    assert outcome.config is not None and not outcome.problems
    assert outcome.config.analysis.healthy_intervals_to_promote == 7
    assert outcome.changed == ["analysis.healthy_intervals_to_promote"]


def test_an_invalid_file_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "g.yaml", _base(tmp_path))
    current = load_config(path, {})
    _write(path, _base(tmp_path, tiers={"critical": {"error_rate": 7}}))

    outcome = check(current, path, {})

    assert outcome.config is None
    assert any(p.startswith("analysis.tiers.critical.error_rate") for p in outcome.problems)


def test_what_is_read_only_at_start_is_refused_with_that_reason(tmp_path: Path) -> None:
    path = _write(tmp_path / "g.yaml", _base(tmp_path))
    current = load_config(path, {})
    raw = _base(tmp_path, healthy_intervals_to_promote=7)
    raw["server"] = {"port": 9999}
    raw["store"]["url"] = "sqlite:////elsewhere.db"
    _write(path, raw)

    outcome = check(current, path, {})

    assert outcome.config is None
    assert outcome.problems == [
        "server.port: only read when the guard starts; restart the guard to change it",
        "store.url: only read when the guard starts; restart the guard to change it",
    ]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'guard.db'}")


def test_reloader_applies_refuses_alerts_and_honours_sighup(tmp_path: Path, store: Store) -> None:
    path = _write(tmp_path / "g.yaml", _base(tmp_path))
    applied: list[GuardConfig] = []

    async def apply(config: GuardConfig) -> None:
        applied.append(config)

    reloader = ConfigReloader(
        path, load_config(path, {}), apply=apply, store=store, clock=lambda: NOW,
        environ={},
    )  # fmt: skip

    async def scenario() -> None:
        assert await reloader.run_once() is None  # unchanged: nothing to do

        _write(path, "analysis: [not, a, mapping")
        refused = await reloader.run_once()
        assert refused is not None and refused.config is None
        assert applied == [] and reloader.config.analysis.healthy_intervals_to_promote == 3

        _write(path, _base(tmp_path, healthy_intervals_to_promote=5))
        accepted = await reloader.run_once()
        assert accepted is not None and accepted.config is not None
        assert [c.analysis.healthy_intervals_to_promote for c in applied] == [5]

        assert await reloader.run_once() is None
        reloader.request()  # SIGHUP with the file as it is
        again = await reloader.run_once()
        assert again is not None and again.changed == []
        assert len(applied) == 2

    asyncio.run(scenario())

    alerts = store.outbox.list()
    assert [(a.kind, a.rollout_id, a.receiver) for a in reversed(alerts)] == [
        ("config_refused", "", "log"),
        ("config_reloaded", "", "log"),
    ]
    refused_alert = alerts[-1]
    assert "not valid YAML" in refused_alert.summary
    assert refused_alert.severity == "high"

    audit = list(reversed(store.audit_entries(action=AuditAction.CONFIG_RELOAD)))
    assert [(e.actor, e.reason) for e in audit] == [
        ("config file change", "refused"),
        ("config file change", "applied"),
        ("SIGHUP", "applied"),
    ]
    assert audit[0].details["problems"] and audit[1].details["changed"]
