"""Replay recorded metrics through the live guard's analyzers and policy.

SREs try new thresholds on past incidents before trusting them; the replay must therefore judge
exactly as the live guard does (`analyzers.policy.evaluate`), with no cluster and no Prometheus.
Input is the shared scenario format (`deploy-guard/scenario/v1`) or a window of Prometheus data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeGuard

from analyzers.base import Observation, TrackSample
from analyzers.policy import PolicyState, evaluate
from guard.config import AnalysisConfig, GuardConfig, Queries
from guard.measure import monotonic_buckets, render, selector_for, track_queries
from guard.models import Evidence, Severity, Verdict
from guard.prometheus import PrometheusClient, QueryStatus, RangeResult

FORMAT = "deploy-guard/scenario/v1"
STRATEGIES = ("canary", "bluegreen", "rolling")
TRACKS = ("canary", "baseline")
QUANTILE_KEYS = ("p50", "p90", "p95", "p99")
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class ScenarioError(ValueError):
    """A scenario that cannot be replayed; the message names the sample and the field."""


@dataclass(frozen=True)
class Interval:
    """One analysis interval of a scenario: at most one sample per track."""

    t: float
    candidate: TrackSample | None
    baseline: TrackSample | None


@dataclass(frozen=True)
class Scenario:
    name: str
    service: str | None
    strategy: str
    interval_seconds: float
    intervals: list[Interval]


@dataclass(frozen=True)
class Step:
    t: float
    verdict: Verdict
    severity: Severity
    summary: str
    reasons: list[Evidence]


@dataclass
class Replay:
    """Every interval's verdict and how the rollout would have ended."""

    scenario: Scenario
    steps: list[Step] = field(default_factory=list)
    outcome: str = "undecided"
    decided_at: float | None = None


