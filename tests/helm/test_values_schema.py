"""values.schema.json: a wrong value fails at install time, and `config` is the guard's schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from guard.config import ConfigError, parse_config

from .conftest import CHART, render

REPO = Path(__file__).resolve().parents[2]

# (values, the path Helm's error must name)
WRONG_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "unknown top-level key": ({"replicas": 2}, "replicas"),
    "no replicas": ({"replicaCount": 0}, "/replicaCount"),
    "typo in rbac": ({"rbac": {"clusterwide": True}}, "clusterwide"),
    "string for a boolean": ({"rbac": {"clusterWide": "yes"}}, "/rbac/clusterWide"),
    "namespace name": ({"rbac": {"namespaces": ["Shop_Prod"]}}, "/rbac/namespaces/0"),
    "port name for a number": ({"service": {"port": "http"}}, "/service/port"),
    "pull policy": ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    "secret key not a GUARD_ override": ({"secret": {"env": {"PASSWORD": "x"}}}, "PASSWORD"),
    "scrape interval": ({"serviceMonitor": {"interval": "often"}}, "/serviceMonitor/interval"),
    "budget above the one replica": (
        {"podDisruptionBudget": {"minAvailable": 2}},
        "/podDisruptionBudget/minAvailable",
    ),
    "unknown config key": ({"config": {"analysis": {"interval_secs": 5}}}, "interval_secs"),
    "config threshold out of range": (
        {"config": {"analysis": {"tiers": {"high": {"error_rate": 2}}}}},
        "/config/analysis/tiers/high/error_rate",
    ),
    "config type": ({"config": {"prometheus": {"timeout_seconds": "5s"}}}, "timeout_seconds"),
}


@pytest.mark.parametrize("case", sorted(WRONG_VALUES))
def test_wrong_value_fails_rendering_and_names_the_key(case: str) -> None:
    values, path = WRONG_VALUES[case]

    with pytest.raises(helm.HelmValuesError) as info:
        render(values)

    assert path in str(info.value)


def test_schema_config_section_is_generated_from_guard_config() -> None:
    """A key added to guard/config.py must reach the chart's schema, or installs would reject it
    (or accept one the guard rejects at start-up)."""
    check = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "chart_schema.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr


# Configs on which the chart's schema and the guard must agree. Two of the guard's rules are
# not JSON-schema expressible and are left to the guard: tiers must not decrease, and PromQL
# templates may only use known placeholders.
CONFIGS: dict[str, dict[str, Any]] = {
    "half a tier": {"analysis": {"tiers": {"high": {"error_rate": 0.03}}}},
    "per-service override": {"services": {"checkout": {"analysis": {"min_requests": 10}}}},
    "store url": {"store": {"url": "sqlite:////var/lib/deploy-guard/other.db"}},
    "kube context": {"kubernetes": {"context": "prod"}},
    "unknown section": {"alerting": {"slack": "x"}},
    "unknown service key": {"services": {"checkout": {"owner": "payments"}}},
    "per-service typo": {"services": {"checkout": {"analysis": {"min_request": 10}}}},
    "per-service type": {"services": {"checkout": {"analysis": {"tiers": {"high": 1}}}}},
    "quantile of 1": {"analysis": {"latency_quantile": 1}},
    "zero tick": {"scheduler": {"tick_seconds": 0}},
    "port out of range": {"server": {"port": 70000}},
    "fractional promote count": {"analysis": {"healthy_intervals_to_promote": 2.5}},
    "list for a mapping": {"services": ["checkout"]},
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_chart_schema_and_guard_agree_on_config(case: str) -> None:
    config = CONFIGS[case]
    try:
        parse_config(config)
        guard_accepts = True
    except ConfigError:
        guard_accepts = False
    with helm.Chart.load(CHART) as chart:
        try:
            chart.validate_schema(chart.merge_values({"config": config}))
            chart_accepts = True
        except helm.HelmValuesError:
            chart_accepts = False

    assert chart_accepts == guard_accepts, f"chart {chart_accepts}, guard {guard_accepts}"
