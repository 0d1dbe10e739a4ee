"""Reaction-time benchmark (``make bench-reaction``): not a test.

On the local cluster with the simulator, a canary at 25 % of 20 pods has its latency
degraded past the critical bound. We time from the breach being *visible in Prometheus*
(the condition's own PromQL: p95 over the latency window, above the critical bound,
polled every 50 ms) to the canary having 0 pods (replicas router) or weight 0 on the
HTTPRoute (gatewayAPI router). Two kinds of breach:

* **late in a step**: the canary serves healthy until its step is older than the latency
  window, then degrades;
* **at the step's start**: the canary is slow from its first request (degraded before
  the rollout is applied); our fast path reads exact counter differences while the step
  is younger than the window (docs/design.md#fast-path).

Rows:

* ours at analysis intervals 5 s and 30 s, both routers, late breaches (the fast path
  should make the interval irrelevant); ours at the last interval, replicas router,
  breach at the step's start;
* ours on an OOMKilled canary pod: from the pod's OOMKilled status in the apiserver to
  the canary at 0 pods (the pod watch), the same end point as the latency rows;
* Argo Rollouts v1.10.1 (built from its Go module by ``e2e/build_argo.sh``) on the same
  query and threshold: basic canary of 20 replicas, background analysis every 1 s and
  every 5 s, ``failureLimit: 0`` (``bench/argo_rollouts.py``), both kinds of breach;
* beside each reaction, the Prometheus queries per second its controller sent during the
  trial (ours: the operator's ``modelrollout_prometheus_queries_total``; Argo: its
  AnalysisRuns' measurement count over their lifetime, one query each);
* query load: Prometheus queries per second by path (tick / fastPath) with 1, 10 and
  100 rollouts at 25 %, from the operator's own ``modelrollout_prometheus_queries_total``.

Trials that do not finish are counted in the ``failed`` column, never dropped. Also
counted: rollbacks taken by the fast path on healthy rollouts during the run (the target
is zero). Needs the local cluster (``make cluster-up``); prints a Markdown report and
writes it to ``bench/results/reaction.md``.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubernetes import client  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from e2e.harness.cluster import Cluster  # noqa: E402
from e2e.harness.manifests import gpu_deployment, http_route, rollout_manifest  # noqa: E402
from e2e.harness.operator_process import OperatorProcess, delete_rollouts, install_crds  # noqa: E402
from e2e.harness.scenario import RolloutScenario  # noqa: E402

from bench.argo_rollouts import first_samples_query  # noqa: E402

LATENCY_WINDOW = "60s"          # the latency condition's window in these rollouts, and the query's
CRITICAL_P95_MS = 6.0           # balanced: p95 bound 3 ms × critical factor 2
DEGRADED = {"median": 9.0, "p95": 16.0}
TOTAL_PODS = 20
TRIAL_TIMEOUT = 240.0


def p95_query(namespace: str, deployment: str, window: str = LATENCY_WINDOW) -> str:
    return (f'histogram_quantile(0.95, sum by (le) (rate(model_request_duration_seconds_bucket'
            f'{{namespace="{namespace}",deployment="{deployment}"}}[{window}]))) * 1000')


def fresh_namespace(cluster: Cluster, prefix: str) -> str:
    name = f"{prefix}-{int(time.time() * 1000) % 10_000_000}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    cluster.wait_for(lambda: cluster.core.read_namespaced_service_account("default", name), timeout=30)
    return name


def drop_namespace(cluster: Cluster, ns: str) -> None:
    cluster.simulator.forget_namespace(ns)
    try:
        cluster.core.delete_namespace(ns)
    except client.ApiException:
        pass


def operator_counters(op: OperatorProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=5).read().decode()
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def _counters_if_up(op: OperatorProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
    try:
        return operator_counters(op)
    except OSError:  # the metrics endpoint is not listening yet
        return None


def counter(values: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in values.items() if n == name and all(dict(ls).get(k) == x for k, x in labels.items()))


def bench_rollout(name: str, ns: str, stable: str, canary: str, interval: str, **extra: Any) -> dict[str, Any]:
    manifest = rollout_manifest(name, ns, stable=stable, canary=canary, interval=interval,
                                steps=[{"weight": 25, "duration": "1h"}, {"weight": 100, "duration": "1h"}], **extra)
    # The same query and threshold as Argo's AnalysisTemplate: p95 over 60 s, critical at
    # 6 ms. Our mean, p99 and stable-relative checks are moved out of reach, or they (the
    # mean's critical bound is 4 ms) would act before the p95 is "visible" at all.
    manifest["spec"]["analysis"]["conditions"]["latency"].update(
        {"window": LATENCY_WINDOW, "meanMs": 1000, "p99Ms": 1000, "maxStableRatio": 100})
    del manifest["spec"]["analysis"]["baselineWindow"]  # the default 24 h, as in production (cached 60 s)
    return manifest


def poll_probes(probes: Sequence[tuple[str, Callable[[], bool]]], timeout: float) -> dict[str, float]:
    """Monotonic time at which each probe first held (polled every 50 ms), for those that did."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(seen) < len(probes):
        for label, probe in probes:
            if label not in seen and probe():
                seen[label] = time.monotonic()
        time.sleep(0.05)
    return seen


