"""Request log and fault injection.

The log is shaped like RBAC attributes (verb, apiGroup, resource, subresource) so a test can
derive the minimal Role the product needs from a real run; faults let tests rehearse the
flaky-API-server paths (5xx, 409 races, slow answers) deterministically.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestRecord:
    """One API request. ``resource`` is "" for non-resource URLs such as ``/version``.

    ``user_agent`` tells the guard's requests (the official client sends
    ``OpenAPI-Generator/...``) from the simulated workload's own (``python-httpx/...``).
    """

    method: str
    path: str
    verb: str
    api_group: str
    resource: str
    subresource: str | None
    namespace: str | None
    name: str | None
    status: int
    user_agent: str = ""


@dataclass
class Fault:
    method: str
    path_regex: re.Pattern[str]
    status: int
    delay_seconds: float
    remaining: int | None

    def matches(self, method: str, path: str) -> bool:
        return (self.method == "*" or self.method.upper() == method.upper()) and bool(
            self.path_regex.search(path)
        )


class Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log: list[RequestRecord] = []
        self._faults: list[Fault] = []

    def record(self, entry: RequestRecord) -> None:
        with self._lock:
            self._log.append(entry)

    @property
    def log(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def add_fault(
        self, method: str, path_regex: str, status: int, delay: float, count: int | None
    ) -> None:
        with self._lock:
            self._faults.append(Fault(method, re.compile(path_regex), status, delay, count))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        """Consume one use of the first matching fault, oldest first."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None
