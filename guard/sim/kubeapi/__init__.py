"""A faithful-enough Kubernetes API server simulator for tests and ``guard demo``.

The product only ever talks to Kubernetes through the official client, so this package serves
the real REST paths over HTTP and runs Deployment/ReplicaSet controllers and a kubelet behind
them. It must never contain product logic.
"""

from guard.sim.kubeapi.errors import ApiError
from guard.sim.kubeapi.kubelet import ImageBehaviour
from guard.sim.kubeapi.recording import RequestRecord
from guard.sim.kubeapi.simulator import KubeApiSimulator

__all__ = ["ApiError", "ImageBehaviour", "KubeApiSimulator", "RequestRecord"]