def poll_until(*probes: tuple[str, Callable[[], bool]], timeout: float = TRIAL_TIMEOUT) -> dict[str, float]:
    """Monotonic time at which each probe first held; raises if one never did."""
    seen = poll_probes(probes, timeout)
    missing = [label for label, _ in probes if label not in seen]
    if missing:
        raise RuntimeError(f"trial timed out waiting for: {', '.join(missing)}")
    return seen


@dataclass
class Trial:
    seconds: float
    path: str
    trigger: str
    queries_per_second: float | None = None  # Prometheus queries the controller sent, per second of the trial


@dataclass
class Series:
    label: str
    trials: list[Trial] = field(default_factory=list)
    failed: int = 0  # trials that did not finish (timed out or broke): counted, never dropped silently

    def row(self) -> str:
        times = [t.seconds for t in self.trials]
        qps = [t.queries_per_second for t in self.trials if t.queries_per_second is not None]
        rate = f"{statistics.median(qps):.2f}" if qps else "–"
        if not times:
            return f"| {self.label} | 0 | {self.failed} | – | – | – | {rate} | – |"
        paths = ", ".join(sorted({t.path for t in self.trials}))
        return (f"| {self.label} | {len(times)} | {self.failed} | {statistics.median(times):.2f} s | "
                f"{min(times):.2f} s | {max(times):.2f} s | {rate} | {paths} |")

    @property
    def median(self) -> float:
        return statistics.median(t.seconds for t in self.trials)


# ------------------------------------------------------------------------------- ours


def latency_trial(cluster: Cluster, interval: str, router: str, at_start: bool = False) -> Trial:
    """One breach: late in a step (the canary degraded once its step is older than the
    latency window) or, ``at_start``, a canary slow from its first request (degraded
    before the rollout is applied, so the breach comes with the first step)."""
    ns = fresh_namespace(cluster, f"bench-{router.lower()}")
    op = OperatorProcess(cluster, ns, name="reaction").start()
    try:
        route = None
        extra: dict[str, Any] = {}
        if router == "gatewayAPI":
            route = "fraud"
            cluster.apply(http_route(route, ns, {"fraud": 100, "fraud-canary": 0}))
            extra["traffic"] = {"router": "gatewayAPI", "httpRoute": {"name": route}}
        s = RolloutScenario(cluster, ns, replicas=TOTAL_PODS, router=router, http_route=route)

        def canary_weight() -> int:
            obj = cluster.custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", ns, "httproutes",
                                                              "fraud")
            refs = {b["name"]: b.get("weight", 1) for b in obj["spec"]["rules"][0]["backendRefs"]}
            return int(refs.get(s.canary, 0))

        up = not at_start  # at the step's start the canary is not up yet: 0 means "not up", not "rolled back"

        def at_zero() -> bool:
            nonlocal up
            if router == "gatewayAPI":
                weight = canary_weight()
                up = up or weight > 0
                return up and weight == 0
            try:
                replicas = s.replicas(s.canary)
            except client.ApiException as exc:  # at the step's start the canary may not exist yet
                if exc.status != 404:
                    raise
                replicas = 0
            pods = _pods(cluster, ns, s.canary)
            up = up or replicas > 0 or pods > 0
            return up and replicas == 0 and pods == 0

        if at_start:
            cluster.simulator.set_behaviour(ns, s.canary, latency_ms=DEGRADED)
            before = cluster.wait_for(lambda: _counters_if_up(op), timeout=30, message="operator metrics")
            s.apply(bench_rollout(s.name, ns, s.stable, s.canary, interval, **extra))
        else:
            s.apply(bench_rollout(s.name, ns, s.stable, s.canary, interval, **extra))
            s.wait_status(lambda st: st.get("canaryWeight") == 25 and st.get("risk"), timeout=120,
                          message="analysing")
            if router == "gatewayAPI":
                cluster.wait_for(lambda: canary_weight() == 25, timeout=30, message="canary at 25% on the route")
            else:
                cluster.wait_for(lambda: cluster.deployment_available(ns, s.canary, 5), timeout=60,
                                 message="canary at 5 of 20 pods")
            wait_until_step_covers_window(s)
            before = operator_counters(op)
            cluster.simulator.set_behaviour(ns, s.canary, latency_ms=DEGRADED)
        started = time.monotonic()
        # A canary slow from its first request shows the breach with its first scrape; the
        # window query's rate() needs two (same definition on Argo's side).
        query = first_samples_query(ns, s.canary) if at_start else p95_query(ns, s.canary)

        def visible() -> bool:
            value = cluster.prom_scalar(query)
            return value is not None and value > CRITICAL_P95_MS

        seen = poll_until(("visible", visible), ("zero", at_zero))
        after = operator_counters(op)
        rate = (counter(after, "modelrollout_prometheus_queries_total")
                - counter(before, "modelrollout_prometheus_queries_total")) / (seen["zero"] - started)
        rollback = s.wait_status(lambda st: st.get("rollback"), timeout=30, message="rollback recorded")["rollback"]
        offset = time.time() - time.monotonic()
        print(f"    visible at {_clock(seen['visible'] + offset)}, canary at 0 at {_clock(seen['zero'] + offset)}, "
              f"rollback started at {rollback.get('startedAt')}", flush=True)
        return Trial(seen["zero"] - seen["visible"], rollback.get("path", "?"), rollback.get("trigger", "?"), rate)
    finally:
        delete_rollouts(cluster, ns)
        op.stop()
        drop_namespace(cluster, ns)


