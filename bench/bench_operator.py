"""Operator measurements on the local cluster (``make bench-operator``): not a test.

1. **Reaction time** of the regular tick: a canary at 25 % of 4 pods; its latency is
   degraded past the critical bound; we time from the breach being visible in Prometheus
   (the condition's own PromQL: p95 over the latency window above the critical bound) to
   the canary having 0 replicas. Target: ≤ one analysis interval + 2 s.
2. **Memory with 100 rollouts**: the operator's RSS with 100 dry-run rollouts analysed
   every 5 s (their Prometheus queries batched).

Needs the local cluster (``make cluster-up``). Prints a Markdown table and writes it to
``bench/results/operator.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubernetes import client  # noqa: E402

from e2e.harness.cluster import Cluster  # noqa: E402
from e2e.harness.manifests import gpu_deployment, rollout_manifest  # noqa: E402
from e2e.harness.operator_process import OperatorProcess, delete_rollouts, install_crds  # noqa: E402
from e2e.harness.scenario import RolloutScenario  # noqa: E402

LATENCY_WINDOW = "20s"
CRITICAL_P95_MS = 6.0  # balanced: p95 bound 3 ms, critical factor 2


def fresh_namespace(cluster: Cluster, prefix: str) -> str:
    name = f"{prefix}-{int(time.time() * 1000) % 10_000_000}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    cluster.wait_for(lambda: cluster.core.read_namespaced_service_account("default", name), timeout=30)
    return name


def reaction_trial(cluster: Cluster, interval: str) -> tuple[float, float]:
    ns = fresh_namespace(cluster, "bench-reaction")
    op = OperatorProcess(cluster, ns, name="bench").start()
    try:
        s = RolloutScenario(cluster, ns)
        s.apply(rollout_manifest(s.name, ns, stable=s.stable, canary=s.canary, interval=interval,
                                 steps=[{"weight": 25, "duration": "1h"}, {"weight": 100, "duration": "1h"}]))
        s.wait_status(lambda st: st.get("canaryWeight") == 25 and st.get("risk"), timeout=120, message="analysing")
        cluster.wait_for(lambda: s.replicas(s.canary) == 1, timeout=30, message="canary pod")
        query = (f'histogram_quantile(0.95, sum by (le) (rate(model_request_duration_seconds_bucket'
                 f'{{namespace="{ns}",deployment="{s.canary}"}}[{LATENCY_WINDOW}]))) * 1000')
        cluster.simulator.set_behaviour(ns, s.canary, latency_ms={"median": 9.0, "p95": 16.0})
        visible = None
        zero = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and (visible is None or zero is None):
            now = time.monotonic()
            if visible is None:
                value = cluster.prom_scalar(query)
                if value is not None and value > CRITICAL_P95_MS:
                    visible = now
            if zero is None and s.replicas(s.canary) == 0:
                zero = now
            time.sleep(0.05)
        if visible is None or zero is None:
            raise RuntimeError(f"trial did not finish: visible={visible} zero={zero}")
        status = s.status()
        trigger = next(h for h in status["history"] if h["kind"] == "rollback")["evidence"]["trigger"]
        return zero - visible, float(trigger == "latency")
    finally:
        delete_rollouts(cluster, ns)
        op.stop()
        cluster.simulator.forget_namespace(ns)
        cluster.core.delete_namespace(ns)


def memory_with_rollouts(cluster: Cluster, count: int, settle_seconds: float) -> tuple[float, float]:
    ns = fresh_namespace(cluster, "bench-memory")
    op = OperatorProcess(cluster, ns, name="memory").start()
    try:
        for i in range(count):
            name = f"m{i:03d}"
            deployment = gpu_deployment(name, ns, replicas=1, gpus=0)
            small = {"cpu": "100m", "memory": "128Mi"}
            deployment["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": small, "requests": small}
            cluster.apply(deployment)
            cluster.simulator.register_service(name, ns, stable=name, canary=f"{name}-c", rps=200.0)
            manifest = rollout_manifest(name, ns, stable=name, canary=f"{name}-c", interval="5s",
                                        analysis={"dryRun": True})
            cluster.apply(manifest)
        print(f"  created {count} rollouts; settling {settle_seconds:.0f}s", flush=True)
        time.sleep(settle_seconds)
        rss = _rss_mb(op.proc.pid)  # type: ignore[union-attr]
        items = cluster.custom.list_namespaced_custom_object("modelrollout.io", "v1alpha1", ns,
                                                             "modelrollouts")["items"]
        evaluated = sum(1 for it in items if (it.get("status") or {}).get("risk"))
        return rss, evaluated
    finally:
        delete_rollouts(cluster, ns, timeout=60)
        op.stop()
        cluster.simulator.forget_namespace(ns)
        cluster.core.delete_namespace(ns)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--intervals", default="5s,30s")
    parser.add_argument("--rollouts", type=int, default=100)
    parser.add_argument("--settle", type=float, default=60.0)
    args = parser.parse_args()
    cluster = Cluster.from_state()
    install_crds(cluster)
    lines = ["| measurement | interval | trials | median | min | max |", "|---|---|---|---|---|---|"]
    for interval in args.intervals.split(","):
        times = []
        for trial in range(args.trials):
            seconds, named = reaction_trial(cluster, interval)
            times.append(seconds)
            print(f"  reaction at {interval}: trial {trial + 1}: {seconds:.2f}s (latency named: {bool(named)})",
                  flush=True)
        lines.append(f"| breach visible → canary 0 pods (tick) | {interval} | {len(times)} | "
                     f"{statistics.median(times):.2f} s | {min(times):.2f} s | {max(times):.2f} s |")
    if args.rollouts:
        rss, evaluated = memory_with_rollouts(cluster, args.rollouts, args.settle)
        lines.append(f"| operator RSS with {args.rollouts} dry-run rollouts ({evaluated:.0f} evaluated) | 5s | 1 | "
                     f"{rss:.0f} MB | | |")
    table = "\n".join(lines)
    print(table)
    out = ROOT / "bench/results/operator.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n")


if __name__ == "__main__":
    main()
