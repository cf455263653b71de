"""``python -m guard.sim.kubeapi``: serve a simulated cluster until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from guard import heap
from guard.sim.kubeapi.simulator import KubeApiSimulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m guard.sim.kubeapi", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig for the simulator here")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--tick-seconds", type=float, default=0.1)
    parser.add_argument("--default-ready-delay", type=float, default=0.5)
    args = parser.parse_args(argv)

    sim = KubeApiSimulator(
        tick_seconds=args.tick_seconds,
        default_ready_delay_seconds=args.default_ready_delay,
        host=args.host,
        port=args.port,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    heap.settle()
    url = sim.start()
    if args.kubeconfig:
        sim.write_kubeconfig(args.kubeconfig, args.namespace)
    print(f"Kubernetes API simulator serving on {url}", flush=True)
    try:
        stop.wait()
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
