"""`guard demo`, the README's first command, does what it says."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_promotes_the_good_release_and_rolls_back_the_bad_one() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "guard", "demo"],
        capture_output=True,
        text=True,
        timeout=240,
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
    assert re.search(r"evidence: error_rate [0-9.]+% > 5.00% over [0-9]+ requests", output)
    assert "outcome: rollback verified: previous revision fully available again" in output
    assert "demo passed" in output
