"""The engine in a process of its own, beside the API's.

A Python process computes on one core at a time. Sharing one, a tick's work on hundreds of new
rollouts held hand-offs up (500 a second: p99 65-230 ms), and a busy API could hold up a tick's
rollback decisions; now each has its own interpreter. `guard serve` forks the engine right
after reading its config, before any thread or event loop starts, and before the heavy imports:
a page either process writes after the fork is copied (Python writes the objects it only reads,
their reference counts), so each imports only what it runs. They share the store (the two
processes' writers take turns, see `Store._writing`), a pipe and a shared-memory heartbeat:

- API -> engine: `metrics` (its exposition, answered in order), `reload` (SIGHUP), `stop`;
- engine -> API: `metrics` answers, and `config` after each reload, so routes and tokens follow;
- the heartbeat: when the engine's last tick started and finished, for `/readyz`.

The engine dies with the API, as both do when a node dies (PR_SET_PDEATHSIG on Linux; elsewhere
it stops at the pipe's end), and the API stops when the engine does, so the guard restarts whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from guard import heap
from guard.config import GuardConfig
from guard.store import new_replica_id

log = logging.getLogger(__name__)

STOP_SECONDS = 15.0
"""How long `stop` waits for the engine to release its leases and close before killing it."""
METRICS_SECONDS = 5.0
"""How long `/metrics` waits for the engine's exposition."""
_PR_SET_PDEATHSIG = 1  # from linux/prctl.h


class EngineProcess:
    """The API process's handle on its engine: start, ask, watch, stop."""

    def __init__(self, config: GuardConfig, config_path: Path | None = None) -> None:
        self.config = config
        self.replica_id = new_replica_id()  # the API's pid, as a replica's always was
        self._context = multiprocessing.get_context("fork")
        self._conn, self._child_conn = self._context.Pipe()
        # [tick started, tick finished], epoch seconds; written by the engine only.
        self._heartbeat: ctypes.Array[ctypes.c_double] = self._context.Array("d", 2, lock=False)
        self._process = self._context.Process(
            target=self._run_child, args=(config_path,), name="guard-engine"
        )
        self._answers: deque[asyncio.Future[str]] = deque()
        self._on_config: Callable[[GuardConfig], None] | None = None
        self._on_exit: Callable[[], None] | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def exitcode(self) -> int | None:
        return self._process.exitcode

    def start(self) -> None:
        """Fork the engine; call before any thread or event loop starts in this process."""
        # What exists now is shared by both processes; frozen, neither one's collector writes
        # to (and so copies) its pages. Each settles again after its own imports.
        heap.settle()
        self._process.start()
        self._child_conn.close()

    def _run_child(self, config_path: Path | None) -> None:
        self._conn.close()  # so that the API's death ends the pipe here
        _die_with_parent()
        # Ctrl-C reaches the whole process group; the API stops the engine in order.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        import uvloop

        uvloop.run(
            _run_engine(
                self.config, config_path, self.replica_id, self._child_conn, self._heartbeat
            )
        )

    def attach(self, on_config: Callable[[GuardConfig], None], on_exit: Callable[[], None]) -> None:
        """Listen on the running loop: new configs go to `on_config`; `on_exit` runs if the
        engine ends before `stop`."""
        self._on_config = on_config
        self._on_exit = on_exit
        asyncio.get_running_loop().add_reader(self._conn.fileno(), self._receive)

    def detach(self) -> None:
        asyncio.get_running_loop().remove_reader(self._conn.fileno())

    async def metrics(self) -> str:
        """The engine's metrics exposition; `ConnectionError` when the engine has exited,
        `TimeoutError` when it does not answer within `METRICS_SECONDS`."""
        answer = asyncio.get_running_loop().create_future()
        self._send(("metrics", None))
        self._answers.append(answer)
        return await asyncio.wait_for(answer, METRICS_SECONDS)

    def reload(self) -> None:
        """Ask the engine to reload its config file (SIGHUP on the API)."""
        try:
            self._send(("reload", None))
        except ConnectionError as exc:
            log.error("config reload not requested: %s", exc)

    def problem(self, now: float | None = None) -> str | None:
        """Why the engine cannot do its work, or None: it has exited, it has not finished its
        first tick (which registers this replica: a guard that took hand-offs before then
        left them all to the other replicas), or a tick has run for longer than `stale_after`
        seconds (wedged on a call that never returns)."""
        if not self._process.is_alive():
            return f"engine stopped (exit code {self._process.exitcode})"
        started, finished = self._heartbeat[0], self._heartbeat[1]
        running = (now or time.time()) - started
        if started > finished and running > self.stale_after:
            return f"engine: a tick has run for {running:.0f} s"
        if not finished:
            return "engine starting: no tick has finished yet"
        return None

    @property
    def stale_after(self) -> float:
        return max(60.0, 10 * self.config.scheduler.tick_seconds)

    def stop(self) -> int | None:
        """Ask the engine to finish (it releases its leases), kill it if it does not within
        `STOP_SECONDS`; its exit code."""
        self._stopping = True
        if self._process.is_alive():
            with contextlib.suppress(ConnectionError):  # it is exiting already
                self._send(("stop", None))
            self._process.join(STOP_SECONDS)
            if self._process.is_alive():
                log.error("engine did not stop within %s s; killing it", STOP_SECONDS)
                self._process.kill()
                self._process.join()
        self._conn.close()
        return self._process.exitcode

    def _send(self, message: tuple[str, Any]) -> None:
        if self._conn.closed or not self._process.is_alive():
            raise ConnectionError("the engine process has exited")
        try:
            self._conn.send(message)
        except OSError as exc:
            raise ConnectionError(f"the engine process has exited: {exc}") from exc

    def _receive(self) -> None:
        try:
            kind, payload = self._conn.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(self._conn.fileno())
            while self._answers:
                answer = self._answers.popleft()
                if not answer.done():
                    answer.set_exception(ConnectionError("the engine process has exited"))
            if not self._stopping:
                self._process.join(1)
                log.error(
                    "engine process exited (code %s); stopping the API so the guard restarts whole",
                    self._process.exitcode,
                )
                if self._on_exit is not None:
                    self._on_exit()
            return
        if kind == "metrics":
            answer = self._answers.popleft()
            if not answer.done():  # a late answer to a request that timed out is dropped
                answer.set_result(payload)
        elif kind == "config" and self._on_config is not None:
            self._on_config(payload)


