"""`python -m bench [--quick] [--only NAME,...]`: every benchmark, one after another.

Each runs in its own process (as `python -m bench.NAME`), printing its table and its JSON line;
`--quick` runs small configurations (a smoke run; the figures in the README come from full ones).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

FULL: dict[str, list[str]] = {
    "time_to_safety": [],
    "scale": [],
    "handoff": [],
    "backtest_suite": [],
    "dora": [],
    "failover": [],
}
QUICK: dict[str, list[str]] = {
    "time_to_safety": ["--scrapes", "1", "--faults", "errors"],
    "scale": ["--sizes", "10,100", "--ticks", "5"],
    "handoff": ["--requests", "500"],
    "backtest_suite": [],
    "dora": ["--deployments", "100000", "--repeat", "1"],
    "failover": [],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small configurations")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(FULL)}")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    names = args.only.split(",") if args.only else list(plan)
    unknown = sorted(set(names) - set(plan))
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(plan)}")
    failed = []
    for name in names:
        print(f"=== bench.{name}", flush=True)
        completed = subprocess.run(
            [sys.executable, "-m", f"bench.{name}", *plan[name]], check=False
        )
        if completed.returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
