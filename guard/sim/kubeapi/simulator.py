"""``KubeApiSimulator``: the public face of the package (serving, seeding, faults, logs)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
import yaml

from guard.sim.kubeapi import resources
from guard.sim.kubeapi.controller import ControllerLoop
from guard.sim.kubeapi.errors import bad_request
from guard.sim.kubeapi.kubelet import ImageBehaviour, Kubelet
from guard.sim.kubeapi.recording import Recorder, RequestRecord
from guard.sim.kubeapi.resources import ResourceType
from guard.sim.kubeapi.server import build_app
from guard.sim.kubeapi.store import Store

JSON = dict[str, Any]


def _resource(api_version: str, kind: str) -> ResourceType:
    rt = resources.by_kind(api_version, kind)
    if rt is None:
        raise bad_request(f"no kind {kind!r} is registered for version {api_version!r}")
    return rt


class KubeApiSimulator:
    """An in-process Kubernetes API server with deployment/replicaset controllers and a kubelet."""

    def __init__(
        self,
        tick_seconds: float = 0.1,
        default_ready_delay_seconds: float = 0.5,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.store = Store()
        self._recorder = Recorder()
        self._behaviours: dict[str, ImageBehaviour] = {}
        self.kubelet = Kubelet(self.store, self._behaviours, default_ready_delay_seconds)
        self.controllers = ControllerLoop(self.store, self.kubelet, tick_seconds)
        self._host, self._port = host, port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit this; without it Nagle + delayed ACK add ~40 ms per request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self._host, self._port))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            build_app(self.store, self._recorder),
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.run(sockets=[sock]), name="kubeapi-sim-http", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("Kubernetes API simulator failed to start")
            time.sleep(0.01)
        self.controllers.start()
        self.base_url = f"http://{self._host}:{port}"
        return self.base_url

    def stop(self) -> None:
        self.controllers.stop()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> KubeApiSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> None:
        if not self.base_url:
            raise RuntimeError("start() the simulator before writing a kubeconfig")
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "guard-sim", "cluster": {"server": self.base_url}}],
            "users": [{"name": "guard-sim", "user": {"token": "guard-sim-token"}}],
            "contexts": [
                {
                    "name": "guard-sim",
                    "context": {
                        "cluster": "guard-sim",
                        "user": "guard-sim",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": "guard-sim",
            "preferences": {},
        }
        Path(path).write_text(yaml.safe_dump(config, sort_keys=False))

    # ------------------------------------------------------------------ behaviour

    def set_image_behaviour(self, image: str, behaviour: ImageBehaviour) -> None:
        with self.store.lock:
            self._behaviours[image] = behaviour

    def inject_fault(
        self,
        method: str = "*",
        path_regex: str = ".*",
        status: int = 500,
        delay_seconds: float = 0.0,
        count: int | None = 1,
    ) -> None:
        self._recorder.add_fault(method, path_regex, status, delay_seconds, count)

    def clear_faults(self) -> None:
        self._recorder.clear_faults()

    @property
    def requests_log(self) -> list[RequestRecord]:
        return self._recorder.log

    def clear_requests_log(self) -> None:
        self._recorder.clear_log()

    # ------------------------------------------------------------------ direct object access

    def apply(self, obj: JSON) -> JSON:
        return self.store.apply(_resource(str(obj.get("apiVersion")), str(obj.get("kind"))), obj)

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> JSON | None:
        rt = _resource(api_version, kind)
        with self.store.lock:
            found = self.store.peek(rt, namespace, name)
            return self.store.get(rt, namespace, name) if found is not None else None

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[JSON]:
        return self.store.list(_resource(api_version, kind), namespace, label_selector)[0]
