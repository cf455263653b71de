"""`guard demo`, the README's first command, does what it says."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_shows_every_strategy_promoting_a_good_and_rolling_back_a_bad_release() -> None:
    completed = subprocess.run(
        # 1 s analysis intervals keep the six releases inside the suite's time budget.
        [sys.executable, "-m", "guard", "demo", "--analysis-interval", "1"],
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    output = completed.stdout
    assert completed.returncode == 0, output + completed.stderr
    assert "outcome: promoted" in output
    assert "outcome: rolled_back" in output
    assert re.search(
        r"decision rollback\s+(critical|high): error rate [0-9.]+% \(lower bound [0-9.]+%\) > ",
        output,
    )
    verified = re.search(r"first bad sample -> rollback verified: ([0-9.]+)s", output)
    assert verified is not None and float(verified.group(1)) > 0
    assert "alerts received by the on-call webhook:" in output
    assert re.search(r"alert rollback_started\s+\(signature verified\)", output)
    assert re.search(r"alert rollback_verified\s+\(signature verified\)", output)
    assert re.search(r"evidence: error_rate [0-9.]+% > [0-9.]+% over [0-9]+ requests", output)
    assert "outcome: rollback verified: previous revision fully available again" in output
    for strategy in ("rolling", "canary", "bluegreen"):
        assert f"=== {strategy}, good release" in output
        assert f"=== {strategy}, bad release" in output
    assert len(re.findall(r"^  outcome: promoted  \(", output, re.MULTILINE)) == 3
    assert len(re.findall(r"^  outcome: rolled_back  \(", output, re.MULTILINE)) == 3
    summary = output[output.index("=== time from the first bad sample") :]
    for strategy in ("rolling", "canary", "bluegreen"):
        measured = re.search(rf"{strategy}\s+([0-9.]+)s  \(rolled_back\)", summary)
        assert measured is not None and float(measured.group(1)) > 0, summary
    assert "demo passed" in output
