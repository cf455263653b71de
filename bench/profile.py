"""Sampling profiles of a running guard with py-spy (optional: `pip install py-spy`).

`record` samples a process for a while into py-spy's collapsed-stack format; `summary` ranks
functions by the share of samples they appear in (inclusive) and are running in (self).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def record(pid: int, seconds: float, path: Path) -> subprocess.Popen[bytes] | None:
    """Start sampling `pid` for `seconds`; None when py-spy is not installed."""
    binary = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if binary is None:
        return None
    return subprocess.Popen(
        [binary, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
         "--format", "raw", "--rate", "200", "--nonblocking", "--gil", "--output", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def summary(path: Path, top: int = 25) -> str:
    """The functions most often on the stack (inclusive) and running (self), with shares."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        if not frames or all(_idle(f) for f in frames[-1:]):
            continue
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    if not total:
        return "no busy samples"
    lines = [f"{total} busy samples", "inclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    lines.append("self:")
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    return "\n".join(lines)


def _idle(frame: str) -> bool:
    """Threads waiting (selector, lock, queue) are not spending CPU."""
    return any(word in frame for word in ("select (", "wait (", "_worker (", "acquire"))
