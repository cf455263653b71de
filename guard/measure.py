"""Batched measurement: one PromQL query per metric per tick, for every rollout at once.

Argo Rollouts and Flagger send one query per metric per rollout per interval; at a thousand
rollouts that is the bottleneck. Here every version being judged in a tick goes into one label
selector, Prometheus groups the answer by namespace and pod-template-hash, and the results are
fanned out to each rollout.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from analyzers.base import Observation, TrackSample
from guard.config import AnalysisConfig, Queries
from guard.prometheus import PrometheusClient, QueryStatus, VectorResult
from strategies.base import AnalysisTarget, Track

_PLACEHOLDER = re.compile(r"\{(selector|group_by|window)\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
METRICS = ("requests", "errors", "latency_buckets")
TrackKey = tuple[str, str]  # (namespace, pod-template-hash)


@dataclass(frozen=True)
class MeasureRequest:
    """One rollout that wants its versions measured this tick."""

    rollout_id: str
    namespace: str
    target: AnalysisTarget
    config: AnalysisConfig


def render(template: str, *, selector: str, group_by: str, window: str) -> str:
    values = {"selector": selector, "group_by": group_by, "window": window}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def selector_for(queries: Queries, tracks: Iterable[TrackKey]) -> str:
    """Label matchers for these versions; one version gets exact matchers, several a regex."""
    keys = sorted(set(tracks))
    namespaces = sorted({ns for ns, _ in keys})
    revisions = sorted({rev for _, rev in keys})
    return ",".join(
        (_matcher(queries.namespace_label, namespaces), _matcher(queries.revision_label, revisions))
    )


def track_queries(queries: Queries, window_seconds: float, key: TrackKey) -> dict[str, str]:
    """The exact queries for one version, to show as evidence and re-run by hand."""
    selector = selector_for(queries, [key])
    group_by = f"{queries.namespace_label}, {queries.revision_label}"
    window = _window(window_seconds)
    return {
        metric: render(
            getattr(queries, metric), selector=selector, group_by=group_by, window=window
        )
        for metric in METRICS
    }


@dataclass(frozen=True)
class GroupAnswer:
    """One batch's answers, parsed once and looked up per version."""

    requests: dict[TrackKey, float]
    errors: dict[TrackKey, float]
    buckets: dict[TrackKey, tuple[tuple[float, float], ...]]
    failed: tuple[tuple[str, str], ...]


class Measurer:
    """Sends the batched queries and builds each rollout's Observation."""

    def __init__(self, prometheus: PrometheusClient) -> None:
        self.prometheus = prometheus
        self._waiting: list[tuple[MeasureRequest, asyncio.Future[Observation]]] = []
        self._sending: set[asyncio.Future[None]] = set()  # referenced until done

    async def measure_one(self, request: MeasureRequest, at: datetime) -> Observation:
        """One rollout's measurement, batched with every other asked for in the same pass of
        the event loop (a tick's pre-flights start together), at the first caller's time.

        Without it, a thousand rollouts submitted at once cost three queries each, and the
        connection pool's queue times them out.
        """
        future: asyncio.Future[Observation] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, future))
        if len(self._waiting) == 1:
            asyncio.get_running_loop().call_soon(self._flush, at)
        return await future

    def _flush(self, at: datetime) -> None:
        waiting, self._waiting = self._waiting, []

        async def send() -> None:
            try:
                found = await self.measure([r for r, _ in waiting], at)
            except Exception as exc:
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(exc)
                return
            for request, future in waiting:
                if not future.done():
                    future.set_result(found[request.rollout_id])

        task = asyncio.ensure_future(send())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def measure(self, requests: list[MeasureRequest], at: datetime) -> dict[str, Observation]:
        groups: dict[tuple[Queries, float], list[MeasureRequest]] = defaultdict(list)
        for request in requests:
            groups[(request.config.queries, request.config.window_seconds)].append(request)
        observations: dict[str, Observation] = {}
        answers = await asyncio.gather(
            *(
                self._query_group(queries, window, members, at)
                for (queries, window), members in groups.items()
            )
        )
        for ((queries, window), members), answer in zip(groups.items(), answers, strict=True):
            for request in members:
                observations[request.rollout_id] = _observation(
                    request, queries, window, answer, at
                )
        return observations

    async def _query_group(
        self, queries: Queries, window: float, members: list[MeasureRequest], at: datetime
    ) -> GroupAnswer:
        keys = [key for member in members for key in _keys(member)]
        selector = selector_for(queries, keys)
        group_by = f"{queries.namespace_label}, {queries.revision_label}"
        texts = {
            metric: render(
                getattr(queries, metric),
                selector=selector,
                group_by=group_by,
                window=_window(window),
            )
            for metric in METRICS
        }
        results = await asyncio.gather(
            *(self.prometheus.query_vector(text, at=at) for text in texts.values())
        )
        answers = dict(zip(texts, results, strict=True))
        labels = (queries.namespace_label, queries.revision_label)
        return GroupAnswer(
            requests=_values(answers["requests"], labels),
            errors=_values(answers["errors"], labels),
            buckets=_buckets(answers["latency_buckets"], labels),
            failed=tuple(
                (r.query, r.error)
                for r in results
                if r.status in (QueryStatus.UNREACHABLE, QueryStatus.QUERY_ERROR)
            ),
        )