def _die_with_parent() -> None:
    """SIGKILL this process when the API's dies, as if the node had died."""
    name = ctypes.util.find_library("c")
    prctl = getattr(ctypes.CDLL(name), "prctl", None) if name else None
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the API died before the call above
        os._exit(1)


async def _run_engine(
    config: GuardConfig,
    config_path: Path | None,
    replica_id: str,
    conn: Connection,
    heartbeat: ctypes.Array[ctypes.c_double],
) -> None:
    # Imported here, in the engine's process only: the API's never needs them.
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from prometheus_client import generate_latest

    from guard.alert_sender import AlertSender
    from guard.clock import utcnow
    from guard.engine import Engine
    from guard.kube import KubeClient
    from guard.metrics import GuardMetrics
    from guard.prometheus import PrometheusClient
    from guard.reload import ConfigReloader
    from guard.store import Store
    from guard.tokens import TokenBook

    heap.settle()
    loop = asyncio.get_running_loop()
    # Kubernetes calls run in threads; the default pool (cores + 4) would make a tick over many
    # rollouts wait in line.
    loop.set_default_executor(ThreadPoolExecutor(max_workers=32, thread_name_prefix="guard"))
    store = Store(config.store.resolved_url)
    metrics = GuardMetrics()
    metrics.watch_writer_lock(store.writer, process="engine")
    prometheus = PrometheusClient(
        config.prometheus.url,
        timeout_seconds=config.prometheus.timeout_seconds,
        on_error=lambda status: metrics.query_errors.labels(kind=status.value).inc(),
    )
    engine = Engine(
        config, store, KubeClient(config.kubernetes), prometheus, metrics, replica_id=replica_id
    )
    sender = AlertSender(store.outbox, config.alerts, clock=utcnow, metrics=metrics)
    scheduler = AsyncIOScheduler()
    running: set[asyncio.Task[Any]] = set()

    def finished_at_stop(job: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
        """A run under way at `stop` finishes (see below): APScheduler would cancel it."""

        async def run() -> None:
            task = asyncio.current_task()
            assert task is not None
            running.add(task)
            try:
                await job()
            finally:
                running.discard(task)

        return run

    @finished_at_stop
    async def tick() -> None:
        heartbeat[0] = time.time()
        await engine.tick()
        heartbeat[1] = time.time()

    every = {"trigger": "interval", "max_instances": 1, "coalesce": True}
    scheduler.add_job(tick, seconds=config.scheduler.tick_seconds, next_run_time=utcnow(), **every)
    scheduler.add_job(  # its own job: a slow receiver never delays a tick
        finished_at_stop(sender.run_once),
        seconds=config.alerts.delivery.poll_seconds,
        next_run_time=utcnow(),
        **every,
    )
    reloader: ConfigReloader | None = None
    if config_path is not None:

        async def apply(new: GuardConfig) -> None:
            TokenBook.from_config(new.auth)  # checked by the reloader; the API swaps tokens
            await engine.reconfigure(new)
            sender.reconfigure(new.alerts)
            conn.send(("config", new))

        reloader = ConfigReloader(config_path, config, apply=apply, store=store, clock=utcnow)
        loop.add_signal_handler(signal.SIGHUP, reloader.request)
        scheduler.add_job(
            finished_at_stop(reloader.run_once), seconds=config.scheduler.tick_seconds, **every
        )
        log.info("watching %s for config changes (and SIGHUP)", config_path)
    else:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    stopped = asyncio.Event()

    def receive() -> None:
        try:
            kind, _ = conn.recv()
        except (EOFError, OSError):  # the API is gone
            kind = "stop"
        if kind == "metrics":
            conn.send(("metrics", generate_latest(metrics.registry).decode()))
        elif kind == "reload" and reloader is not None:
            reloader.request()
        elif kind == "stop":
            loop.remove_reader(conn.fileno())
            stopped.set()

    loop.add_reader(conn.fileno(), receive)
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    scheduler.start()
    log.info("engine %s started (pid %s)", replica_id, os.getpid())
    try:
        await stopped.wait()
    finally:
        # A tick cut short is safe (its writes are transactions, its actions repeated at the
        # next start) but logged as failed; let it finish, within most of the API's patience.
        scheduler.pause()
        await asyncio.sleep(0)  # a run the scheduler has just started takes its first step
        if running:
            await asyncio.wait(running, timeout=STOP_SECONDS / 2)
        scheduler.shutdown(wait=False)
        await asyncio.to_thread(store.release, replica_id)  # others take over now
        await sender.close()
        await prometheus.close()
        store.close()
        conn.close()
