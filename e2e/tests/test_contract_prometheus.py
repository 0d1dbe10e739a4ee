"""Contract of the Prometheus metrics source against the real local Prometheus, which
scrapes the simulator every second (e2e/cluster.sh).

Two services run side by side in one namespace: ``fraud`` (stable 3 pods, canary 1 pod,
400 RPS, a canary that is slower, less accurate, erring, drifting and missing its cache)
and ``ranker`` (1 + 1 pods, 200 RPS, healthy). One batch builds both snapshots; the
fields must match what the simulator was scripted to do. Then: batching (2 rollouts cost
the queries of 1), a template override, a broken override, an unsafe label value, and
an unreachable or silent Prometheus, which must become ``MetricsUnavailable`` for every
request within the timeout — never an exception.

Windows are seconds, not minutes, so the module runs in about half a minute.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from e2e.harness.cluster import Cluster
from e2e.harness.manifests import gpu_deployment
from modelrollout.adapters.metrics.batching import BatchingMetricsSource
from modelrollout.adapters.metrics.request import SnapshotRequest
from modelrollout.adapters.metrics.transport import PrometheusMetricsSource
from modelrollout.core.snapshot import Snapshot
from modelrollout.errors import MetricsUnavailable, UnsafeLabelValue

pytestmark = pytest.mark.e2e

S = timedelta(seconds=1)
WINDOW = 15 * S
CONDITIONS = ("accuracy", "latency", "confidenceDrift", "errorRate", "cache", "throughput", "anomaly")
# Low minimums: the stable has them in the 15 s window, so it is read concurrently.
MIN_SAMPLES = {c: 10.0 for c in CONDITIONS}

CANARY_BEHAVIOUR: dict[str, Any] = {
    "latency_ms": {"median": 2.0, "p95": 4.0},
    "error_rates": {"timeout": 0.05, "serialization": 0.0, "extraction": 0.0, "cache": 0.0, "other": 0.0},
    "accuracy": 0.70, "label_fraction": 0.5,
    "confidence_beta": {"a": 2.0, "b": 2.0},     # mean 0.5 vs the stable's Beta(8, 2), mean 0.8
    "cache_hit_rate": 0.90,
}


def make_request(namespace: str, stable: str, canary: str, **kw: Any) -> SnapshotRequest:
    return SnapshotRequest(
        key=f"{namespace}/{stable}", namespace=namespace, stable=stable, canary=canary,
        windows={c: WINDOW for c in CONDITIONS}, baseline_window=timedelta(minutes=10),
        series_window=20 * S, series_step=2 * S, interval_length=2 * S, interval_points=10, min_samples=MIN_SAMPLES,
        **kw,
    )


def make_source(cluster: Cluster, **kw: Any) -> tuple[PrometheusMetricsSource, list[tuple[str, float, bool]]]:
    calls: list[tuple[str, float, bool]] = []
    kw.setdefault("long_window_cache_ttl", None)
    source = PrometheusMetricsSource(cluster.prometheus_url, query_timeout=5.0, min_rate_window=4 * S,
                                     on_query=lambda path, seconds, ok: calls.append((path, seconds, ok)), **kw)
    return source, calls


def now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Services:
    namespace: str
    fraud: SnapshotRequest
    ranker: SnapshotRequest


@pytest.fixture(scope="module")
def services(cluster: Cluster) -> Iterator[Services]:
    """Both services deployed, registered, scripted, and scraped for > one window."""
    import uuid

    from kubernetes import client

    ns = f"e2e-promcontract-{uuid.uuid4().hex[:5]}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=ns, labels={"modelrollout.io/e2e": "true"})))
    try:
        cluster.wait_for(lambda: cluster.core.read_namespaced_service_account("default", ns), timeout=30,
                         message="default ServiceAccount")
        cluster.apply([
            gpu_deployment("fraud", ns, replicas=3, image="fraud:v1"),
            gpu_deployment("fraud-canary", ns, replicas=1, image="fraud:v2"),
            gpu_deployment("ranker", ns, replicas=1, image="ranker:v1"),
            gpu_deployment("ranker-canary", ns, replicas=1, image="ranker:v2"),
        ])
        for name, n in (("fraud", 3), ("fraud-canary", 1), ("ranker", 1), ("ranker-canary", 1)):
            cluster.wait_for(lambda name=name, n=n: cluster.deployment_available(ns, name, n), timeout=90,
                             message=f"{name} {n}/{n} available")
        sim = cluster.simulator
        sim.set_behaviour(ns, "fraud-canary", **CANARY_BEHAVIOUR)
        sim.register_service("fraud", ns, stable="fraud", canary="fraud-canary", router="replicas", rps=400)
        sim.register_service("ranker", ns, stable="ranker", canary="ranker-canary", router="replicas", rps=200)
        sel = f'namespace="{ns}",deployment="ranker-canary"'
        cluster.wait_for(lambda: cluster.prom_query(f"model_requests_total{{{sel}}}"), timeout=30,
                         message="simulator series in Prometheus")
        time.sleep(WINDOW.total_seconds() + 6)  # a full window of scrapes, and then some
        yield Services(ns, make_request(ns, "fraud", "fraud-canary"), make_request(ns, "ranker", "ranker-canary"))
    finally:
        try:
            cluster.simulator.forget_namespace(ns)
        finally:
            cluster.core.delete_namespace(ns)


def run(source: PrometheusMetricsSource, requests: list[SnapshotRequest]) -> tuple[dict[str, Any], float]:
    t0 = time.monotonic()
    out = asyncio.run(source.snapshots(requests, now()))
    return out, time.monotonic() - t0


def test_one_batch_matches_the_scripted_behaviour(cluster: Cluster, services: Services) -> None:
    source, calls = make_source(cluster)
    try:
        out, elapsed = run(source, [services.fraud, services.ranker])
    finally:
        source.close()
    print(f"\n[contract] batch of 2 rollouts: {len(calls)} queries in {elapsed * 1000:.0f} ms", file=sys.stderr)
    fraud, ranker = out["{}/fraud".format(services.namespace)], out["{}/ranker".format(services.namespace)]
    assert isinstance(fraud, Snapshot), fraud
    assert isinstance(ranker, Snapshot), ranker
    c, s = fraud.canary, fraud.stable
    assert c is not None and s is not None

    # Throughput follows the replica ratio: 400 RPS split 3:1, ranker 200 split 1:1.
    assert c.rps is not None and 70 < c.rps < 130, c.rps
    assert s.rps is not None and 240 < s.rps < 360, s.rps
    assert ranker.canary is not None and ranker.canary.rps is not None and 70 < ranker.canary.rps < 130

    # Latency: the canary's scripted p95 is 4 ms, the stable's 1.8 ms (defaults).
    assert c.latency_ms is not None and s.latency_ms is not None
    assert c.latency_ms.p95 is not None and 3.3 < c.latency_ms.p95 < 4.8, c.latency_ms
    assert s.latency_ms.p95 is not None and 1.4 < s.latency_ms.p95 < 2.3, s.latency_ms
    assert c.latency_ms.mean is not None and 1.8 < c.latency_ms.mean < 2.8
    assert c.latency_ms.p99 is not None and c.latency_ms.p99 > c.latency_ms.p95
    assert c.latency_ms.count is not None and c.latency_ms.count > 500
    # the buckets behind the quantiles (ms, cumulative, +Inf left to count): the p95 lies in them,
    # and the requests slower than it are about 5 % of the count
    from modelrollout.core.conditions.checks import slower_than
    buckets = c.latency_ms.buckets
    assert buckets is not None and buckets.le[0] < c.latency_ms.p95 < buckets.le[-1], buckets
    assert buckets.counts[-1] <= c.latency_ms.count + 1e-6
    assert 0.03 < slower_than(buckets, c.latency_ms.count, c.latency_ms.p95) / c.latency_ms.count < 0.07

    # Errors: 5 % timeouts on the canary and nothing else; the stable's 0.05 % per category.
    assert c.errors is not None and c.requests is not None and c.requests > 500
    assert 0.03 < (c.errors.timeout or 0) / c.requests < 0.075, (c.errors, c.requests)
    assert c.errors.serialization == 0 and c.errors.extraction == 0
    assert s.errors is not None and s.requests is not None and (s.errors.total() or 0) / s.requests < 0.01

    # Accuracy: 0.70 against the stable's 0.92.
    assert c.predictions_evaluated and c.predictions_correct is not None
    assert 0.6 < c.predictions_correct / c.predictions_evaluated < 0.8
    assert s.predictions_evaluated and s.predictions_correct is not None
    assert 0.88 < s.predictions_correct / s.predictions_evaluated < 0.96

    # Confidence: the canary's Beta(2,2) puts half its mass below 0.5, the stable's Beta(8,2) ~2 %.
    assert c.confidence is not None and s.confidence is not None
    for h in (c.confidence, s.confidence):
        assert h.le[-1] == 1.0 and h.le == sorted(h.le) and 0.5 in h.le
        assert all(b >= a for a, b in zip(h.counts, h.counts[1:]))
    half = c.confidence.le.index(0.5)
    assert 0.35 < c.confidence.counts[half] / c.confidence.total < 0.65
    assert s.confidence.counts[s.confidence.le.index(0.5)] / s.confidence.total < 0.1

    # Cache: 90 % hits on the canary.
    assert c.cache is not None and c.cache.hits is not None and c.cache.misses is not None
    assert 0.85 < c.cache.hits / (c.cache.hits + c.cache.misses) < 0.95
    assert c.cache.lookup_ms is not None and 0.1 < c.cache.lookup_ms < 1.0
    assert c.cache.lookup_buckets is not None and c.cache.lookup_buckets.le[0] < 1.0  # ms
    assert c.cache.lookup_buckets.counts[-1] <= c.cache.hits + c.cache.misses + 1e-6
    assert c.cache.evictions_per_minute == 0

    # Series: one point per 2 s over 20 s, oldest first, the recent ones present.
    assert c.series is not None and set(c.series) == {"latency_p95_ms", "error_rate", "rps"}
    assert len(c.series["rps"]) == 11 and all(v is not None for v in c.series["rps"][-5:])
    assert fraud.windows is not None and fraud.windows["latency"] == 15 and fraud.windows["anomaly"] == 20

    # Every query went through the hook, on the tick path.
    # 34 planned: 25 instant ones bundled into one query (one consistent read), 9 range ones
    # (3 anomaly series of the canary, 6 counts per interval of the stable).
    assert len(calls) == 10 and all(p == "tick" and ok for p, _, ok in calls)


def test_two_rollouts_cost_the_queries_of_one(cluster: Cluster, services: Services) -> None:
    source, calls = make_source(cluster)
    try:
        out, _ = run(source, [services.fraud])
        assert all(isinstance(v, Snapshot) for v in out.values()), out
        one = len(calls)
        calls.clear()
        out, _ = run(source, [services.fraud, services.ranker])
        assert all(isinstance(v, Snapshot) for v in out.values()), out
        two = len(calls)
        # 50 rollouts (48 of them with nothing in Prometheus): still the same queries.
        phantom = [make_request(services.namespace, f"svc{i}", f"svc{i}-canary") for i in range(48)]
        calls.clear()
        out, elapsed = run(source, [services.fraud, services.ranker, *phantom])
        fifty = len(calls)
    finally:
        source.close()
    print(f"\n[contract] queries: 1 rollout {one}, 2 rollouts {two}, 50 rollouts {fifty} "
          f"(batch of 50 in {elapsed * 1000:.0f} ms)", file=sys.stderr)
    # 34 planned queries: the 25 instant ones as one bundle (one consistent read), 9 range
    assert one == two == fifty == 10
    assert all(isinstance(v, Snapshot) for v in out.values()), out
    assert all(ok for _, _, ok in calls)
    ghost = out[f"{services.namespace}/svc0"]
    assert isinstance(ghost, Snapshot) and ghost.canary is not None and ghost.canary.rps is None  # absent ≠ error


def test_exact_counts_are_the_counters_differences_over_the_window(cluster: Cluster, services: Services) -> None:
    """The fast path on a young step: each critical condition read as the counters' exact
    difference over its window, for both sides, checked against the raw per-series
    counters Prometheus holds at both ends of the window (no increase() extrapolation)."""
    at = now()
    since = at - 8 * S
    fast = {"accuracy", "latency", "confidenceDrift", "errorRate", "cache"}
    request = dataclasses.replace(services.fraud, key=f"{services.namespace}/exact", windows={c: 8 * S for c in fast},
                                  series_window=None, series_step=None, interval_points=0, exact=frozenset(fast))
    source, calls = make_source(cluster)
    try:
        out = asyncio.run(source.snapshots([request], at))
    finally:
        source.close()
    snap = out[request.key]
    assert isinstance(snap, Snapshot), snap
    assert len(calls) == 1, calls  # one bundle, the stable's baseline windows included

    def counted(metric: str, deployment: str) -> float:
        def values(when: datetime) -> dict[tuple[tuple[str, str], ...], float]:
            rows = cluster.prom_query(f'{metric}{{namespace="{services.namespace}",deployment="{deployment}"}}'
                                      f' @ {when.timestamp():.3f}')
            return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in rows}
        before, after = values(since), values(at)
        return sum(v - before[k] if k in before and v >= before[k] else v for k, v in after.items())

    for side, deployment in ((snap.canary, "fraud-canary"), (snap.stable, "fraud")):
        assert side is not None
        assert side.requests == pytest.approx(counted("model_requests_total", deployment), abs=1e-6)
        assert side.requests > 0
        assert side.predictions_evaluated == pytest.approx(
            counted("model_predictions_evaluated_total", deployment), abs=1e-6)
        assert side.latency_ms is not None and side.latency_ms.count == pytest.approx(
            counted("model_request_duration_seconds_count", deployment), abs=1e-6)
    c = snap.canary
    assert c is not None and c.latency_ms is not None and c.latency_ms.p95 is not None
    assert 3.3 < c.latency_ms.p95 < 4.8, c.latency_ms  # the canary's scripted p95, as over a window
    assert c.confidence is not None and c.confidence.total == pytest.approx(
        counted("model_prediction_confidence_count", "fraud-canary"), abs=1e-6)
    assert snap.windows is not None and snap.windows["latency"] == 8


def test_template_override_is_used(cluster: Cluster, services: Services) -> None:
    doubled = "sum by ({by}) (rate(model_requests_total{{selector}}[{window}])) * 1000"
    ranker = make_request(services.namespace, "ranker", "ranker-canary", queries={"rps": doubled})
    source, calls = make_source(cluster)
    try:
        out, _ = run(source, [services.fraud, ranker])
    finally:
        source.close()
    fraud, over = out[services.fraud.key], out[ranker.key]
    assert isinstance(fraud, Snapshot) and isinstance(over, Snapshot)
    assert fraud.canary is not None and fraud.canary.rps is not None and fraud.canary.rps < 200
    assert over.canary is not None and over.canary.rps is not None and 70_000 < over.canary.rps < 130_000
    assert len(calls) == 11  # the override is a query of its own; the rest is one bundle + 9 range queries


def test_broken_override_fails_only_its_rollout(cluster: Cluster, services: Services) -> None:
    broken = "sum by ({by}) (rate(model_requests_total{{selector}}[{window}])"  # unbalanced
    ranker = make_request(services.namespace, "ranker", "ranker-canary", queries={"rps": broken})
    source, calls = make_source(cluster)
    try:
        out, _ = run(source, [services.fraud, ranker])
    finally:
        source.close()
    assert isinstance(out[services.fraud.key], Snapshot)
    err = out[ranker.key]
    assert isinstance(err, MetricsUnavailable) and "rps" in str(err) and "400" in str(err), err
    assert [ok for _, _, ok in calls].count(False) == 1


def test_batching_source_coalesces_concurrent_ticks(cluster: Cluster, services: Services) -> None:
    source, calls = make_source(cluster)
    batching = BatchingMetricsSource(source, window=0.05)

    async def ticks() -> list[Any]:
        at = now()
        return await asyncio.gather(batching.snapshot(services.fraud, at), batching.snapshot(services.ranker, at))

    try:
        results = asyncio.run(ticks())
    finally:
        source.close()
    assert all(isinstance(r, Snapshot) for r in results)
    assert batching.batches == 1 and len(calls) == 10


def test_unsafe_label_value_is_refused() -> None:
    with pytest.raises(UnsafeLabelValue, match=r"spec\.canary\.deployment"):
        make_request("ml", "fraud", 'fraud",namespace=~".*')
    with pytest.raises(UnsafeLabelValue, match=r"metadata\.namespace"):
        make_request("ML_prod", "fraud", "fraud-canary")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_prometheus_is_unavailable_for_every_request() -> None:
    reqs = [make_request("ml", "fraud", "fraud-canary"), make_request("risk", "ranker", "ranker-canary")]
    calls: list[tuple[str, float, bool]] = []
    source = PrometheusMetricsSource(f"http://127.0.0.1:{_closed_port()}", query_timeout=2.0,
                                     on_query=lambda p, s, ok: calls.append((p, s, ok)))
    t0 = time.monotonic()
    try:
        out = asyncio.run(source.snapshots(reqs, now(), path="fastPath"))
    finally:
        source.close()
    elapsed = time.monotonic() - t0
    assert set(out) == {r.key for r in reqs}
    assert all(isinstance(v, MetricsUnavailable) and "unreachable" in str(v) for v in out.values()), out
    assert elapsed < 2.0, elapsed
    assert calls and all(p == "fastPath" and not ok for p, _, ok in calls)


def test_silent_prometheus_times_out_within_the_timeout() -> None:
    """A server that accepts the connection and never answers (a hung Prometheus)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        port = server.getsockname()[1]
        source = PrometheusMetricsSource(f"http://127.0.0.1:{port}", query_timeout=1.0)
        reqs = [make_request("ml", "fraud", "fraud-canary"), make_request("risk", "ranker", "ranker-canary")]
        t0 = time.monotonic()
        try:
            out = asyncio.run(source.snapshots(reqs, now()))
        finally:
            source.close()
        elapsed = time.monotonic() - t0
    assert all(isinstance(v, MetricsUnavailable) and "timed out" in str(v) for v in out.values()), out
    assert elapsed < 2.5, elapsed
