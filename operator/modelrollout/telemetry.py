"""The operator's own Prometheus metrics (prometheus_client), on a /metrics port.

One registry per process so tests can run several operators in one interpreter.
Names are stable API: the Grafana dashboard (``charts/modelrollout/dashboards/``) and
alerts are built on them, and ``tests/unit/test_dashboard.py`` fails when a panel reads a
metric that is not defined here.

Series that a dashboard panel divides or rates are created at zero when the process
starts (the query counters for every path), so "no errors yet" shows as 0, not as
"no data".
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .api.models import DecisionPath, Phase

QUERY_PATHS: tuple[DecisionPath, ...] = tuple(p for p in DecisionPath if p.queries_prometheus)
"""Values of the ``path`` label of the Prometheus-query metrics (who issued the query)."""


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._conditions: dict[tuple[str, str], set[str]] = {}
        r = self.registry
        self.phase = Gauge("modelrollout_phase", "1 for the rollout's current phase, 0 otherwise",
                           ["namespace", "name", "phase"], registry=r)
        self.weight = Gauge("modelrollout_canary_weight_percent", "canary traffic share", ["namespace", "name"], registry=r)
        self.step = Gauge("modelrollout_current_step", "index of the current step", ["namespace", "name"], registry=r)
        self.score = Gauge("modelrollout_risk_score", "weighted risk score in [0,1]", ["namespace", "name"], registry=r)
        self.severity = Gauge("modelrollout_condition_severity", "per-condition severity in [0,1]",
                              ["namespace", "name", "condition"], registry=r)
        self.rollbacks = Counter("modelrollout_rollbacks_total", "rollbacks started, by trigger and path",
                                 ["namespace", "name", "trigger", "path"], registry=r)
        self.decisions = Counter("modelrollout_decisions_total", "decisions taken, by action and path",
                                 ["action", "path"], registry=r)
        self.tick_seconds = Histogram("modelrollout_tick_duration_seconds", "time of one analysis tick",
                                      buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)
        self.queries = Counter("modelrollout_prometheus_queries_total", "PromQL queries issued, by path",
                               ["path"], registry=r)
        self.query_errors = Counter("modelrollout_prometheus_query_errors_total", "PromQL queries that failed",
                                    ["path"], registry=r)
        self.query_seconds = Histogram("modelrollout_prometheus_query_duration_seconds", "PromQL query latency",
                                       ["path"], registry=r)

        self.tick_batch_rollouts = Histogram(
            "modelrollout_tick_batch_rollouts",
            "rollouts per batch of tick snapshots sent to one Prometheus (the ticks of an instant that arrive "
            "within 50 ms of one another share a batch and its queries)",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000), registry=r)
        self.tick_lag_seconds = Histogram(
            "modelrollout_tick_lag_seconds", "how late an analysis tick ran after it was due (status.nextEvaluationAt)",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.status_writes = Counter("modelrollout_status_writes_total", "status patches of ModelRollouts",
                                     registry=r)
        self.status_writes_held = Counter(
            "modelrollout_status_writes_held_total",
            "statuses that changed nothing material, held back until the heartbeat (--status-heartbeat)", registry=r)
        self.kube_requests = Counter(
            "modelrollout_kube_requests_total",
            "Kubernetes API calls of the operator's own (kopf's watches and its bookkeeping aside), by verb",
            ["verb"], registry=r)

        self.fast_path_cycle_seconds = Histogram(
            "modelrollout_fast_path_cycle_duration_seconds", "time of one fast-path cycle (queries + decisions)",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=r)
        self.fast_path_rollouts = Gauge("modelrollout_fast_path_rollouts",
                                        "rollouts checked by the last fast-path cycle", registry=r)

        self.shard_members = Gauge("modelrollout_shard_members",
                                   "replicas of the shard group whose Lease lives, as this replica sees them (--shards)",
                                   registry=r)
        self.shard_acting = Gauge("modelrollout_shard_acting",
                                  "1 while this replica may act (its Lease renewed, its join grace over), else 0",
                                  registry=r)
        self.shard_rollouts = Gauge("modelrollout_shard_rollouts", "rollouts this replica drives now", registry=r)

        self.operator_errors = Counter(
            "modelrollout_operator_errors_total",
            "defects of the operator itself (exceptions that are neither the cluster's nor Prometheus'), by where",
            ["where"], registry=r)
        for where in ("reconcile", DecisionPath.FAST_PATH):
            self.operator_errors.labels(where)

        for path in QUERY_PATHS:  # exported at 0 from the start (see the module docstring)
            self.queries.labels(path)
            self.query_errors.labels(path)
            self.query_seconds.labels(path)

    def observe_query(self, path: DecisionPath, seconds: float, ok: bool) -> None:
        self.queries.labels(path).inc()
        self.query_seconds.labels(path).observe(seconds)
        if not ok:
            self.query_errors.labels(path).inc()

    def record_status(self, namespace: str, name: str, phase: Phase, weight: int, step: int,
                      score: float | None, severities: Iterable[tuple[str, float]]) -> None:
        for p in Phase:
            self.phase.labels(namespace, name, p.value).set(1.0 if p == phase else 0.0)
        self.weight.labels(namespace, name).set(weight)
        self.step.labels(namespace, name).set(step)
        if score is not None:
            self.score.labels(namespace, name).set(score)
        known = self._conditions.setdefault((namespace, name), set())
        for condition, severity in severities:
            self.severity.labels(namespace, name, condition).set(severity)
            known.add(condition)

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted rollout's series so dashboards don't show ghosts."""
        for gauge in (self.weight, self.step, self.score):
            try:
                gauge.remove(namespace, name)
            except KeyError:
                pass
        for p in Phase:
            try:
                self.phase.remove(namespace, name, p.value)
            except KeyError:
                pass
        for condition in self._conditions.pop((namespace, name), set()):
            try:
                self.severity.remove(namespace, name, condition)
            except KeyError:
                pass

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        start_http_server(port, addr=addr, registry=self.registry)
