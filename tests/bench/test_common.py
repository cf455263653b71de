"""The machine a benchmark reports is the one its processes could use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_machine_reports_the_cpus_a_pinned_benchmark_may_use() -> None:
    pinned = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from bench.common import machine; m = machine(); print(m['cpus'], m['cpus_usable'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", pinned], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [str(os.cpu_count()), "1"]
