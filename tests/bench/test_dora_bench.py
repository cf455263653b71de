"""The DORA benchmark runs as `python -m bench.dora` and reports what it measured (no timing
is asserted: CI machines vary)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_prints_a_table_and_one_json_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.dora", "--deployments", "5000", "--repeat", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    figures = json.loads(out[-1])
    assert figures["benchmark"] == "dora_report"
    assert figures["deployments"] == 5000
    assert figures["services"] == 200 and figures["teams"] == 25
    assert figures["best_seconds"] > 0 and figures["peak_traced_mib"] > 0
    assert out[0].split() == ["deployments", "5,000"]
