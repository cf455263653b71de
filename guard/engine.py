"""One analysis tick over all active rollouts: observe, decide, store, then act.

The order is the crash-safety argument: a transition and its actions are committed before the
actions run, and cleared only after they succeed, so a restart repeats an unfinished patch
(all of them are idempotent) and never skips one.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import httpx

from alerts.base import RolloutEvent
from alerts.registry import NOTIFIERS
from analyzers.base import AnalysisResult, Observation, TrackMetrics
from analyzers.registry import get_analyzer
from guard.cluster import ClusterNeeds, ClusterSnapshot
from guard.config import AnalysisConfig, GuardConfig
from guard.kube import DeploymentSnapshot, KubeClient, KubeError
from guard.metrics import GuardMetrics
from guard.models import ControlCommand, RolloutState
from guard.preflight import preflight, preflight_transition
from guard.probe import probe
from guard.prometheus import PrometheusClient, QueryResult, QueryStatus
from guard.store import ActiveRollout, Store
from strategies.base import Action, AnalysisTarget, RolloutContext, Track, Transition
from strategies.registry import get_strategy

log = logging.getLogger(__name__)

ALLOWED_ACTIONS = frozenset(
    {
        "set_images",
        "restore_template",
        "set_paused",
        "apply_deployment",
        "scale_deployment",
        "delete_deployment",
        "set_service_selector",
        "apply_service",
        "delete_service",
        "set_route_weights",
    }
)
ALERTED_STATES = frozenset(
    {RolloutState.ROLLING_BACK, RolloutState.ROLLED_BACK, RolloutState.FAILED}
)
_PLACEHOLDER = re.compile(r"\{(namespace|workload|revision|window|quantile)\}")


def utcnow() -> datetime:
    return datetime.now(UTC)


def render_query(template: str, values: dict[str, str]) -> str:
    """Substitute placeholders; values are escaped for a PromQL double-quoted string."""

    def substitute(match: re.Match[str]) -> str:
        value = values[match.group(1)]
        return value.replace("\\", "\\\\").replace('"', '\\"')

    return _PLACEHOLDER.sub(substitute, template)


class Engine:
    """Drives every unfinished rollout one step per tick."""

    def __init__(
        self,
        config: GuardConfig,
        store: Store,
        kube: KubeClient,
        prometheus: PrometheusClient,
        metrics: GuardMetrics,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.store = store
        self.kube = kube
        self.prometheus = prometheus
        self.metrics = metrics
        self.clock = clock
        self._lock = asyncio.Lock()

    async def tick(self) -> None:
        """Advance all active rollouts; one failing rollout never stops the others."""
        if self._lock.locked():
            return
        async with self._lock:
            started = time.perf_counter()
            active = self.store.active()
            self.metrics.active_rollouts.set(len(active))
            await asyncio.gather(*(self._advance_safely(r, _blocker(r, active)) for r in active))
            self.metrics.tick_duration.observe(time.perf_counter() - started)

    async def _advance_safely(self, rollout: ActiveRollout, blocker: str | None = None) -> None:
        try:
            await self._advance(rollout, blocker)
        except KubeError as exc:
            self.metrics.kubernetes_errors.inc()
            log.warning(
                "rollout %s: Kubernetes call failed, retrying next tick: %s", rollout.id, exc
            )
        except Exception:
            log.exception("rollout %s: tick failed; retrying next tick", rollout.id)

    async def _advance(self, rollout: ActiveRollout, blocker: str | None = None) -> None:
        if rollout.pending_actions:
            await self._execute(rollout.id, rollout.pending_actions)
        request = rollout.request
        deployment = await asyncio.to_thread(
            self.kube.read_deployment, request.namespace, request.deployment
        )
        config = self.config.analysis_for(request.service_name)
        if rollout.state is RolloutState.PENDING:
            gated = await self._gate(rollout, blocker, deployment, config)
            if gated is None:
                return
            rollout = gated
        service = self.config.service(request.service_name)
        strategy = get_strategy(request.strategy)
        needs = strategy.needs(request, service)
        cluster = await self._observe(request.namespace, needs)
        ctx = RolloutContext(
            rollout_id=rollout.id,
            request=request,
            state=rollout.state,
            step=rollout.step,
            strategy_state=rollout.strategy_state,
            commands=rollout.commands,
            now=self.clock(),
            config=config,
            deployment=deployment,
            service=service,
            cluster=cluster,
            command_notes=rollout.command_notes,
        )
        target = strategy.analysis_target(ctx)
        analysis_started = time.perf_counter()
        analysed_at = None
        if target is not None and _due(rollout.last_analysis_at, config, ctx.now):
            analysis = await self._analyse(target, request.namespace, config, ctx.now)
            ctx = replace(ctx, analysis=analysis, analysis_at=ctx.now)
            analysed_at = ctx.now
        transition = strategy.step(ctx)
        self.store.apply(rollout.id, transition, analysed_at=analysed_at, now=self.clock())
        if analysed_at is not None:
            self.metrics.decision_latency.observe(time.perf_counter() - analysis_started)
        if transition.state.terminal:
            self.metrics.rollouts.labels(outcome=transition.state.value).inc()
        if transition.state is not rollout.state and transition.state in ALERTED_STATES:
            self._notify(rollout, transition)
        if transition.actions:
            await self._execute(rollout.id, transition.actions)

    async def _observe(self, namespace: str, needs: ClusterNeeds) -> ClusterSnapshot:
        """The objects and smoke checks a strategy declared it needs, read concurrently."""
        cluster = (
            await asyncio.to_thread(self.kube.read_cluster, namespace, needs)
            if needs
            else ClusterSnapshot()
        )
        if not needs.probes:
            return cluster
        async with httpx.AsyncClient(timeout=self.config.prometheus.timeout_seconds) as client:
            results = await asyncio.gather(*(probe(client, url) for url in needs.probes))
        return replace(cluster, probes={r.url: r for r in results})

    async def _gate(
        self,
        rollout: ActiveRollout,
        blocker: str | None,
        deployment: DeploymentSnapshot | None,
        config: AnalysisConfig,
    ) -> ActiveRollout | None:
        """Before the first change: wait for a superseded rollout, then run the pre-flight.

        Returns the rollout to hand to its strategy, or None when this tick stops here.
        """
        if ControlCommand.ABORT in rollout.commands or "preflight" in rollout.strategy_state:
            return rollout
        now = self.clock()
        if blocker is not None:
            message = f"waiting for rollout {blocker} of the same Deployment to finish first"
            waiting = Transition(rollout.state, "waiting", rollout.strategy_state, message=message)
            self.store.apply(rollout.id, waiting, analysed_at=None, now=now)
            return None
        request = rollout.request

        async def measure(track: Track) -> TrackMetrics:
            return await self.measure_track(request.namespace, track, config, now)

        outcome = await preflight(
            request, deployment, config=self.config, analysis=config, measure=measure, now=now
        )
        verdict = outcome.refused or "passed"
        state = {**rollout.strategy_state, "preflight": verdict, **outcome.notes}
        transition = preflight_transition(outcome, state, rollout.commands, now)
        self.store.apply(rollout.id, transition, analysed_at=None, now=self.clock())
        if outcome.refused is not None:
            self.metrics.rollouts.labels(outcome=transition.state.value).inc()
            return None
        return replace(rollout, strategy_state=state)

    def _notify(self, rollout: ActiveRollout, transition: Transition) -> None:
        event = RolloutEvent(
            rollout_id=rollout.id,
            request=rollout.request,
            state=transition.state,
            message=transition.message or "",
            decision=transition.decision,
        )
        for notifier in NOTIFIERS.values():
            try:
                notifier.notify(event)
            except Exception:
                log.exception("notifier %s failed for rollout %s", notifier.name, rollout.id)

    async def _execute(self, rollout_id: str, actions: list[Action]) -> None:
        for action in actions:
            if action.kind not in ALLOWED_ACTIONS:
                raise ValueError(f"unknown action {action.kind!r}")
            await asyncio.to_thread(getattr(self.kube, action.kind), **action.params)
        self.store.actions_done(rollout_id)

    async def _analyse(
        self, target: AnalysisTarget, namespace: str, config: AnalysisConfig, now: datetime
    ) -> AnalysisResult:
        candidate = await self.measure_track(namespace, target.candidate, config, now)
        observation = Observation(at=now, window_seconds=config.window_seconds, candidate=candidate)
        return get_analyzer("thresholds").analyze(observation, config)

    async def measure_track(
        self, namespace: str, track: Track, config: AnalysisConfig, now: datetime
    ) -> TrackMetrics:
        """Request count, error rate and latency of one version's pods over the window."""
        values = {
            "namespace": namespace,
            "workload": track.workload,
            "revision": track.revision,
            "window": f"{config.window_seconds:g}s",
            "quantile": f"{config.latency_quantile:g}",
        }
        queries = config.queries
        results = await asyncio.gather(
            *(
                self.prometheus.query_scalar(render_query(template, values), at=now)
                for template in (queries.request_count, queries.error_rate, queries.latency)
            )
        )
        for result in results:
            self._count_error(result)
        return TrackMetrics(request_count=results[0], error_rate=results[1], latency=results[2])

    def _count_error(self, result: QueryResult) -> None:
        if result.status in (QueryStatus.UNREACHABLE, QueryStatus.QUERY_ERROR):
            self.metrics.query_errors.labels(kind=result.status.value).inc()


def _blocker(rollout: ActiveRollout, active: list[ActiveRollout]) -> str | None:
    """An earlier unfinished rollout of the same Deployment (one being superseded), if any."""
    if rollout.state is not RolloutState.PENDING:
        return None
    for other in active:
        same = (other.request.namespace, other.request.deployment) == (
            rollout.request.namespace,
            rollout.request.deployment,
        )
        if other.id != rollout.id and same and _earlier(other, rollout):
            return other.id
    return None


def _earlier(a: ActiveRollout, b: ActiveRollout) -> bool:
    if a.submitted_at is None or b.submitted_at is None:
        return False
    return (a.submitted_at, a.id) < (b.submitted_at, b.id)


def _due(last: datetime | None, config: AnalysisConfig, now: datetime) -> bool:
    return last is None or (now - last).total_seconds() >= config.interval_seconds * 0.95
