"""One analysis tick over all active rollouts: observe, measure in one batch, decide, store, act.

The order is the crash-safety argument: a transition and its actions are committed before the
actions run, and cleared only after they succeed, so a restart repeats an unfinished patch
(all of them are idempotent) and never skips one.

With several replicas a tick drives only the rollouts this replica leased (`Store.claim`); every
write carries the lease's fencing token, and the lease is renewed (checked still held) right
before each batch of Kubernetes calls, so a replica that lost a rollout stops acting on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import httpx

from alerts.events import Change, derive_events
from analyzers.base import Observation
from guard.cluster import ClusterNeeds, ClusterSnapshot
from guard.config import AnalysisConfig, GuardConfig
from guard.kube import DeploymentSnapshot, KubeClient, KubeError
from guard.measure import Measurer, MeasureRequest
from guard.metrics import GuardMetrics
from guard.models import ControlCommand, RolloutState
from guard.outbox import RoutedAlert
from guard.preflight import preflight, preflight_transition
from guard.probe import probe
from guard.prometheus import PrometheusClient
from guard.store import ActiveRollout, LeaseLost, Store, new_replica_id
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


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Prepared:
    """A rollout observed in the cluster and ready to decide on this tick."""

    rollout: ActiveRollout
    ctx: RolloutContext
    target: AnalysisTarget | None
    due: bool


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
        replica_id: str | None = None,
    ) -> None:
        self.replica_id = replica_id or new_replica_id()
        self.config = config
        self.store = store
        self.kube = kube
        self.measurer = Measurer(prometheus)
        self.metrics = metrics
        self.clock = clock
        self._lock = asyncio.Lock()
        self._kube_failing_since: dict[str, datetime] = {}

    async def tick(self) -> None:
        """Advance all active rollouts; one failing rollout never stops the others."""
        if self._lock.locked():
            return
        async with self._lock:
            started = time.perf_counter()
            active = await asyncio.to_thread(
                self.store.claim, self.replica_id, self.config.store.lease_seconds, self.clock()
            )
            self.metrics.active_rollouts.set(len(active))
            prepared = [
                p for p in await asyncio.gather(*(self._prepare_safely(r) for r in active)) if p
            ]
            now = self.clock()
            measuring = [p for p in prepared if p.target is not None and p.due]
            queries_before = self.measurer.prometheus.queries_sent
            observations = await self.measurer.measure(
                [
                    MeasureRequest(
                        p.rollout.id, p.rollout.request.namespace, p.target, p.ctx.config
                    )
                    for p in measuring
                    if p.target is not None
                ],
                now,
            )
            if measuring:
                self.metrics.queries_last_tick.set(
                    self.measurer.prometheus.queries_sent - queries_before
                )
                self.metrics.analysed_last_tick.set(len(measuring))
            decided = [
                replace(p, ctx=replace(p.ctx, observation=observations.get(p.rollout.id)))
                for p in prepared
            ]
            await asyncio.gather(*(self._decide_safely(p) for p in decided))
            self.metrics.tick_duration.observe(time.perf_counter() - started)

    async def reconfigure(self, config: GuardConfig) -> None:
        """Swap the whole config between ticks (never during one), so a tick sees one config."""
        async with self._lock:
            self.config = config

    async def _prepare_safely(self, rollout: ActiveRollout) -> Prepared | None:
        try:
            prepared = await self._prepare(rollout)
        except Exception as exc:
            await self._failed(rollout, exc)
            return None
        if prepared is None:
            self._kube_failing_since.pop(rollout.id, None)
        return prepared

    async def _decide_safely(self, prepared: Prepared) -> None:
        try:
            await self._decide(prepared)
        except Exception as exc:
            await self._failed(prepared.rollout, exc)
        else:
            self._kube_failing_since.pop(prepared.rollout.id, None)

    async def _failed(self, rollout: ActiveRollout, exc: Exception) -> None:
        """Log a failed tick; a rollout whose Kubernetes calls have failed (after each call's
        own retries) for `kubernetes.give_up_after_seconds` fails and alerts.

        The clock lives in this process: a restarted guard gives a failing API a fresh period.
        """
        if isinstance(exc, LeaseLost):
            log.warning("rollout %s: another replica took it over; dropped: %s", rollout.id, exc)
            self._kube_failing_since.pop(rollout.id, None)
            return
        if not isinstance(exc, KubeError):
            log.error("rollout %s: tick failed; retrying next tick", rollout.id, exc_info=exc)
            return
        self.metrics.kubernetes_errors.inc()
        now = self.clock()
        since = self._kube_failing_since.setdefault(rollout.id, now)
        failing = (now - since).total_seconds()
        limit = self.config.kubernetes.give_up_after_seconds
        if failing < limit:
            log.warning(
                "rollout %s: Kubernetes call failed, retrying next tick (failing for %.0fs, "
                "giving up after %.0fs): %s", rollout.id, failing, limit, exc,
            )  # fmt: skip
            return
        message = (
            f"Kubernetes calls kept failing for {failing:.0f}s (kubernetes.give_up_after_seconds"
            f" = {limit:.0f}); stopped retrying, a human is needed. Last error: {exc}"
        )
        log.error("rollout %s: %s", rollout.id, message)
        try:
            # This tick may have stored a step before its action failed: fail from that one.
            active = await asyncio.to_thread(self.store.active)
            current = next((r for r in active if r.id == rollout.id), None)
            if current is not None:
                await self._give_up(replace(current, fence=rollout.fence), message)
        except Exception as error:
            log.error("rollout %s: could not record the failure", rollout.id, exc_info=error)
            return
        self._kube_failing_since.pop(rollout.id, None)

    async def _prepare(self, rollout: ActiveRollout) -> Prepared | None:
        if rollout.pending_actions:
            try:
                await self._execute(rollout, rollout.pending_actions)
            except KubeError as exc:
                if exc.retryable:
                    raise
                message = f"Kubernetes refused a change and will not accept it on retry: {exc}"
                await self._give_up(rollout, message)
                return None
        request = rollout.request
        deployment = await asyncio.to_thread(
            self.kube.read_deployment, request.namespace, request.deployment
        )
        config = self.config.analysis_for(request.service_name)
        if rollout.state is RolloutState.PENDING:
            gated = await self._gate(rollout, deployment, config)
            if gated is None:
                return None
            rollout = gated
        service = self.config.service(request.service_name)
        strategy = get_strategy(request.strategy)
        cluster = await self._observe(request.namespace, strategy.needs(request, service))
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
        return Prepared(rollout, ctx, target, _due(rollout.last_analysis_at, config, ctx.now))

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
        deployment: DeploymentSnapshot | None,
        config: AnalysisConfig,
    ) -> ActiveRollout | None:
        """Before the first change: wait for a superseded rollout, then run the pre-flight.

        Returns the rollout to hand to its strategy, or None when this tick stops here.
        """
        if ControlCommand.ABORT in rollout.commands or "preflight" in rollout.strategy_state:
            return rollout
        now = self.clock()
        if rollout.blocked_by is not None:
            blocker = rollout.blocked_by
            message = f"waiting for rollout {blocker} of the same Deployment to finish first"
            waiting = Transition(rollout.state, "waiting", rollout.strategy_state, message=message)
            await self._store(rollout, waiting, analysed_at=None)
            return None
        request = rollout.request

        async def measure(track: Track) -> Observation:
            target = AnalysisTarget(candidate=track)
            batch = [MeasureRequest(rollout.id, request.namespace, target, config)]
            return (await self.measurer.measure(batch, now))[rollout.id]

        outcome = await preflight(
            request, deployment, config=self.config, analysis=config, measure=measure, now=now
        )
        verdict = outcome.refused or "passed"
        state = {**rollout.strategy_state, "preflight": verdict, **outcome.notes}
        transition = preflight_transition(outcome, state, rollout.commands, now)
        await self._store(rollout, transition, analysed_at=None)
        if outcome.refused is not None:
            return None
        return replace(rollout, strategy_state=state)

    async def _decide(self, prepared: Prepared) -> None:
        rollout, ctx = prepared.rollout, prepared.ctx
        decided_from = time.perf_counter()
        transition = get_strategy(rollout.request.strategy).step(ctx)
        analysed_at = ctx.observation.at if ctx.observation else None
        await self._store(rollout, transition, analysed_at=analysed_at)
        if analysed_at is not None:
            self.metrics.decision_latency.observe(time.perf_counter() - decided_from)
        if transition.actions:
            await self._execute(rollout, transition.actions)

    async def _store(
        self, rollout: ActiveRollout, transition: Transition, *, analysed_at: datetime | None
    ) -> None:
        """Commit a transition with its alerts, off the event loop (SQLite may wait on a lock)."""
        now = self.clock()
        await asyncio.to_thread(
            self.store.apply,
            rollout.id,
            transition,
            analysed_at=analysed_at,
            now=now,
            alerts=self._alerts(rollout, transition, now),
            alert_expiry_seconds=self.config.alerts.delivery.expire_after_seconds,
            fence=rollout.fence,
        )
        if transition.state.terminal:
            self.metrics.rollouts.labels(outcome=transition.state.value).inc()
            await asyncio.to_thread(self.metrics.rollout_ended, self.store, rollout.id)

    async def _give_up(self, rollout: ActiveRollout, message: str) -> None:
        """Kubernetes refused a change for good (403, 404, 422), or kept failing too long: fail
        clearly and alert, rather than replaying the same patch every tick forever."""
        failed = Transition(
            state=RolloutState.FAILED,
            step="failed",
            strategy_state=rollout.strategy_state,
            message=message,
            outcome_reason="kubernetes_error",
            consumed_commands=list(rollout.commands),
            timestamps={"finished_at": self.clock()},
        )
        await self._store(rollout, failed, analysed_at=None)

    def _alerts(
        self, rollout: ActiveRollout, transition: Transition, now: datetime
    ) -> list[RoutedAlert]:
        """The alerts this transition raises, routed; the store writes them with it."""
        change = Change(
            rollout_id=rollout.id,
            request=rollout.request,
            previous_state=rollout.state,
            state=transition.state,
            step=transition.step,
            message=transition.message or "",
            decision=transition.decision,
            strategy_state=transition.strategy_state,
            now=now,
            history=rollout.alert_history,
            guard_url=self.config.alerts.guard_url,
        )
        alerts = self.config.alerts
        return [RoutedAlert(event, alerts.route(event)) for event in derive_events(change)]

    async def _execute(self, rollout: ActiveRollout, actions: list[Action]) -> None:
        """Run actions already committed, if this replica still holds the rollout."""
        for action in actions:
            if action.kind not in ALLOWED_ACTIONS:
                raise ValueError(f"unknown action {action.kind!r}")
        if rollout.fence is not None:
            lease = self.config.store.lease_seconds
            await asyncio.to_thread(
                self.store.renew, rollout.id, rollout.fence, lease, self.clock()
            )
        for action in actions:
            await asyncio.to_thread(getattr(self.kube, action.kind), **action.params)
        await asyncio.to_thread(self.store.actions_done, rollout.id, rollout.fence)


def _due(last: datetime | None, config: AnalysisConfig, now: datetime) -> bool:
    return last is None or (now - last).total_seconds() >= config.interval_seconds * 0.95
