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
    for strategy in ("rolling", "canary", "bluegreen"):
        assert f"=== {strategy}, good release" in output
        assert f"=== {strategy}, bad release" in output
    assert output.count("outcome: promoted") == 3
    assert output.count("outcome: rolled_back") == 3
    # 8 % errors are critical in most windows, high (twice in a row) in an unlucky one.
    assert re.search(r"decision rollback\s+(critical|high): error rate [0-9.]+% > [0-9.]+%", output)
    summary = output[output.index("=== time from the first bad sample") :]
    for strategy in ("rolling", "canary", "bluegreen"):
        measured = re.search(rf"{strategy}\s+([0-9.]+)s  \(rolled_back\)", summary)
        assert measured is not None and float(measured.group(1)) > 0, summary
    assert "demo passed" in output
