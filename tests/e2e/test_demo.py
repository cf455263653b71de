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
    # 8 % errors are critical in most windows, high (twice in a row) in an unlucky one.
    assert re.search(r"decision rollback\s+(critical|high): error rate [0-9.]+% > [0-9.]+%", output)
    verified = re.search(r"first bad sample -> rollback verified: ([0-9.]+)s", output)
    assert verified is not None and float(verified.group(1)) > 0
    assert "demo passed" in output
