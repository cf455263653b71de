"""The pre-flight go/no-go, checked from data: no cluster, no Prometheus."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from analyzers.base import Observation, TrackSample
from guard.config import AnalysisConfig, GuardConfig, parse_config
from guard.models import ControlCommand, RolloutRequest, RolloutState, Verdict
from guard.preflight import Preflight, preflight, preflight_transition
from guard.prometheus import QueryStatus
from strategies.base import Track

from ..strategies.cluster_fixtures import OLD_HASH, stable

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
REQUEST = RolloutRequest(namespace="shop", deployment="checkout", images={"checkout": "a/b:2"})


def metrics(errors: float = 0.001, status: QueryStatus = QueryStatus.OK) -> Observation:
    """The stable track over one window: 500 requests at the given error rate, or an outage."""
    if status is not QueryStatus.OK:
        return Observation(at=NOW, window_seconds=30, candidate=None, unavailable=(("q", "down"),))
    sample = TrackSample(500.0, 500.0 * errors, latency=0.2)
    return Observation(at=NOW, window_seconds=30, candidate=sample)


def run(
    config: GuardConfig | None = None,
    request: RolloutRequest = REQUEST,
    measured: Observation | None = None,
    **changes: object,
) -> tuple[Preflight, list[Track]]:
    asked: list[Track] = []

    async def measure(track: Track) -> Observation:
        asked.append(track)
        return measured or metrics()

    deployment = replace(stable(), **changes) if changes else stable()  # type: ignore[arg-type]
    outcome = asyncio.run(
        preflight(
            request, deployment, config=config or GuardConfig(), analysis=AnalysisConfig(),
            measure=measure, now=NOW,
        )
    )  # fmt: skip
    return outcome, asked


def frozen(services: list[str] | None = None) -> GuardConfig:
    window = {
        "name": "year-end",
        "start": (NOW - timedelta(days=1)).isoformat(),
        "end": (NOW + timedelta(days=1)).isoformat(),
        "services": services or [],
    }
    return parse_config({"freeze_windows": [window]})


def test_a_healthy_target_passes_after_measuring_the_stable_track() -> None:
    outcome, asked = run()
    assert outcome.refused is None
    assert outcome.decision.verdict is Verdict.CONTINUE
    assert asked == [Track("checkout", OLD_HASH)]


def test_a_missing_or_unhealthy_target_is_refused_before_measuring() -> None:
    missing = asyncio.run(
        preflight(
            REQUEST, None, config=GuardConfig(), analysis=AnalysisConfig(),
            measure=lambda t: None, now=NOW,  # type: ignore[arg-type,return-value]
        )
    )  # fmt: skip
    assert missing.refused == "target" and "not found" in missing.decision.summary
    unhealthy, asked = run(available_replicas=2)
    assert unhealthy.refused == "target" and asked == []


def test_a_freeze_window_refuses_with_its_name_and_end() -> None:
    outcome, asked = run(frozen())
    assert outcome.refused == "freeze"
    assert "year-end" in outcome.decision.summary
    assert (NOW + timedelta(days=1)).isoformat() in outcome.decision.summary
    assert asked == []


def test_a_freeze_window_of_other_services_does_not_apply() -> None:
    outcome, _ = run(frozen(services=["payments"]))
    assert outcome.refused is None


def test_an_override_admits_and_records_the_reason() -> None:
    request = REQUEST.model_copy(update={"override_freeze": "fix for INC-1"})
    outcome, _ = run(frozen(), request=request)
    assert outcome.refused is None
    assert outcome.notes == {"freeze_override": "year-end: fix for INC-1"}
    assert "INC-1" in outcome.decision.summary


def test_a_stable_version_already_breaching_is_refused() -> None:
    outcome, _ = run(measured=metrics(errors=0.09))
    assert outcome.refused == "stable_breaching"
    assert outcome.decision.verdict is Verdict.REFUSE
    assert any(e.metric == "error_rate" and e.value == 0.09 for e in outcome.decision.evidence)


def test_one_medium_window_on_stable_is_noise_not_trouble() -> None:
    outcome, _ = run(measured=metrics(errors=0.025))  # lower bound between 1 % and 2 %
    assert outcome.refused is None
    assert "medium" in outcome.decision.summary


def test_restoring_a_revision_is_not_refused_for_a_breaching_stable() -> None:
    request = REQUEST.model_copy(update={"restore_revision": 3})
    outcome, _ = run(request=request, measured=metrics(errors=0.09))
    assert outcome.refused is None and outcome.notes["restore"] == "restoring revision 3"


def test_prometheus_not_answering_is_refused() -> None:
    outcome, _ = run(measured=metrics(status=QueryStatus.UNREACHABLE))
    assert outcome.refused == "prometheus"


def test_a_refusal_is_terminal_and_consumes_commands() -> None:
    outcome, _ = run(measured=metrics(errors=0.09))
    transition = preflight_transition(outcome, {}, [ControlCommand.PAUSE], NOW)
    assert transition.state is RolloutState.REFUSED and transition.state.terminal
    assert transition.outcome_reason == "preflight:stable_breaching"
    assert transition.consumed_commands == [ControlCommand.PAUSE]
    assert not transition.actions
