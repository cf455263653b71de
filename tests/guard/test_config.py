"""Configuration: defaults, strict keys with helpful paths, merges and overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from guard.cli import app
from guard.config import (
    AnalysisConfig,
    ConfigError,
    GuardConfig,
    Queries,
    Tier,
    load_config,
    parse_config,
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads os.environ; a GUARD_* variable of the developer must not leak in."""
    import os

    for key in list(os.environ):
        if key.startswith("GUARD_"):
            monkeypatch.delenv(key)


def problems_of(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return info.value.problems


def write(tmp_path: Path, text: str, name: str = "guard.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults -------------------------------------------------------------------------------


def test_default_tiers_match_the_product_spec() -> None:
    tiers = GuardConfig().analysis.tiers
    assert tiers.critical == Tier(error_rate=0.05, latency_seconds=3.0)
    assert tiers.high == Tier(error_rate=0.02, latency_seconds=2.0)
    assert tiers.medium == Tier(error_rate=0.01, latency_seconds=1.0)


def test_no_file_and_no_environment_gives_the_defaults() -> None:
    config = load_config(None, environ={})
    assert config == GuardConfig()
    assert config.analysis.tiers.critical.error_rate == 0.05
    assert config.prometheus.url == "http://127.0.0.1:9090"
    assert config.services == {}


def test_empty_yaml_file_gives_the_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), environ={}) == GuardConfig()


# --- unknown keys ---------------------------------------------------------------------------


def test_unknown_key_names_its_path_and_suggests_the_right_one() -> None:
    problems = problems_of({"prometheus": {"timout_seconds": 3}})
    assert len(problems) == 1
    assert problems[0].startswith("prometheus.timout_seconds: unknown key")
    assert "did you mean 'timeout_seconds'?" in problems[0]


def test_unknown_nested_analysis_key_suggests_the_right_one() -> None:
    problems = problems_of({"analysis": {"tiers": {"hihg": {"error_rate": 0.03}}}})
    assert len(problems) == 1
    assert problems[0].startswith("analysis.tiers.hihg: unknown key")
    assert "did you mean 'high'?" in problems[0]


def test_unknown_top_level_section_is_rejected_with_the_known_sections() -> None:
    problems = problems_of({"bogus": {}})
    assert len(problems) == 1
    assert problems[0].startswith("bogus: unknown key")
    assert problems[0].startswith("bogus: unknown key; known keys: server, store, prometheus")


def test_every_unknown_key_is_reported_at_once() -> None:
    problems = problems_of({"prometheus": {"timout_seconds": 3}, "server": {"prot": 1}})
    assert len(problems) == 2
    assert any(p.startswith("prometheus.timout_seconds: unknown key") for p in problems)
    assert any(p.startswith("server.prot: unknown key") for p in problems)


# --- bad values -----------------------------------------------------------------------------


def test_bad_value_names_its_path() -> None:
    problems = problems_of({"analysis": {"tiers": {"high": {"error_rate": "lots"}}}})
    assert len(problems) == 1
    assert problems[0].startswith("analysis.tiers.high.error_rate: ")
    assert "valid number" in problems[0]


def test_error_rate_above_one_names_its_path() -> None:
    problems = problems_of({"analysis": {"tiers": {"high": {"error_rate": 3}}}})
    assert problems == ["analysis.tiers.high.error_rate: Input should be less than or equal to 1"]


def test_partial_tier_keeps_the_default_latency() -> None:
    config = parse_config({"analysis": {"tiers": {"high": {"error_rate": 0.03}}}})
    assert config.analysis.tiers.high == Tier(error_rate=0.03, latency_seconds=2.0)
    # The other tiers and other analysis keys keep their defaults too.
    assert config.analysis.tiers.critical == Tier(error_rate=0.05, latency_seconds=3.0)
    assert config.analysis.tiers.medium == Tier(error_rate=0.01, latency_seconds=1.0)
    assert config.analysis.interval_seconds == AnalysisConfig().interval_seconds


def test_tiers_out_of_order_are_rejected() -> None:
    # high above critical
    problems = problems_of({"analysis": {"tiers": {"high": {"error_rate": 0.09}}}})
    assert len(problems) == 1
    assert problems[0].startswith("analysis.tiers: ")
    assert "must not decrease" in problems[0]


def test_latency_tiers_out_of_order_are_rejected() -> None:
    problems = problems_of({"analysis": {"tiers": {"medium": {"latency_seconds": 2.5}}}})
    assert len(problems) == 1
    assert problems[0].startswith("analysis.tiers: ")
    assert "medium <= high <= critical" in problems[0]


def test_equal_tiers_are_allowed() -> None:
    config = parse_config({"analysis": {"tiers": {"high": {"error_rate": 0.05}}}})
    assert config.analysis.tiers.high.error_rate == config.analysis.tiers.critical.error_rate


# --- per-service overrides ------------------------------------------------------------------