def wait_until_step_covers_window(s: RolloutScenario, window_seconds: float = 61.0) -> None:
    """The fast path judges a condition once the step is older than its window (younger
    series are extrapolated unreliably by increase(); see core/fastpath.py): degrade after."""
    from datetime import datetime, timezone

    started = datetime.fromisoformat(s.status()["stepStartedAt"].replace("Z", "+00:00"))
    remaining = window_seconds - (datetime.now(timezone.utc) - started).total_seconds()
    if remaining > 0:
        time.sleep(remaining)


def _clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}"


def _pods(cluster: Cluster, ns: str, deployment: str) -> int:
    """Canary pods that can still serve: not being deleted and not terminal. A ReplicaSet
    leaves its Failed pods (an OOMKilled one) in place when scaled to 0; they serve
    nothing and only the pod garbage collector removes them, so they do not count."""
    pods = cluster.core.list_namespaced_pod(ns, label_selector="modelrollout.io/role=canary").items
    return sum(1 for p in pods if p.metadata.deletion_timestamp is None
               and (p.status.phase if p.status else None) not in ("Failed", "Succeeded"))


def oom_trial(cluster: Cluster, interval: str) -> Trial:
    ns = fresh_namespace(cluster, "bench-oom")
    op = OperatorProcess(cluster, ns, name="reaction-oom").start()
    try:
        s = RolloutScenario(cluster, ns, replicas=TOTAL_PODS)
        s.apply(bench_rollout(s.name, ns, s.stable, s.canary, interval))
        s.wait_status(lambda st: st.get("canaryWeight") == 25 and st.get("risk"), timeout=120, message="analysing")
        cluster.wait_for(lambda: cluster.deployment_available(ns, s.canary, 5), timeout=60, message="canary 5 pods")
        cluster.apps.patch_namespaced_deployment(s.canary, ns, {
            "spec": {"template": {"metadata": {"labels": {"modelrollout.io/inject": "oomkilled"}}}}})

        def oom_visible() -> bool:
            for pod in cluster.core.list_namespaced_pod(ns, label_selector="modelrollout.io/role=canary").items:
                for cs in (pod.status.container_statuses or []):
                    term = cs.state.terminated if cs.state else None
                    if term is not None and (term.reason == "OOMKilled" or term.exit_code == 137):
                        return True
            return False

        # The same end point as the latency rows: no canary replica and no canary pod left.
        seen = poll_until(("visible", oom_visible),
                          ("zero", lambda: s.replicas(s.canary) == 0 and _pods(cluster, ns, s.canary) == 0))
        rollback = s.wait_status(lambda st: st.get("rollback"), timeout=30, message="rollback recorded")["rollback"]
        return Trial(max(0.0, seen["zero"] - seen["visible"]), rollback.get("path", "?"), rollback.get("trigger", "?"))
    finally:
        delete_rollouts(cluster, ns)
        op.stop()
        drop_namespace(cluster, ns)


