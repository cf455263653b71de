"""DORA report over 1,000,000 synthetic recorded deployments: time and peak memory.

`python -m bench.dora [--deployments N] [--repeat R]` prints a table and one JSON line. The
records are built straight into the columnar table `guard.dora.report` works on (what
`guard.dora.build_frame` returns), with realistic shares: 200 services in 25 teams, 85 %
promoted, 8 % rolled back, 4 % aborted, 3 % failed, 1 % of promotions with an incident later.
Building a million Python record objects is not what is measured; the report over them is.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from guard.dora import OUTCOME_CODES, Outcome, Window, report

NOW = datetime(2026, 11, 23, tzinfo=UTC)
WINDOW_DAYS = 365


def synthetic(n: int, *, seed: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    end = NOW.timestamp()
    started = end - rng.uniform(0, WINDOW_DAYS * 86400.0, n)
    duration = rng.gamma(2.0, 300.0, n)
    outcome = rng.choice(
        [
            OUTCOME_CODES[o]
            for o in (Outcome.PROMOTED, Outcome.ROLLED_BACK, Outcome.ABORTED, Outcome.FAILED)
        ],
        size=n,
        p=[0.85, 0.08, 0.04, 0.03],
    ).astype(np.int8)
    rolled_back = outcome == OUTCOME_CODES[Outcome.ROLLED_BACK]
    promoted = outcome == OUTCOME_CODES[Outcome.PROMOTED]
    nan = np.full(n, np.nan)
    first_bad = np.where(rolled_back, started + duration * 0.3, nan)
    decided = first_bad + rng.uniform(10, 120, n)
    incident = promoted & (rng.random(n) < 0.01)
    opened = np.where(incident, started + duration + rng.uniform(600, 86400, n), nan)
    services = pd.Index([f"svc-{i:03d}" for i in range(200)])
    teams = pd.Index([f"team-{i:02d}" for i in range(25)])
    service_index = rng.integers(0, 200, n)
    return pd.DataFrame(
        {
            "rollout_id": np.arange(n),
            "service": pd.Categorical.from_codes(service_index, categories=services),
            "team": pd.Categorical.from_codes(service_index % 25, categories=teams),
            "outcome": outcome,
            "rework": rng.random(n) < 0.02,
            "submitted": started - 5,
            "started": started,
            "finished": started + duration,
            "commit": started - rng.gamma(1.5, 7200.0, n),
            "first_bad": first_bad,
            "rollback_started": np.where(rolled_back, decided, nan),
            "rollback_verified": np.where(rolled_back, decided + rng.uniform(30, 600, n), nan),
            "incident_opened": opened,
            "incident_resolved": opened + rng.uniform(300, 7200, n),
        }
    )


def run(n: int, repeat: int) -> dict[str, float | int]:
    frame = synthetic(n)
    window = Window(start=NOW - timedelta(days=WINDOW_DAYS), end=NOW)
    report(frame.head(1000), window)  # warm-up: imports and first-call caches
    timings = []
    for _ in range(repeat):
        began = time.perf_counter()
        result = report(frame, window)
        timings.append(time.perf_counter() - began)
    tracemalloc.start()  # a separate run: tracing slows allocation down
    report(frame, window)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.overall.deployments == n
    return {
        "deployments": n,
        "services": len(result.by_service),
        "teams": len(result.by_team),
        "weeks": len(result.weekly),
        "best_seconds": min(timings),
        "median_seconds": float(np.median(timings)),
        "peak_traced_mib": peak / 2**20,
        "frame_mib": frame.memory_usage(deep=True).sum() / 2**20,
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    figures = run(args.deployments, args.repeat)
    rows = [
        ("deployments", f"{figures['deployments']:,}"),
        (
            "groups",
            f"{figures['services']} services, {figures['teams']} teams, {figures['weeks']} weeks",
        ),
        ("report time, best", f"{figures['best_seconds']:.3f} s"),
        ("report time, median", f"{figures['median_seconds']:.3f} s (of {args.repeat})"),
        ("peak memory during report", f"{figures['peak_traced_mib']:.1f} MiB (tracemalloc)"),
        ("records table", f"{figures['frame_mib']:.1f} MiB"),
        ("process max RSS", f"{figures['max_rss_mib']:.1f} MiB"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps({"benchmark": "dora_report", **figures}))


if __name__ == "__main__":
    main()