def load_scenario(path: Path, config: GuardConfig) -> Scenario:
    """Read and validate a scenario; its service picks the latency quantile from `config`."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{path}: not JSON: {exc.msg} at line {exc.lineno}") from exc
    service = raw.get("service") if isinstance(raw, dict) else None
    quantile = config.analysis_for(service if isinstance(service, str) else "").latency_quantile
    return parse_scenario(raw, source=str(path), quantile=quantile)


def parse_scenario(raw: Any, *, source: str, quantile: float = 0.99) -> Scenario:
    """Validate everything up front, so a replay never stops half-way on bad data."""
    if not isinstance(raw, dict):
        raise ScenarioError(f"{source}: the top level must be an object")
    if raw.get("format") != FORMAT:
        raise ScenarioError(f"{source}: format: expected {FORMAT!r}, got {raw.get('format')!r}")
    strategy = raw.get("strategy")
    if strategy not in STRATEGIES:
        raise ScenarioError(f"{source}: strategy: expected one of {', '.join(STRATEGIES)}")
    interval = raw.get("interval_seconds")
    if not _number(interval) or interval <= 0:
        raise ScenarioError(f"{source}: interval_seconds: expected a positive number")
    samples = raw.get("samples")
    if not isinstance(samples, list) or not samples:
        raise ScenarioError(f"{source}: samples: expected a non-empty list")
    service = raw.get("service")
    if service is not None and not isinstance(service, str):
        raise ScenarioError(f"{source}: service: expected a string")
    intervals = list(_intervals(samples, source, quantile))
    return Scenario(str(raw.get("name", source)), service, strategy, float(interval), intervals)


def replay(scenario: Scenario, config: AnalysisConfig) -> Replay:
    """Judge interval by interval until the policy rolls back or promotes."""
    result = Replay(scenario)
    state = PolicyState()
    healthy = 0
    for interval in scenario.intervals:
        observation = Observation(
            at=EPOCH + timedelta(seconds=interval.t),
            window_seconds=scenario.interval_seconds,
            candidate=interval.candidate,
            baseline=interval.baseline,
        )
        evaluation = evaluate(observation, state, config)
        state = evaluation.state
        verdict = evaluation.verdict
        healthy = healthy + 1 if verdict is Verdict.CONTINUE else 0
        if healthy >= config.healthy_intervals_to_promote:
            verdict = Verdict.PROMOTE
        summary = "; ".join([evaluation.result.summary, *evaluation.notes])
        result.steps.append(
            Step(
                interval.t, verdict, evaluation.result.severity, summary, evaluation.result.evidence
            )
        )
        if verdict in (Verdict.ROLLBACK, Verdict.PROMOTE):
            result.outcome = "rolled_back" if verdict is Verdict.ROLLBACK else "promoted"
            result.decided_at = interval.t
            break
    return result


def json_lines(result: Replay) -> Iterator[str]:
    for step in result.steps:
        reasons = [r.model_dump(mode="json", exclude_none=True) for r in step.reasons]
        yield json.dumps(
            {
                "t": step.t,
                "verdict": step.verdict.value,
                "severity": step.severity.value,
                "summary": step.summary,
                "reasons": reasons,
            }
        )
    yield json.dumps({"outcome": result.outcome, "decided_at": result.decided_at})


def table_lines(result: Replay) -> Iterator[str]:
    scenario = result.scenario
    yield f"{scenario.name} ({scenario.strategy}, every {scenario.interval_seconds:g}s)"
    for step in result.steps:
        yield f"  t={step.t:>6g}  {step.verdict.value:<12} {step.severity.value:<8} {step.summary}"
    decided = f" at t={result.decided_at:g}" if result.decided_at is not None else ""
    yield f"  outcome: {result.outcome}{decided}"


def _intervals(samples: list[Any], source: str, quantile: float) -> Iterable[Interval]:
    by_t: dict[float, dict[str, TrackSample]] = {}
    previous_t = -math.inf
    for index, sample in enumerate(samples):
        where = f"{source}: samples[{index}]"
        if not isinstance(sample, dict):
            raise ScenarioError(f"{where}: expected an object")
        t, track, parsed = _sample(sample, where, quantile)
        if t < previous_t:
            raise ScenarioError(f"{where}.t: {t:g} comes after t={previous_t:g}; sort samples by t")
        previous_t = t
        tracks = by_t.setdefault(t, {})
        if track in tracks:
            raise ScenarioError(f"{where}.track: a second {track!r} sample at t={t:g}")
        tracks[track] = parsed
    for t, tracks in by_t.items():
        yield Interval(t, tracks.get("canary"), tracks.get("baseline"))


def _sample(sample: dict[str, Any], where: str, quantile: float) -> tuple[float, str, TrackSample]:
    t = _count(sample, "t", where)
    track = sample.get("track")
    if track not in TRACKS:
        raise ScenarioError(f"{where}.track: expected 'canary' or 'baseline', got {track!r}")
    requests, errors = _count(sample, "requests", where), _count(sample, "errors", where)
    if errors > requests:
        raise ScenarioError(f"{where}.errors: {errors:g} errors > {requests:g} requests")
    latency = _latency(sample.get("latency_seconds"), where, quantile)
    buckets = _buckets(sample.get("latency_buckets"), where)
    return t, track, TrackSample(requests, errors, latency, buckets)


def _count(sample: dict[str, Any], name: str, where: str) -> float:
    value = sample.get(name)
    if not _number(value) or value < 0:
        raise ScenarioError(f"{where}.{name}: expected a number >= 0, got {value!r}")
    return float(value)


def _latency(raw: Any, where: str, quantile: float) -> float | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}.latency_seconds: expected an object of quantiles")
    for key, value in raw.items():
        if key not in QUANTILE_KEYS:
            raise ScenarioError(f"{where}.latency_seconds.{key}: expected one of {QUANTILE_KEYS}")
        if not _number(value) or value < 0:
            raise ScenarioError(f"{where}.latency_seconds.{key}: expected seconds >= 0")
    value = raw.get(f"p{round(quantile * 100)}")
    return float(value) if value is not None else None


def _buckets(raw: Any, where: str) -> tuple[tuple[float, float], ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or "+Inf" not in raw:
        raise ScenarioError(f"{where}.latency_buckets: expected an object with a '+Inf' bucket")
    parsed = []
    for key, count in raw.items():
        try:
            bound = math.inf if key == "+Inf" else float(key)
        except ValueError:
            raise ScenarioError(f"{where}.latency_buckets.{key}: not a number") from None
        if not _number(count) or count < 0:
            raise ScenarioError(f"{where}.latency_buckets.{key}: expected a count >= 0")
        parsed.append((bound, float(count)))
    parsed.sort()
    for (bound, count), (_, previous) in zip(parsed[1:], parsed, strict=False):
        if count < previous:
            raise ScenarioError(f"{where}.latency_buckets.{bound:g}: counts must not decrease")
    return tuple(parsed)


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


async def scenario_from_prometheus(
    client: PrometheusClient,
    config: AnalysisConfig,
    *,
    service: str,
    namespace: str,
    candidate: str,
    baseline: str | None,
    start: datetime,
    end: datetime,
) -> Scenario:
    """Rebuild a scenario from a past window, one interval per analysis interval.

    The same batched templates as the live guard, evaluated with range queries: one request per
    metric for the whole window.
    """
    queries = config.queries
    keys = [(namespace, candidate)] + ([(namespace, baseline)] if baseline else [])
    selector = selector_for(queries, keys)
    group_by = f"{queries.namespace_label}, {queries.revision_label}"
    window = f"{config.interval_seconds:g}s"
    step = config.interval_seconds
    results = {}
    for metric in ("requests", "errors", "latency_buckets"):
        text = render(getattr(queries, metric), selector=selector, group_by=group_by, window=window)
        answer = await client.query_range(text, start=start, end=end, step_seconds=step)
        if answer.status in (QueryStatus.UNREACHABLE, QueryStatus.QUERY_ERROR):
            raise ScenarioError(f"--from-prometheus: {metric} query failed: {answer.error}")
        results[metric] = answer
    points = _points(results, queries, namespace, config.interval_seconds)
    origin = start.timestamp()
    intervals = [
        Interval(
            t=round(ts - origin, 3),
            candidate=points.get((ts, candidate)),
            baseline=points.get((ts, baseline)) if baseline else None,
        )
        for ts in sorted({ts for ts, _ in points})
    ]
    if not intervals:
        raise ScenarioError(f"--from-prometheus: no data for {namespace}/{candidate} in the window")
    name = f"{service} {start.isoformat()}..{end.isoformat()}"
    return Scenario(name, service, "rolling", step, intervals)


def _points(
    results: dict[str, RangeResult], queries: Queries, namespace: str, window_seconds: float
) -> dict[tuple[float, str], TrackSample]:
    labels = (queries.namespace_label, queries.revision_label)
    counts: dict[str, dict[tuple[float, str], float]] = {"requests": {}, "errors": {}}
    buckets: dict[tuple[float, str], dict[float, float]] = {}
    for metric in ("requests", "errors"):
        for series_labels, values in results[metric].series:
            for ts, value in values:
                counts[metric][(ts, series_labels.get(labels[1], ""))] = value
    for series_labels, values in results["latency_buckets"].series:
        bound = float(series_labels.get("le", "+Inf"))
        for ts, value in values:
            buckets.setdefault((ts, series_labels.get(labels[1], "")), {})[bound] = value
    samples = {}
    for key, requests in counts["requests"].items():
        if math.isnan(requests):
            continue
        errors = min(counts["errors"].get(key, 0.0), requests)
        cumulative = monotonic_buckets(sorted(buckets.get(key, {}).items()))
        evidence_queries = track_queries(queries, window_seconds, (namespace, key[1]))
        samples[key] = TrackSample(requests, errors, None, cumulative or None, evidence_queries)
    return samples