def query_load(cluster: Cluster, counts: list[int], measure_seconds: float) -> list[str]:
    """Queries per second by path with N healthy rollouts at 25 % (one pod each: kwok's
    nodes hold 110 pods, and the query count does not depend on pods)."""
    rows = []
    for count in counts:
        ns = fresh_namespace(cluster, "bench-load")
        op = OperatorProcess(cluster, ns, name=f"load-{count}").start()
        try:
            for i in range(count):
                name = f"m{i:03d}"
                deployment = gpu_deployment(name, ns, replicas=1, gpus=0)
                small = {"cpu": "10m", "memory": "16Mi"}
                deployment["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": small,
                                                                                       "requests": small}
                cluster.apply(deployment)
                cluster.simulator.register_service(name, ns, stable=name, canary=f"{name}-c", rps=2000.0)
                manifest = bench_rollout(name, ns, name, f"{name}-c", "30s")
                manifest["spec"]["canary"]["template"]["resources"] = {"limits": small, "requests": small}
                cluster.apply(manifest)

            def phases() -> collections.Counter[str]:
                items = cluster.custom.list_namespaced_custom_object("modelrollout.io", "v1alpha1", ns,
                                                                     "modelrollouts")["items"]
                return collections.Counter(f"{(it.get('status') or {}).get('phase')}@"
                                           f"{(it.get('status') or {}).get('canaryWeight')}" for it in items)
            try:
                cluster.wait_for(lambda: phases()["Progressing@25"] == count, timeout=300, interval=2.0,
                                 message=f"{count} rollouts at 25%")
            except Exception:  # noqa: BLE001 — measure what is there, and say so
                print(f"  not all {count} rollouts reached 25 %: {dict(phases())}", flush=True)
            at_25 = phases()["Progressing@25"]
            time.sleep(5)
            before = operator_counters(op)
            time.sleep(measure_seconds)
            after = operator_counters(op)
            rate = {path: (counter(after, "modelrollout_prometheus_queries_total", path=path)
                           - counter(before, "modelrollout_prometheus_queries_total", path=path)) / measure_seconds
                    for path in ("tick", "fastPath")}
            fast_rollbacks = counter(after, "modelrollout_rollbacks_total", path="fastPath")
            cycles = (counter(after, "modelrollout_fast_path_cycle_duration_seconds_count")
                      - counter(before, "modelrollout_fast_path_cycle_duration_seconds_count"))
            busy = (counter(after, "modelrollout_fast_path_cycle_duration_seconds_sum")
                    - counter(before, "modelrollout_fast_path_cycle_duration_seconds_sum"))
            mean_cycle = busy / cycles if cycles else float("nan")
            rows.append(f"| {count} ({at_25} at 25 %) | {rate['fastPath']:.1f} | {rate['tick']:.2f} | "
                        f"{cycles / measure_seconds:.2f} | {mean_cycle * 1000:.0f} ms | {fast_rollbacks:.0f} |")
            print(f"  query load with {count} rollouts: fastPath {rate['fastPath']:.1f}/s, tick {rate['tick']:.2f}/s, "
                  f"{cycles / measure_seconds:.2f} cycles/s of {mean_cycle * 1000:.0f} ms, "
                  f"fast-path rollbacks {fast_rollbacks:.0f}", flush=True)
        finally:
            delete_rollouts(cluster, ns, timeout=120)
            op.stop()
            drop_namespace(cluster, ns)
    return rows


# ------------------------------------------------------------------------------- main


def run_series(label: str, trials: int, trial: Callable[[], Trial]) -> Series:
    series = Series(label)
    for i in range(trials):
        try:
            result = trial()
        except Exception as exc:  # noqa: BLE001 — one broken trial is counted and reported, not fatal
            series.failed += 1
            print(f"  {label}: trial {i + 1} FAILED: {exc}", flush=True)
            continue
        series.trials.append(result)
        print(f"  {label}: trial {i + 1}: {result.seconds:.2f}s (path {result.path}, trigger {result.trigger})",
              flush=True)
    return series


