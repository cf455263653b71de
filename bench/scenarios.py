"""Generate the project's replay scenarios (shared format v1) with a known right answer.

Each scenario carries `expected`: whether a careful human would roll back, whether promotion is
acceptable, and for faults the interval the fault began. `python -m bench.scenarios OUT_DIR`
writes them; the files under tests/scenarios/ were made this way and are committed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 10.0)
INTERVAL = 10
INTERVALS = 30


@dataclass(frozen=True)
class Track:
    requests: float
    error_rate: float
    p50: float
    p99: float


@dataclass(frozen=True)
class Kind:
    """One family of scenarios: traffic of both tracks, before and after an optional onset."""

    name: str
    canary: Track
    baseline: Track
    faulty: Track | None = None
    onset_interval: int | None = None
    gap_every: int = 0
    rollback: bool = False
    promote_ok: bool = True


HEALTHY = Track(1000, 0.004, 0.08, 0.3)
STABLE = Track(9000, 0.004, 0.08, 0.3)
KINDS = (
    Kind("healthy", HEALTHY, STABLE),
    Kind("healthy-lowtraffic", Track(20, 0.004, 0.08, 0.3), STABLE),
    Kind("healthy-verylowtraffic", Track(4, 0.004, 0.08, 0.3), STABLE),
    Kind("healthy-gaps", HEALTHY, STABLE, gap_every=3),
    Kind("healthy-noisy-baseline", Track(300, 0.008, 0.08, 0.3), Track(3000, 0.008, 0.08, 0.3)),
    Kind("critical-errors", Track(1000, 0.08, 0.08, 0.3), STABLE, rollback=True, onset_interval=0),
    Kind("high-errors", Track(1000, 0.03, 0.08, 0.3), STABLE, rollback=True, onset_interval=0),
    Kind(
        "critical-errors-lowtraffic",
        Track(40, 0.2, 0.08, 0.3),
        STABLE,
        rollback=True,
        onset_interval=0,
    ),
    Kind(
        "late-fault",
        HEALTHY,
        STABLE,
        faulty=Track(1000, 0.10, 0.08, 0.3),
        onset_interval=2,
        rollback=True,
    ),
    Kind("critical-latency", Track(1000, 0.004, 1.5, 4.0), STABLE, rollback=True, onset_interval=0),
    Kind(
        "platform-incident",
        Track(1000, 0.07, 0.08, 0.3),
        Track(9000, 0.07, 0.08, 0.3),
        promote_ok=False,
    ),
    Kind(
        "platform-latency",
        Track(1000, 0.004, 1.5, 4.0),
        Track(9000, 0.004, 1.5, 4.0),
        promote_ok=False,
    ),
)
SEEDS_PER_KIND = 5


def scenarios() -> Iterator[dict[str, Any]]:
    for kind in KINDS:
        for seed in range(SEEDS_PER_KIND):
            yield _scenario(kind, seed)


def _scenario(kind: Kind, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed * 7919 + len(kind.name))
    samples = []
    for interval in range(INTERVALS):
        t = interval * INTERVAL
        faulty = kind.onset_interval is not None and interval >= kind.onset_interval
        canary = kind.faulty if (faulty and kind.faulty) else kind.canary
        for track_name, track in (("baseline", kind.baseline), ("canary", canary)):
            if kind.gap_every and track_name == "canary" and interval % kind.gap_every == 1:
                continue
            samples.append(_sample(rng, t, track_name, track))
    onset = kind.onset_interval * INTERVAL if kind.onset_interval is not None else None
    return {
        "format": "deploy-guard/scenario/v1",
        "name": f"{kind.name}-{seed}",
        "service": "checkout",
        "strategy": "canary",
        "interval_seconds": INTERVAL,
        "expected": {"rollback": kind.rollback, "promote_ok": kind.promote_ok, "onset_t": onset},
        "samples": samples,
    }


def _sample(rng: np.random.Generator, t: int, track_name: str, track: Track) -> dict[str, Any]:
    requests = int(rng.poisson(track.requests))
    errors = int(rng.binomial(requests, track.error_rate)) if requests else 0
    sigma = (np.log(track.p99) - np.log(track.p50)) / 2.3263
    latencies = rng.lognormal(np.log(track.p50), sigma, size=requests)
    quantiles = np.quantile(latencies, [0.5, 0.9, 0.95, 0.99]) if requests else np.zeros(4)
    cumulative = {f"{b:g}": int((latencies <= b).sum()) for b in BUCKETS}
    cumulative["+Inf"] = requests
    return {
        "t": t,
        "track": track_name,
        "requests": requests,
        "errors": errors,
        "latency_seconds": {
            key: round(float(value), 4)
            for key, value in zip(("p50", "p90", "p95", "p99"), quantiles, strict=True)
        },
        "latency_buckets": cumulative,
    }


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for scenario in scenarios():
        path = out_dir / f"{scenario['name']}.json"
        path.write_text(json.dumps(scenario, separators=(",", ":")) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/scenarios"))
