"""What every benchmark shares: the machine it ran on, a table, one JSON line, a guard's /proc."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx


def machine() -> dict[str, Any]:
    """The figures mean little without the machine and how busy it was (other work shares it)."""
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory_kb = 0
    match = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    if match:
        memory_kb = int(match.group(1))
    return {
        "cpus": os.cpu_count(),
        # Fewer when the benchmark runs pinned (`taskset -c 0 python -m bench.handoff`): its
        # children, the guard and the generators, share only these.
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu_speed_ms": cpu_speed_ms(),
    }


def cpu_speed_ms() -> float:
    """CPU time of a fixed pure-Python loop, measured now: on a VM sharing its host, the same
    code ran up to 60 % slower from one minute to the next with the load average unchanged.
    42-98 ms on the 2-core Intel Xeon VM of the README's latest figures, 52-100 ms on the AMD
    EPYC VM of the earlier ones; higher is slower."""
    started = time.process_time()
    total = 0
    for number in range(1_000_000):
        total += number * number % 7
    return round((time.process_time() - started) * 1000, 1)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as aligned columns, headed by the column names."""
    cells = [[str(row.get(c, "-")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def emit(name: str, rows: Sequence[dict[str, Any]], columns: Sequence[str], **extra: Any) -> None:
    """Print the table, then the same figures as one JSON line (the last line of output)."""
    print(table(rows, columns))
    payload = {"benchmark": name, **extra, "machine": machine(), "results": list(rows)}
    print(json.dumps(payload), flush=True)


class ProcessStats:
    """CPU seconds and memory of a guard, read from /proc: its API process and the engine
    process that one forked (guard.engine_process)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._ticks = os.sysconf("SC_CLK_TCK")

    def pids(self) -> list[int]:
        """The API's pid, then its children's (the engine)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        return [self.pid, *map(int, children)]

    def cpu_seconds(self, pid: int | None = None) -> float:
        """Of one process, or of the whole guard."""
        return sum(self._cpu(p) for p in ([pid] if pid is not None else self.pids()))

    def engine_pid(self) -> int:
        pids = self.pids()
        assert len(pids) == 2, f"a guard is two processes, found {pids}"
        return pids[1]

    def memory_mb(self) -> dict[str, float]:
        """The whole guard's memory in MiB: `pss` (each shared page counted once, split between
        the processes that share it: what the two cost the machine together; also per process,
        `api_pss` and `engine_pss`), `rss` (shared pages counted in each), and `peak_rss` (the
        sum of each process's peak)."""
        totals = {"pss": 0.0, "rss": 0.0, "peak_rss": 0.0}
        for index, pid in enumerate(self.pids()):
            status = Path(f"/proc/{pid}/status").read_text()
            totals["rss"] += _kib(status, "VmRSS") / 1024
            totals["peak_rss"] += _kib(status, "VmHWM") / 1024
            pss = _kib(Path(f"/proc/{pid}/smaps_rollup").read_text(), "Pss") / 1024
            totals["pss"] += pss
            totals["engine_pss" if index else "api_pss"] = pss
        return totals

    def _cpu(self, pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self._ticks  # utime + stime


def _kib(text: str, key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    assert match is not None, f"no {key} in /proc"
    return int(match.group(1))


def metric(text: str, name: str) -> float | None:
    """One sample of a Prometheus text exposition, or None; `name` with its labels as the
    exposition writes them (`name{label="value"}`)."""
    match = re.search(rf"^{re.escape(name)} ([0-9.eE+-]+|NaN)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


class SimulatorProcess:
    """`python -m guard.sim.kubeapi` in its own process, so its controllers and HTTP server do
    not share an interpreter lock with the benchmark's load."""

    def __init__(self, kubeconfig: Path, namespace: str, *, tick_seconds: float = 0.1) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.tick_seconds = tick_seconds
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> SimulatorProcess:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "guard.sim.kubeapi", "--kubeconfig", str(self.kubeconfig),
             "--namespace", self.namespace, "--tick-seconds", str(self.tick_seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        match = re.search(r"(http://\S+)", line)
        if match is None:
            self.__exit__()
            raise RuntimeError(f"Kubernetes API simulator did not start: {line!r}")
        self.url = match.group(1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError("Kubernetes API simulator not ready")

    def __exit__(self, *_exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