BREACHES = {"late": "breach late in a step", "start": "canary bad from its first request"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--intervals", default="5s,30s")
    parser.add_argument("--routers", default="replicas,gatewayAPI")
    parser.add_argument("--breaches", default="late,start",
                        help="late: degrade once the step covers the window; start: degraded from the first request "
                             "(replicas router, the last interval)")
    parser.add_argument("--argo-intervals", default="1s,5s", help="Argo's AnalysisTemplate intervals")
    parser.add_argument("--no-argo", action="store_true", help="skip Argo Rollouts (no Go build)")
    parser.add_argument("--no-oom", action="store_true", help="skip the OOMKilled row")
    parser.add_argument("--load", default="1,10,100", help="rollout counts for the query-load measurement ('' skips)")
    parser.add_argument("--load-seconds", type=float, default=60.0)
    args = parser.parse_args()
    breaches = [b for b in args.breaches.split(",") if b]
    unknown = set(breaches) - set(BREACHES)
    if unknown:
        parser.error(f"--breaches: unknown {sorted(unknown)}; known: {', '.join(BREACHES)}")
    intervals = args.intervals.split(",")

    cluster = Cluster.from_state()
    install_crds(cluster)
    ours: dict[str, list[Series]] = {b: [] for b in breaches}
    others: list[Series] = []
    if "late" in breaches:
        for interval in intervals:
            for router in args.routers.split(","):
                label = f"ours, {router}, interval {interval}, {BREACHES['late']}: visible → canary " + (
                    "0 pods" if router == "replicas" else "weight 0")
                ours["late"].append(run_series(label, args.trials,
                                               lambda i=interval, r=router: latency_trial(cluster, i, r)))
    if "start" in breaches:
        label = f"ours, replicas, interval {intervals[-1]}, {BREACHES['start']}: visible → canary 0 pods"
        ours["start"].append(run_series(label, args.trials,
                                        lambda: latency_trial(cluster, intervals[-1], "replicas", at_start=True)))
    if not args.no_oom:
        others.append(run_series(f"ours, OOMKilled pod → canary 0 pods (interval {intervals[-1]})",
                                 args.trials, lambda: oom_trial(cluster, intervals[-1])))
    argo: dict[str, list[Series]] = {b: [] for b in breaches}
    if not args.no_argo:
        from bench.argo_rollouts import argo_reaction_detail, ensure_built  # builds nothing until called

        print("==> building Argo Rollouts (cached after the first time)", flush=True)
        argo_dir = ensure_built()
        for breach in breaches:
            for argo_interval in args.argo_intervals.split(","):
                def one_argo(i: str = argo_interval, b: str = breach) -> Trial:
                    t = argo_reaction_detail(cluster, window=LATENCY_WINDOW, critical_ms=CRITICAL_P95_MS,
                                             argo_dir=argo_dir, interval=i, at_start=b == "start")
                    return Trial(t.to_no_pods, "analysisRun", "latency", t.queries_per_second)
                argo[breach].append(run_series(
                    f"Argo Rollouts v1.10.1, background analysis {argo_interval}, failureLimit 0, "
                    f"{BREACHES[breach]}: visible → canary 0 pods", args.trials, one_argo))

    lines = ["| measurement | trials | failed | median | min | max | queries/s | path |",
             "|---|---|---|---|---|---|---|---|"]
    for breach in breaches:
        lines += [s.row() for s in ours[breach] + argo[breach]]
    lines += [s.row() for s in others]
    for breach in breaches:
        for a in argo[breach]:
            for s in ours[breach]:
                if s.trials and a.trials:
                    lines.append(f"| median ratio ours/Argo ({s.label.split(':')[0]} / "
                                 f"{a.label.split(',')[1].strip()}) | | | {s.median / a.median:.2f} | | | | |")
    if args.load:
        lines += ["", "| rollouts at 25 % | fastPath queries/s | tick queries/s | fast-path cycles/s | mean cycle "
                  "| fast-path rollbacks (healthy) |", "|---|---|---|---|---|---|"]
        lines += query_load(cluster, [int(c) for c in args.load.split(",") if c], args.load_seconds)
    report = "\n".join(lines)
    print(report)
    failed = sum(s.failed for group in (*ours.values(), *argo.values(), others) for s in group)
    print(f"failed trials: {failed}")
    out = ROOT / "bench/results/reaction.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report + f"\n\nFailed trials: {failed}.\n")


if __name__ == "__main__":
    main()