def test_service_override_merges_key_by_key() -> None:
    config = parse_config(
        {
            "analysis": {"min_requests": 20, "tiers": {"high": {"error_rate": 0.03}}},
            "services": {"checkout": {"analysis": {"tiers": {"critical": {"error_rate": 0.1}}}}},
        }
    )
    checkout = config.analysis_for("checkout")
    assert checkout.tiers.critical == Tier(error_rate=0.1, latency_seconds=3.0)
    # Everything not overridden comes from the global section, not from the built-in defaults.
    assert checkout.tiers.high == Tier(error_rate=0.03, latency_seconds=2.0)
    assert checkout.min_requests == 20
    # Other services, and the global section, are unaffected.
    assert config.analysis_for("payments") == config.analysis
    assert config.analysis.tiers.critical.error_rate == 0.05


def test_bad_service_override_names_the_service_path() -> None:
    problems = problems_of(
        {"services": {"checkout": {"analysis": {"tiers": {"critical": {"error_rate": "x"}}}}}}
    )
    assert len(problems) == 1
    assert problems[0].startswith("services.checkout.analysis.tiers.critical.error_rate: ")


def test_unknown_key_in_service_override_names_the_path_and_suggests() -> None:
    problems = problems_of({"services": {"checkout": {"analysis": {"min_request": 3}}}})
    assert len(problems) == 1
    assert problems[0].startswith("services.checkout.analysis.min_request: unknown key")
    assert "did you mean 'min_requests'?" in problems[0]


def test_unknown_key_in_service_section_suggests_the_right_one() -> None:
    problems = problems_of({"services": {"checkout": {"analysi": {"min_requests": 3}}}})
    assert len(problems) == 1
    assert problems[0].startswith("services.checkout.analysi: unknown key")
    assert "did you mean 'analysis'?" in problems[0]


def test_service_override_that_breaks_tier_order_is_rejected() -> None:
    problems = problems_of(
        {"services": {"checkout": {"analysis": {"tiers": {"critical": {"error_rate": 0.001}}}}}}
    )
    assert len(problems) == 1
    assert problems[0].startswith("services.checkout.analysis.tiers: ")
    assert "must not decrease" in problems[0]


# --- environment overrides ------------------------------------------------------------------


def test_environment_overrides_the_prometheus_url(tmp_path: Path) -> None:
    path = write(tmp_path, "prometheus:\n  url: http://from-file:9090\n  timeout_seconds: 7\n")
    config = load_config(path, environ={"GUARD_PROMETHEUS__URL": "http://from-env:9090"})
    assert config.prometheus.url == "http://from-env:9090"
    assert config.prometheus.timeout_seconds == 7  # the rest of the section stays


def test_environment_overrides_the_analysis_interval_as_a_number() -> None:
    config = load_config(None, environ={"GUARD_ANALYSIS__INTERVAL_SECONDS": "2.5"})
    assert config.analysis.interval_seconds == 2.5
    assert config.analysis.tiers == GuardConfig().analysis.tiers


def test_environment_override_with_a_bad_value_names_the_path() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, environ={"GUARD_ANALYSIS__INTERVAL_SECONDS": "soon"})
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("analysis.interval_seconds: ")


def test_unrelated_environment_variables_are_ignored() -> None:
    # GUARD_URL is the CLI's server option, not a config key.
    config = load_config(None, environ={"GUARD_URL": "http://x", "PATH": "/bin"})
    assert config == GuardConfig()


# --- query templates ------------------------------------------------------------------------


def test_default_queries_are_batched_templates() -> None:
    queries = Queries()
    assert queries.namespace_label == "namespace"
    assert queries.revision_label == "pod_template_hash"
    for template in (queries.requests, queries.errors, queries.latency_buckets):
        assert "{selector}" in template
        assert "{group_by}" in template
        assert "{window}" in template
    assert 'code=~"5.."' in queries.errors
    assert "le)" in queries.latency_buckets


def test_unknown_placeholder_in_a_query_template_is_rejected() -> None:
    template = "sum by ({group_by}) (up{{selector},job='{service}'})"
    problems = problems_of({"analysis": {"queries": {"latency_buckets": template}}})
    assert len(problems) == 1
    assert problems[0].startswith("analysis.queries: ")
    assert "latency_buckets: unknown placeholder {service}" in problems[0]


@pytest.mark.parametrize(
    ("missing", "template"),
    [
        ("{selector}", 'sum by ({group_by}) (increase(http_requests_total{job="x"}[{window}]))'),
        ("{group_by}", "sum(increase(http_requests_total{{selector}}[{window}]))"),
    ],
)
def test_a_template_without_selector_or_group_by_is_rejected(missing: str, template: str) -> None:
    problems = problems_of({"analysis": {"queries": {"requests": template}}})
    assert len(problems) == 1
    assert problems[0].startswith("analysis.queries: ")
    assert f"requests: must contain {missing} so rollouts can be batched" in problems[0]


