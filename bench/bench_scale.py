"""Scale benchmark (``make bench-scale``): not a test.

On the local cluster (kwok nodes, the simulator serving every Deployment), one operator
drives N ModelRollouts (2N Deployments: a one-pod stable and its canary), interval 30 s,
``fastPathInterval`` 1 s (``--fast-path-interval``), all in their 25 % step. For each N it reports:

* the fast path's cycle p50 / p99 and the ticks' lag p99 (due → evaluated), from the
  operator's own histograms over a quiet minute;
* breach visible in Prometheus → canary at 0 pods, for ``--breaches`` rollouts degraded
  one after another at random moments (the latency condition's PromQL above its critical
  bound, polled every 50 ms, as ``bench/bench_reaction.py`` does);
* CPU (cores, from /proc) of the operator *and* of every process of the bench's own
  load (simulator, Prometheus, apiserver, etcd, kwok, controller-manager, scheduler),
  so that theirs cannot hide the operator's; the operator's RSS;
* Prometheus queries/s, the operator's own apiserver calls/s per rollout, and its status
  writes per rollout per minute while nothing changes (the target is 0).

Failed breaches (no rollback within the timeout) are counted and reported. One line per
N that a script can read::

    bench-scale: N=1000 rollouts, cycle p50 X ms p99 Y ms, reaction median Z s, RSS W MiB, cpu C cores

Extra kwok nodes (``bench-scale-*``, 500 pods each) are added for the pods and removed
at the end. Needs the local cluster (``make cluster-up``); writes the table to
``bench/results/scale.md``.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kubernetes import client  # noqa: E402

from bench.bench_reaction import (  # noqa: E402
    CRITICAL_P95_MS,
    DEGRADED,
    bench_rollout,
    counter,
    drop_namespace,
    fresh_namespace,
    operator_counters,
    p95_query,
    poll_probes,
)
from e2e.harness.cluster import Cluster  # noqa: E402
from e2e.harness.manifests import gpu_deployment  # noqa: E402
from e2e.harness.operator_process import OperatorProcess, delete_rollouts, install_crds  # noqa: E402

Counters = dict[tuple[str, frozenset[tuple[str, str]]], float]

SMALL = {"cpu": "10m", "memory": "16Mi"}
PODS_PER_NODE = 500
APPLY_BATCH = 100
LOAD_PROCESSES = ("simulator", "prometheus", "kube-apiserver", "etcd", "kwok", "kube-controller-manager",
                  "kube-scheduler")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (utime + stime from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def load_pids(cluster: Cluster) -> dict[str, int]:
    """The bench's own processes, from the local cluster's pid files."""
    pids = {}
    for name in LOAD_PROCESSES:
        f = cluster.state / "pids" / f"{name}.pid"
        if f.exists():
            pids[name] = int(f.read_text().split()[0])
    return pids


class CpuMeter:
    """CPU cores each process used between ``start()`` and ``stop()``."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self._t0 = 0.0
        self._cpu0: dict[str, float] = {}

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._cpu0 = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        elapsed = time.monotonic() - self._t0
        return {name: (cpu_seconds(pid) - self._cpu0[name]) / elapsed for name, pid in self.pids.items()}


# ----------------------------------------------------------------------------- histograms


