"""Entry point: `python -m e2e.simulator --port 19100 --kubeconfig PATH`.

Started by e2e/cluster.sh; can be run by hand against any cluster.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType

from e2e.simulator.engine import Simulator
from e2e.simulator.kube import KubeReader
from e2e.simulator.server import make_server


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m e2e.simulator", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1", help="bind address (keep it loopback)")
    ap.add_argument("--port", type=int, default=19100)
    ap.add_argument("--kubeconfig", default=None, help="kubeconfig of the cluster to read (default: in-cluster)")
    ap.add_argument("--poll-interval", type=float, default=0.5, help="seconds between apiserver polls")
    ap.add_argument("--tick-hz", type=float, default=10.0, help="counter updates per second")
    ap.add_argument("--seed", type=int, default=None, help="RNG seed (reproducible noise)")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    sim = Simulator(KubeReader(args.kubeconfig), seed=args.seed)
    httpd = make_server(sim, args.host, args.port)
    sim.run(poll_interval=args.poll_interval, tick_hz=args.tick_hz)

    def on_term(signum: int, frame: FrameType | None) -> None:
        # shutdown() blocks until serve_forever returns, so call it off-thread.
        sim.stop()
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    logging.getLogger("e2e.simulator").info("simulator listening on http://%s:%d", args.host, args.port)
    httpd.serve_forever(poll_interval=0.2)
    httpd.server_close()
    logging.shutdown()
    # Nothing to flush (the state is in memory by design); skip interpreter
    # teardown, where the kubernetes client's thread pool can hold exit for
    # seconds, so `cluster-down` is quick.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
