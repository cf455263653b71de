"""The background loop standing in for kube-controller-manager and the kubelet."""

from __future__ import annotations

import logging
import threading

from guard.sim.kubeapi.deployments import DeploymentController
from guard.sim.kubeapi.kubelet import Kubelet
from guard.sim.kubeapi.replicasets import ReplicaSetController, collect_garbage
from guard.sim.kubeapi.store import Store

log = logging.getLogger(__name__)


class ControllerLoop:
    def __init__(self, store: Store, kubelet: Kubelet, tick_seconds: float) -> None:
        self.store = store
        self.kubelet = kubelet
        self.tick_seconds = tick_seconds
        self.deployments = DeploymentController(store)
        self.replicasets = ReplicaSetController(store, kubelet)
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        """One reconcile pass; the whole pass is atomic with respect to API requests."""
        with self.store.lock:
            self.kubelet.sync()
            self.replicasets.sync_all()
            self.deployments.sync_all()
            self.replicasets.sync_all()
            self.kubelet.sync()
            collect_garbage(self.store)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            try:
                self.tick()
            except Exception as err:  # keep reconciling like a real controller would
                log.exception("simulated controller tick failed")
                self.errors.append(err)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="kubeapi-sim-controllers", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