def _observation(
    request: MeasureRequest,
    queries: Queries,
    window: float,
    answer: GroupAnswer,
    at: datetime,
) -> Observation:
    if answer.failed:
        return Observation(at=at, window_seconds=window, candidate=None, unavailable=answer.failed)
    target = request.target
    baseline = target.baseline
    return Observation(
        at=at,
        window_seconds=window,
        candidate=_sample(queries, window, answer, _key(request.namespace, target.candidate)),
        baseline=_sample(queries, window, answer, _key(request.namespace, baseline))
        if baseline
        else None,
    )


def _sample(
    queries: Queries, window: float, answer: GroupAnswer, key: TrackKey
) -> TrackSample | None:
    requests = answer.requests.get(key)
    if requests is None:
        return None
    errors = answer.errors.get(key, 0.0)
    return TrackSample(
        requests=requests,
        errors=min(errors, requests),
        latency_buckets=answer.buckets.get(key),
        queries=track_queries(queries, window, key),
    )


def _values(result: VectorResult, labels: tuple[str, str]) -> dict[TrackKey, float]:
    values: dict[TrackKey, float] = {}
    for metric, value in result.series:
        key = (metric.get(labels[0], ""), metric.get(labels[1], ""))
        values[key] = values.get(key, 0.0) + value
    return values


def _buckets(
    result: VectorResult, labels: tuple[str, str]
) -> dict[TrackKey, tuple[tuple[float, float], ...]]:
    grouped: dict[TrackKey, dict[float, float]] = defaultdict(dict)
    for metric, value in result.series:
        key = (metric.get(labels[0], ""), metric.get(labels[1], ""))
        grouped[key][float(metric.get("le", "+Inf"))] = value
    return {key: monotonic_buckets(sorted(bounds.items())) for key, bounds in grouped.items()}


def monotonic_buckets(buckets: list[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """increase() extrapolates each bucket alone; make the cumulative counts non-decreasing."""
    fixed, highest = [], 0.0
    for bound, count in buckets:
        highest = max(highest, 0.0 if math.isnan(count) else count)
        fixed.append((bound, highest))
    return tuple(fixed)


def _keys(request: MeasureRequest) -> list[TrackKey]:
    tracks = [request.target.candidate, request.target.baseline]
    return [_key(request.namespace, track) for track in tracks if track is not None]


def _key(namespace: str, track: Track) -> TrackKey:
    return (namespace, track.revision)


def _matcher(label: str, values: list[str]) -> str:
    too_long = next((v for v in values if len(v) > MAX_LABEL_VALUE), None)
    if too_long is not None:  # longer than any Kubernetes name: refused rather than sent
        raise ValueError(f"label value too long for a selector: {too_long[:40]!r}...")
    if len(values) == 1:
        return f'{label}="{_escape(values[0])}"'
    alternatives = "|".join(re.escape(value) for value in values)
    return f'{label}=~"{_escape(alternatives)}"'


MAX_LABEL_VALUE = 253


def _escape(value: str) -> str:
    """`value` as the inside of a PromQL double-quoted string: backslash, quote and control
    characters escaped (a raw newline would end the query's string), so no value can close the
    string and add matchers or operators."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", escaped)


def _window(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms" if seconds % 1 else f"{seconds:g}s"