def histogram_delta(before: Counters, after: Counters, name: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of a histogram's observations between two scrapes."""
    def buckets(values: Counters) -> dict[float, float]:
        return {float(dict(labels)["le"]): v for (n, labels), v in values.items() if n == f"{name}_bucket"}
    b0, b1 = buckets(before), buckets(after)
    return sorted((le, b1[le] - b0.get(le, 0.0)) for le in b1)


def quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' ``histogram_quantile``: linear within the bucket; NaN without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower  # in the +Inf bucket: the highest finite bound, as Prometheus does
            return lower + (le - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = le, count
    return math.nan


# ----------------------------------------------------------------------------- the cluster side


def add_nodes(cluster: Cluster, pods: int) -> list[str]:
    """kwok nodes with room for ``pods`` more pods (kwok manages nodes with its annotation)."""
    names = [f"bench-scale-{i}" for i in range(max(1, math.ceil(pods / PODS_PER_NODE)))]
    capacity = {"cpu": "1000", "memory": "4Ti", "pods": str(PODS_PER_NODE)}
    cluster.apply([{
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": n, "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                     "labels": {"type": "kwok", "kubernetes.io/hostname": n, "kubernetes.io/os": "linux"}},
        "status": {"capacity": capacity, "allocatable": capacity},
    } for n in names])

    def ready() -> bool:
        nodes = {n.metadata.name: n for n in cluster.core.list_node().items}
        return all(n in nodes and any(c.type == "Ready" and c.status == "True"
                                      for c in nodes[n].status.conditions or []) for n in names)
    cluster.wait_for(ready, timeout=120, interval=1.0, message=f"{len(names)} bench-scale nodes Ready")
    return names


def remove_nodes(cluster: Cluster, names: list[str]) -> None:
    for n in names:
        try:
            cluster.core.delete_node(n)
        except client.ApiException:
            pass


def create_rollouts(cluster: Cluster, ns: str, count: int, fast_path_interval: str = "1s") -> list[str]:
    """N one-pod stables and their rollouts, applied in batches (kubectl per batch)."""
    names = [f"m{i:04d}" for i in range(count)]
    for start in range(0, count, APPLY_BATCH):
        batch = names[start:start + APPLY_BATCH]
        objects: list[dict[str, Any]] = []
        for name in batch:
            deployment = gpu_deployment(name, ns, replicas=1, gpus=0)
            deployment["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": SMALL,
                                                                                   "requests": SMALL}
            objects.append(deployment)
            cluster.simulator.register_service(name, ns, stable=name, canary=f"{name}-c", rps=200.0)
        cluster.apply(objects)
        manifests = []
        for name in batch:
            manifest = bench_rollout(name, ns, name, f"{name}-c", "30s")
            manifest["spec"]["analysis"]["fastPathInterval"] = fast_path_interval
            manifest["spec"]["canary"]["template"]["resources"] = {"limits": SMALL, "requests": SMALL}
            manifests.append(manifest)
        cluster.apply(manifests)
        print(f"    applied {min(start + APPLY_BATCH, count)}/{count} rollouts", flush=True)
    return names


def at_25(cluster: Cluster, ns: str) -> set[str]:
    items = cluster.custom.list_namespaced_custom_object("modelrollout.io", "v1alpha1", ns, "modelrollouts")["items"]
    return {it["metadata"]["name"] for it in items
            if (it.get("status") or {}).get("phase") == "Progressing"
            and (it.get("status") or {}).get("canaryWeight") == 25}


def canary_gone(cluster: Cluster, ns: str, canary: str) -> bool:
    """The canary Deployment wants 0 pods and has none left (its ReplicaSets' active pods:
    one GET, where listing a thousand pods every 50 ms would load the bench itself)."""
    try:
        deployment = cluster.apps.read_namespaced_deployment(canary, ns)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        return True
    return (deployment.spec.replicas or 0) == 0 and (deployment.status.replicas or 0) == 0


# ----------------------------------------------------------------------------- one N


@dataclass
class ScaleResult:
    count: int
    reached: int
    bring_up_seconds: float
    cycle_p50_ms: float = math.nan
    cycle_p99_ms: float = math.nan
    cycles_per_second: float = math.nan
    tick_lag_p50_s: float = math.nan
    tick_lag_p99_s: float = math.nan
    reactions: list[float] = field(default_factory=list)
    failed_breaches: int = 0
    rss_mib: float = math.nan
    cpu: dict[str, float] = field(default_factory=dict)
    queries_per_second: dict[str, float] = field(default_factory=dict)
    kube_calls_per_rollout_second: float = math.nan
    tick_batches_per_second: float = math.nan
    rollouts_per_tick_batch: float = math.nan
    status_writes_per_rollout_minute: float = math.nan

    def line(self) -> str:
        reaction = f"{statistics.median(self.reactions):.2f} s" if self.reactions else "n/a"
        return (f"bench-scale: N={self.count} rollouts, cycle p50 {self.cycle_p50_ms:.0f} ms "
                f"p99 {self.cycle_p99_ms:.0f} ms, reaction median {reaction}, RSS {self.rss_mib:.0f} MiB, "
                f"cpu {self.cpu.get('operator', math.nan):.2f} cores")

    def row(self) -> str:
        reactions = (f"{statistics.median(self.reactions):.2f} s / {max(self.reactions):.2f} s"
                     if self.reactions else "–")
        load = ", ".join(f"{k} {v:.2f}" for k, v in self.cpu.items() if k != "operator")
        return (f"| {self.count} ({self.reached} at 25 %, up in {self.bring_up_seconds:.0f} s) | "
                f"{self.cycle_p50_ms:.0f} / {self.cycle_p99_ms:.0f} ms ({self.cycles_per_second:.2f}/s) | "
                f"{self.tick_lag_p50_s:.2f} / {self.tick_lag_p99_s:.2f} s | {reactions} ({len(self.reactions)} ok, {self.failed_breaches} failed) | "
                f"{self.rss_mib:.0f} MiB | {self.cpu.get('operator', math.nan):.2f} | "
                f"{self.queries_per_second.get('fastPath', math.nan):.1f} + "
                f"{self.queries_per_second.get('tick', math.nan):.2f} "
                f"({self.tick_batches_per_second:.2f} tick batches/s of {self.rollouts_per_tick_batch:.1f}) | "
                f"{self.kube_calls_per_rollout_second:.3f} | {self.status_writes_per_rollout_minute:.3f} | {load} |")


def run_scale(cluster: Cluster, count: int, breaches: int, quiet_seconds: float, rng: random.Random,
              operator_args: tuple[str, ...] = (), settle_seconds: float = 0.0,
              fast_path_interval: str = "1s") -> ScaleResult:
    print(f"==> N={count}: bringing up {count} rollouts", flush=True)
    nodes = add_nodes(cluster, 2 * count + 10)
    ns = fresh_namespace(cluster, f"bench-scale-{count}")
    op = OperatorProcess(cluster, ns, *operator_args, name=f"scale-{count}").start()
    started = time.monotonic()
    try:
        names = create_rollouts(cluster, ns, count, fast_path_interval)
        deadline = time.monotonic() + max(300.0, 1.2 * count)
        reached: set[str] = set()
        while time.monotonic() < deadline:
            reached = at_25(cluster, ns)
            if len(reached) == count:
                break
            print(f"    {len(reached)}/{count} at 25 % after {time.monotonic() - started:.0f} s", flush=True)
            time.sleep(10)
        result = ScaleResult(count, len(reached), time.monotonic() - started)
        if len(reached) < count:
            print(f"    only {len(reached)} of {count} reached 25 % in {time.monotonic() - started:.0f} s; "
                  "measuring what is there", flush=True)
        time.sleep(5)
        if settle_seconds > 0:  # past the first ticks' transitions (inconclusive -> healthy, the first estimates)
            print(f"    settling for {settle_seconds:.0f} s", flush=True)
            time.sleep(settle_seconds)

        # A quiet minute: nothing changes, every rollout sits in its step.
        meter = CpuMeter({"operator": op.proc.pid, **load_pids(cluster)})
        before = operator_counters(op)
        meter.start()
        time.sleep(quiet_seconds)
        result.cpu = meter.stop()
        after = operator_counters(op)
        result.rss_mib = rss_mib(op.proc.pid)
        cycles = histogram_delta(before, after, "modelrollout_fast_path_cycle_duration_seconds")
        result.cycle_p50_ms = 1000 * quantile(0.5, cycles)
        result.cycle_p99_ms = 1000 * quantile(0.99, cycles)
        result.cycles_per_second = (cycles[-1][1] if cycles else 0.0) / quiet_seconds
        lags = histogram_delta(before, after, "modelrollout_tick_lag_seconds")
        result.tick_lag_p50_s, result.tick_lag_p99_s = quantile(0.5, lags), quantile(0.99, lags)
        result.queries_per_second = {
            path: (counter(after, "modelrollout_prometheus_queries_total", path=path)
                   - counter(before, "modelrollout_prometheus_queries_total", path=path)) / quiet_seconds
            for path in ("tick", "fastPath")}
        batches = (counter(after, "modelrollout_tick_batch_rollouts_count")
                   - counter(before, "modelrollout_tick_batch_rollouts_count"))
        result.tick_batches_per_second = batches / quiet_seconds
        result.rollouts_per_tick_batch = (counter(after, "modelrollout_tick_batch_rollouts_sum")
                                          - counter(before, "modelrollout_tick_batch_rollouts_sum")) / max(1.0, batches)
        active = max(1, len(reached))
        result.kube_calls_per_rollout_second = (counter(after, "modelrollout_kube_requests_total")
                                                - counter(before, "modelrollout_kube_requests_total")) \
            / quiet_seconds / active
        result.status_writes_per_rollout_minute = (counter(after, "modelrollout_status_writes_total")
                                                   - counter(before, "modelrollout_status_writes_total")) \
            / (quiet_seconds / 60) / active
        print(f"    quiet {quiet_seconds:.0f} s: {result.row()}", flush=True)

        # Breaches, one after another, on rollouts chosen at random, at random moments.
        for i, name in enumerate(rng.sample(sorted(reached), min(breaches, len(reached)))):
            time.sleep(rng.uniform(0.0, 15.0))
            canary = f"{name}-c"
            cluster.simulator.set_behaviour(ns, canary, latency_ms=DEGRADED)
            query = p95_query(ns, canary)

            def visible(query: str = query) -> bool:
                value = cluster.prom_scalar(query)
                return value is not None and value > CRITICAL_P95_MS

            seen = poll_probes([("visible", visible), ("zero", lambda c=canary: canary_gone(cluster, ns, c))],
                               timeout=120.0)
            if "visible" in seen and "zero" in seen:
                result.reactions.append(seen["zero"] - seen["visible"])
                print(f"    breach {i + 1} on {name}: visible → canary 0 pods {result.reactions[-1]:.2f} s",
                      flush=True)
            else:
                result.failed_breaches += 1
                print(f"    breach {i + 1} on {name}: FAILED (seen: {sorted(seen)})", flush=True)
        names.clear()
        return result
    finally:
        delete_rollouts(cluster, ns, timeout=max(120.0, count * 0.3))
        op.stop()
        drop_namespace(cluster, ns)
        remove_nodes(cluster, nodes)


HEADER = ("| rollouts | fast-path cycle p50 / p99 | tick lag p50 / p99 | reaction median / max | operator RSS "
          "| operator cores | Prometheus queries/s (fastPath + tick (tick batches)) | operator API calls/s per rollout "
          "| status writes per rollout per minute (quiet) | the bench's own load (cores) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="100,300,1000", help="numbers of rollouts, one run each")
    parser.add_argument("--breaches", type=int, default=5, help="degraded canaries per N")
    parser.add_argument("--quiet-seconds", type=float, default=60.0)
    parser.add_argument("--settle-seconds", type=float, default=150.0,
                        help="wait this long once every rollout is in its step before the quiet minute, so that "
                             "it holds no first-tick transitions (inconclusive -> healthy); 0: right away")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--status-heartbeat", default=None,
                        help="run the operator with --status-heartbeat (e.g. 5m): quiet ticks are not written")
    parser.add_argument("--fast-path-interval", default="1s",
                        help="every rollout's spec.analysis.fastPathInterval (100ms-60s, e.g. 250ms)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/scale.md")
    args = parser.parse_args()
    operator_args = ("--status-heartbeat", args.status_heartbeat) if args.status_heartbeat else ()
    counts = [int(c) for c in args.counts.split(",") if c]
    rng = random.Random(args.seed)

    cluster = Cluster.from_state()
    install_crds(cluster)
    results: list[ScaleResult] = []
    failures: list[str] = []
    out = args.output
    out.parent.mkdir(parents=True, exist_ok=True)
    for done, count in enumerate(counts, 1):
        try:
            results.append(run_scale(cluster, count, args.breaches, args.quiet_seconds, rng, operator_args,
                                     args.settle_seconds, args.fast_path_interval))
            print(results[-1].line(), flush=True)
        except Exception as exc:  # noqa: BLE001 — one N that breaks is reported, the others still run
            failures.append(f"bench-scale: N={count} rollouts FAILED: {type(exc).__name__}: {exc}")
            print(failures[-1], flush=True)
        # written after every N, so an interrupted run keeps what it measured
        failed = sum(r.failed_breaches for r in results)
        lines = [HEADER, "|" + "---|" * (HEADER.count(" | ") + 1), *(r.row() for r in results)]
        flags = " ".join(operator_args) or "none beyond the defaults"
        out.write_text(f"Operator flags: {flags}. fastPathInterval {args.fast_path_interval}. "
                       f"Settled {args.settle_seconds:.0f} s before the quiet minute.\n\n"
                       + "\n".join(lines)
                       + f"\n\nFailed breaches: {failed}. Failed runs: {done - len(results)}.\n"
                       + "".join(f"\n- {f}" for f in failures) + ("\n" if failures else ""))
    print(out.read_text())
    for r in results:
        print(r.line())


if __name__ == "__main__":
    main()
