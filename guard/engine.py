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
from datetime import datetime

import httpx

from alerts.events import Change, derive_events
from analyzers.base import Observation
from guard.clock import utcnow
from guard.cluster import ClusterNeeds, ClusterSnapshot
from guard.coalesce import Coalescer
from guard.config import AnalysisConfig, GuardConfig
from guard.kube import DeploymentSnapshot, KubeClient, KubeError, NamespaceSnapshot
from guard.measure import Measurer, MeasureRequest
from guard.metrics import GuardMetrics
from guard.models import ControlCommand, RolloutState
from guard.outbox import RoutedAlert
from guard.preflight import preflight, preflight_transition
from guard.probe import probe
from guard.prometheus import PrometheusClient
from guard.store import (
    ActiveRollout,
    Applied,
    LeaseLost,
    Store,
    new_replica_id,
    read_store,
    write_store,
)
from strategies.base import Action, AnalysisTarget, RolloutContext, Track, Transition
from strategies.registry import get_strategy

log = logging.getLogger(__name__)

Step = tuple[ActiveRollout, Transition, datetime | None]  # a transition, when it was analysed
STORE_BATCH = 25
"""Rollouts per store transaction of a tick: the API's process waits for SQLite's write lock
for one batch at most, not for a whole tick's writes."""

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
        self._coalesced_store: Coalescer[Step, None] = Coalescer(self._commit_batches)

    async def tick(self) -> None:
        """Advance all active rollouts; one failing rollout never stops the others."""
        if self._lock.locked():
            return
        async with self._lock:
            started = time.perf_counter()
            leases = await write_store(
                self.store,
                self.store.lease,
                self.replica_id,
                self.config.store.lease_seconds,
                self.clock(),
            )
            leased = list(leases.fencing_tokens)
            active: list[ActiveRollout] = []
            for start in range(0, len(leased), STORE_BATCH):
                batch = leased[start : start + STORE_BATCH]
                active += await read_store(self.store, self.store.leased, leases, batch)
            self.metrics.active_rollouts.set(len(active))
            calls_before = self.kube.calls
            resumed = [r for r in await asyncio.gather(*map(self._resume_safely, active)) if r]
            namespaces = await self._read_namespaces(resumed)
            prepared = [
                p
                for p in await asyncio.gather(
                    *(self._prepare_safely(r, namespaces[r.request.namespace]) for r in resumed)
                )
                if p
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
            await self._decide(decided)
            self.metrics.kubernetes_calls_last_tick.set(self.kube.calls - calls_before)
            self.metrics.tick_duration.observe(time.perf_counter() - started)

    async def reconfigure(self, config: GuardConfig) -> None:
        """Swap the whole config between ticks (never during one), so a tick sees one config."""
        async with self._lock:
            self.config = config

    async def _resume_safely(self, rollout: ActiveRollout) -> ActiveRollout | None:
        """Finish the actions an earlier tick committed but did not complete, before any read,
        so this tick observes their effect. None when the rollout stops here for this tick."""
        if not rollout.pending_actions:
            return rollout
        try:
            try:
                await self._execute(rollout, rollout.pending_actions)
            except KubeError as exc:
                if not exc.retryable:
                    message = f"Kubernetes refused a change and will not accept it on retry: {exc}"
                    await self._give_up(rollout, message)
                    return None
                raise
        except Exception as exc:
            await self._failed(rollout, exc)
            return None
        return replace(rollout, pending_actions=[])

    async def _read_namespaces(
        self, rollouts: list[ActiveRollout]
    ) -> dict[str, NamespaceSnapshot | KubeError]:
        """One listing per namespace for all its rollouts, with Services and HTTPRoutes only
        where some strategy there needs them: the reads a tick makes do not grow with rollouts."""
        wanted: dict[str, tuple[bool, bool]] = {}
        for rollout in rollouts:
            request = rollout.request
            try:
                needs = get_strategy(request.strategy).needs(
                    request, self.config.service(request.service_name)
                )
            except Exception:  # reported by this rollout's own preparation, not the tick's
                needs = ClusterNeeds()
            services, routes = wanted.get(request.namespace, (False, False))
            wanted[request.namespace] = (
                services or bool(needs.services),
                routes or bool(needs.httproutes),
            )

        async def read(
            namespace: str, services: bool, routes: bool
        ) -> NamespaceSnapshot | KubeError:
            try:
                return await asyncio.to_thread(
                    self.kube.read_namespace, namespace, services=services, httproutes=routes
                )
            except KubeError as exc:
                return exc

        found = await asyncio.gather(*(read(ns, *flags) for ns, flags in wanted.items()))
        return dict(zip(wanted, found, strict=True))

    async def _prepare_safely(
        self,
        rollout: ActiveRollout,
        namespace: NamespaceSnapshot | KubeError,
    ) -> Prepared | None:
        try:
            if isinstance(namespace, KubeError):
                raise namespace
            prepared = await self._prepare(rollout, namespace)
        except Exception as exc:
            await self._failed(rollout, exc)
            return None
        if prepared is None:  # stopped here this tick, with every call answered
            self._kube_failing_since.pop(rollout.id, None)
        return prepared

    async def _execute_safely(self, rollout: ActiveRollout, actions: list[Action]) -> None:
        try:
            await self._execute(rollout, actions)
        except Exception as exc:
            await self._failed(rollout, exc)
        else:
            self._kube_failing_since.pop(rollout.id, None)

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
            active = await read_store(self.store, self.store.active)
            current = next((r for r in active if r.id == rollout.id), None)
            if current is not None:
                await self._give_up(replace(current, fence=rollout.fence), message)
        except Exception as error:
            log.error("rollout %s: could not record the failure", rollout.id, exc_info=error)
            return
        self._kube_failing_since.pop(rollout.id, None)

    async def _prepare(
        self, rollout: ActiveRollout, namespace: NamespaceSnapshot
    ) -> Prepared | None:
        request = rollout.request
        deployment = namespace.deployment(request.deployment)
        config = self.config.analysis_for(request.service_name)
        if rollout.state is RolloutState.PENDING:
            gated = await self._gate(rollout, deployment, config)
            if gated is None:
                return None
            rollout = gated
        service = self.config.service(request.service_name)
        strategy = get_strategy(request.strategy)
        cluster = await self._observe(namespace, strategy.needs(request, service))
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

    async def _observe(self, namespace: NamespaceSnapshot, needs: ClusterNeeds) -> ClusterSnapshot:
        """The objects a strategy declared it needs, from this tick's listing, and its smoke
        checks, run concurrently."""
        cluster = namespace.cluster(needs)
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
            batch = MeasureRequest(rollout.id, request.namespace, target, config)
            return await self.measurer.measure_one(batch, now)

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

    async def _decide(self, prepared: list[Prepared]) -> None:
        """Every rollout's step (pure), committed in transactions of `STORE_BATCH`, then the
        actions."""
        decided_from = time.perf_counter()
        steps: list[Step] = []
        for p in prepared:
            try:
                transition = get_strategy(p.rollout.request.strategy).step(p.ctx)
            except Exception as exc:
                await self._failed(p.rollout, exc)
                continue
            steps.append(
                (p.rollout, transition, p.ctx.observation.at if p.ctx.observation else None)
            )
        stored = await self._store_many(steps)
        latency = time.perf_counter() - decided_from
        for _, _, analysed_at in stored:
            if analysed_at is not None:
                self.metrics.decision_latency.observe(latency)
        for rollout, transition, _ in stored:
            if not transition.actions:
                self._kube_failing_since.pop(rollout.id, None)
        await asyncio.gather(
            *(self._execute_safely(r, t.actions) for r, t, _ in stored if t.actions)
        )

    async def _store_many(self, steps: list[Step]) -> list[Step]:
        """Commit a tick's transitions (see `_commit_batches`); a rollout whose write fails
        alone is failed here, or, when it is the only one, its error raised. Returns the ones
        committed."""
        outcomes = await self._commit_batches(steps)
        if len(steps) == 1 and outcomes[0] is not None:
            raise outcomes[0]
        stored = []
        for step, error in zip(steps, outcomes, strict=True):
            if error is None:
                stored.append(step)
            else:
                await self._failed(step[0], error)
        return stored

    async def _commit_batches(self, steps: list[Step]) -> list[Exception | None]:
        """Commit in transactions of `STORE_BATCH` rollouts, yielding to the event loop between
        them; when one fails, each of its rollouts is tried alone, so a rollout whose write
        fails cannot hold back the others. Each step's error, or None."""
        outcomes: list[Exception | None] = []
        for start in range(0, len(steps), STORE_BATCH):
            await asyncio.sleep(0)  # a turn for the pipe and the alert sender between batches
            batch = steps[start : start + STORE_BATCH]
            try:
                await self._commit(batch)
                outcomes += [None] * len(batch)
            except Exception as exc:
                outcomes += [exc] if len(batch) == 1 else [await self._alone(s) for s in batch]
        return outcomes

    async def _alone(self, step: Step) -> Exception | None:
        try:
            await self._commit([step])
        except Exception as exc:
            return exc
        return None

    async def _commit(self, steps: list[Step]) -> None:
        """One transaction for these transitions and their alerts, then their metrics."""
        now = self.clock()
        applied = [
            Applied(r.id, t, at, tuple(self._alerts(r, t, now)), r.fence) for r, t, at in steps
        ]
        await write_store(
            self.store,
            self.store.apply_many,
            applied,
            now=now,
            alert_expiry_seconds=self.config.alerts.delivery.expire_after_seconds,
        )
        for _, transition, _ in steps:
            if transition.state.terminal:
                self.metrics.rollouts.labels(outcome=transition.state.value).inc()
        # A refused rollout changed nothing and is no deployment: no delivery metric to read.
        deployed = [
            rollout.id
            for rollout, transition, _ in steps
            if transition.state.terminal and transition.state is not RolloutState.REFUSED
        ]
        if deployed:
            await read_store(self.store, self.metrics.rollouts_ended, self.store, deployed)

    async def _store(
        self, rollout: ActiveRollout, transition: Transition, *, analysed_at: datetime | None
    ) -> None:
        """Commit one transition with its alerts.

        The rollouts of a tick are prepared concurrently, so a burst of new ones reaches their
        gates together; their writes then share one transaction, as the tick's decisions do,
        instead of a transaction each. Each caller still gets its own write's error.
        """
        await self._coalesced_store((rollout, transition, analysed_at))

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
            await write_store(
                self.store, self.store.renew, rollout.id, rollout.fence, lease, self.clock()
            )
        for action in actions:
            await asyncio.to_thread(getattr(self.kube, action.kind), **action.params)
        await write_store(self.store, self.store.actions_done, rollout.id, rollout.fence)


def _due(last: datetime | None, config: AnalysisConfig, now: datetime) -> bool:
    return last is None or (now - last).total_seconds() >= config.interval_seconds * 0.95