def test_a_template_without_window_is_accepted() -> None:
    template = "sum by ({group_by}) (my_requests_30s{{selector}})"
    config = parse_config({"analysis": {"queries": {"requests": template}}})
    assert config.analysis.queries.requests == template


def test_label_matcher_braces_are_not_placeholders() -> None:
    template = 'sum by ({group_by}) (increase(x{{selector},job="x",code=~"5.."}[{window}]))'
    config = parse_config({"analysis": {"queries": {"errors": template}}})
    assert config.analysis.queries.errors == template


def test_custom_label_names_are_accepted() -> None:
    config = parse_config(
        {"analysis": {"queries": {"namespace_label": "k8s_ns", "revision_label": "_rev1"}}}
    )
    assert config.analysis.queries.namespace_label == "k8s_ns"
    assert config.analysis.queries.revision_label == "_rev1"


@pytest.mark.parametrize("label", ["pod-template-hash", "1abc", "", 'a"b', "ns}"])
def test_invalid_label_names_are_rejected(label: str) -> None:
    problems = problems_of({"analysis": {"queries": {"revision_label": label}}})
    assert len(problems) == 1
    assert problems[0].startswith("analysis.queries.revision_label: ")
    assert "pattern" in problems[0]


def test_unknown_query_key_suggests_the_right_one() -> None:
    problems = problems_of({"analysis": {"queries": {"request": "x"}}})
    assert len(problems) == 1
    assert problems[0].startswith("analysis.queries.request: unknown key")
    assert "did you mean 'requests'?" in problems[0]


def test_evidence_settings_have_safe_defaults_and_bounds() -> None:
    analysis = AnalysisConfig()
    assert analysis.min_requests == 20
    assert analysis.confidence == 0.99
    assert analysis.significance == 0.00003
    assert analysis.hold_alert_after_seconds == 120
    assert problems_of({"analysis": {"confidence": 1.0}})[0].startswith("analysis.confidence: ")
    assert problems_of({"analysis": {"significance": 0}})[0].startswith("analysis.significance: ")
    assert problems_of({"analysis": {"min_requests": 0}})[0].startswith("analysis.min_requests: ")


# --- YAML -----------------------------------------------------------------------------------


def test_yaml_that_is_not_a_mapping_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "- analysis\n- prometheus\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.problems == [f"{path}: the top level must be a mapping of sections"]


def test_yaml_that_does_not_parse_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "analysis: {tiers: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"{path}: not valid YAML")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.problems[0].startswith(f"{path}: cannot read")


def test_yaml_file_values_are_loaded(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "analysis:\n  tiers:\n    high: {error_rate: 0.03}\n"
        "services:\n  checkout:\n    team: payments\n"
        "    analysis: {min_requests: 10}\n",
    )
    config = load_config(path, environ={})
    assert config.analysis.tiers.high == Tier(error_rate=0.03, latency_seconds=2.0)
    assert config.services["checkout"].team == "payments"
    assert config.analysis_for("checkout").min_requests == 10


# --- CLI ------------------------------------------------------------------------------------


def test_cli_validate_accepts_a_valid_file(tmp_path: Path) -> None:
    path = write(tmp_path, "analysis:\n  tiers:\n    high: {error_rate: 0.03}\n")
    result = CliRunner().invoke(app, ["config", "validate", str(path)], env={})
    assert result.exit_code == 0, result.output
    assert f"{path}: valid" in result.stdout


def test_cli_validate_prints_every_problem_and_exits_2(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "prometheus:\n  timout_seconds: 3\nanalysis:\n  tiers:\n    high: {error_rate: lots}\n",
    )
    result = CliRunner().invoke(app, ["config", "validate", str(path)], env={})
    assert result.exit_code == 2
    assert "prometheus.timout_seconds: unknown key" in result.stderr
    assert "did you mean 'timeout_seconds'?" in result.stderr
    assert "analysis.tiers.high.error_rate: " in result.stderr
    assert "valid" not in result.stdout


def test_cli_validate_reports_unparsable_yaml_with_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "analysis: {tiers: [\n")
    result = CliRunner().invoke(app, ["config", "validate", str(path)], env={})
    assert result.exit_code == 2
    assert "not valid YAML" in result.stderr


# --- store -------------------------------------------------------------------------------------


def test_a_lease_shorter_than_three_ticks_names_both_keys_and_the_fix() -> None:
    problems = problems_of({"store": {"lease_seconds": 2}, "scheduler": {"tick_seconds": 1}})
    assert len(problems) == 1
    assert problems[0].startswith("store.lease_seconds: 2 is less than 3 ticks")
    assert "scheduler.tick_seconds is 1" in problems[0]
    assert "raise it or lower the tick" in problems[0]


def test_a_postgresql_store_url_comes_from_the_environment() -> None:
    url = "postgresql://guard:s3cret@db:5432/guard"
    config = load_config(
        None, environ={"GUARD_STORE__URL": url, "GUARD_STORE__LEASE_SECONDS": "30"}
    )
    assert config.store.resolved_url == url
    assert config.store.lease_seconds == 30
