"""The Prometheus adapter without Prometheus: selectors, templates, the batch plan, and
snapshots assembled from canned answers in the JSON shape prometheus-api-client returns.

The fake client answers each planned query from a table keyed by (template name, window)
and the (namespace, deployment) pairs the query's selector names — so these tests also
check that every value lands on the right rollout and side.
"""

from __future__ import annotations

import re

import asyncio
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from prometheus_api_client import PrometheusApiClientException

from modelrollout.adapters.metrics import promql
from modelrollout.adapters.metrics.batching import BatchingMetricsSource
from modelrollout.adapters.metrics.plan import plan_queries
from modelrollout.adapters.metrics.request import SnapshotRequest
from modelrollout.adapters.metrics.transport import PrometheusMetricsSource
from modelrollout.api.models import CustomCondition, MetricLabels, ModelRolloutStatus
from modelrollout.core.snapshot import Snapshot
from modelrollout.core.windows import plan_windows
from modelrollout.errors import InvalidSpec, MetricsUnavailable, OperatorBug, UnsafeLabelValue

from .factories import make_spec

AT = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
S = timedelta(seconds=1)
WINDOWS = {
    "accuracy": 900 * S, "latency": 60 * S, "confidenceDrift": 900 * S, "errorRate": 300 * S,
    "cache": 300 * S, "throughput": 300 * S, "anomaly": 900 * S,
}
BASELINE = 86400


def request(ns: str = "ml", stable: str = "fraud", canary: str = "fraud-canary", **kw: Any) -> SnapshotRequest:
    kw.setdefault("windows", WINDOWS)
    kw.setdefault("series_window", 300 * S)
    kw.setdefault("series_step", 30 * S)
    kw.setdefault("interval_length", 30 * S)
    kw.setdefault("interval_points", 5)  # 5 intervals of 60 s (the shortest rate window)
    return SnapshotRequest(key=f"{ns}/{stable}", namespace=ns, stable=stable, canary=canary, **kw)


# ------------------------------------------------------------------------- validation


@pytest.mark.parametrize("value", ["Fraud", "a_b", 'a"}', "a|b", ".*", "", "a" * 64, "-a"])
def test_unsafe_namespace_is_refused_naming_the_field(value: str) -> None:
    with pytest.raises(UnsafeLabelValue, match="metadata.namespace"):
        request(ns=value)


@pytest.mark.parametrize("field,kw", [("spec.stable.deployment", {"stable": 'x",evil="1'}),
                                      ("spec.canary.deployment", {"canary": "x|.*"})])
def test_unsafe_deployment_is_refused_naming_the_field(field: str, kw: dict[str, str]) -> None:
    with pytest.raises(UnsafeLabelValue, match=field.replace(".", r"\.")):
        request(**kw)


def test_unsafe_label_error_is_an_invalid_spec() -> None:
    assert issubclass(UnsafeLabelValue, InvalidSpec)


def test_selector_sorts_dedupes_and_escapes_dots() -> None:
    sel = promql.build_selector("namespace", "deployment", [("b", "x.v2"), ("a", "y"), ("b", "y")])
    assert sel == 'namespace=~"a|b",deployment=~"x\\\\.v2|y"'


def test_selector_uses_configured_label_names() -> None:
    sel = promql.build_selector("kubernetes_namespace", "app", [("ml", "fraud")])
    assert sel == 'kubernetes_namespace=~"ml",app=~"fraud"'


def test_unknown_override_is_invalid_spec_naming_field_and_allowed_names() -> None:
    with pytest.raises(InvalidSpec) as e:
        request(queries={"latencyP95": "x{selector}[{window}] by ({by})"})
    assert "spec.analysis.queries.latencyP95" in str(e.value)
    assert "latency_p95_ms" in str(e.value)


def test_override_without_placeholders_is_refused() -> None:
    with pytest.raises(InvalidSpec, match=r"spec\.analysis\.queries\.rps: the template lacks \{selector\}, \{by\}"):
        request(queries={"rps": "sum(rate(model_requests_total[{window}]))"})


def test_override_of_labelled_query_must_keep_its_label() -> None:
    with pytest.raises(InvalidSpec, match="category"):
        request(queries={"errors": "sum by ({by}) (increase(e{{selector}}[{window}]))"})


# -------------------------------------------------------------------------- rendering


def test_render_replaces_placeholders_literally() -> None:
    text = promql.render('sum by ({by}) (increase(m{result="hit",{selector}}[{window}]))',
                         selector='namespace=~"ml"', window=timedelta(minutes=15), by="namespace, deployment")
    assert text == 'sum by (namespace, deployment) (increase(m{result="hit",namespace=~"ml"}[900s]))'


def test_window_is_whole_seconds_at_least_one() -> None:
    assert promql.promql_duration(timedelta(milliseconds=1500)) == "2s"
    assert promql.promql_duration(timedelta(0)) == "1s"
    assert promql.promql_duration(timedelta(hours=24)) == "86400s"


def test_custom_query_substitutes_rollout_names() -> None:
    q = 'max(gpu_mem{namespace="{namespace}",deployment="{canary}"}) / max(gpu_mem{deployment="{stable}"})'
    assert promql.render_custom(q, "ml", "fraud", "fraud-canary") == (
        'max(gpu_mem{namespace="ml",deployment="fraud-canary"}) / max(gpu_mem{deployment="fraud"})'
    )


def test_every_default_template_has_all_placeholders() -> None:
    assert promql.resolve_queries(dict(promql.DEFAULT_QUERIES)) == promql.DEFAULT_QUERIES


# ------------------------------------------------------------------------------- plan


def test_two_rollouts_cost_as_many_queries_as_one() -> None:
    one = plan_queries([request()])
    two = plan_queries([request(), request(ns="risk", stable="scorer", canary="scorer-v2")])
    hundred = plan_queries([request(ns=f"ns{i}", stable=f"s{i}", canary=f"c{i}") for i in range(100)])
    # 28 for the windows (3 of them the latency and lookup buckets) and the anomaly series, 6 for the stable's
    # counts per interval
    assert len(one) == len(two) == len(hundred) == 34
    assert 'namespace=~"ml|risk",deployment=~"fraud|fraud-canary|scorer|scorer-v2"' in two[0].promql


def test_distinct_windows_add_queries_only_for_their_metrics() -> None:
    grown = dict(WINDOWS, latency=600 * S)
    plan = plan_queries([request(), request(ns="risk", windows=grown)])
    assert len(plan) == 34 + 5  # the five latency metrics (buckets included) over 600s


def test_override_and_label_names_split_the_query_they_change() -> None:
    override = "sum by ({by}) (rate(my_requests{{selector}}[{window}]))"
    plan = plan_queries([request(), request(ns="risk", queries={"rps": override})])
    assert len(plan) == 35
    assert any(q.promql.startswith("sum by (namespace, deployment) (rate(my_requests{namespace=~\"risk\"") for q in plan)
    relabelled = plan_queries([request(), request(ns="risk", labels=MetricLabels(namespace="ns", deployment="app"))])
    assert len(relabelled) == 68


def test_disabled_conditions_and_no_series_query_nothing() -> None:
    plan = plan_queries([request(windows={"latency": 60 * S}, series_window=None, series_step=None,
                                 interval_points=0)])
    assert sorted(q.key.name for q in plan) == sorted(
        ["latency_mean_ms", "latency_p95_ms", "latency_p99_ms", "latency_count", "latency_buckets"] * 2)


def test_for_rollout_builds_the_request_from_spec_and_status() -> None:
    spec = make_spec(custom=[{"name": "gpu", "query": "max(x)", "threshold": 1, "critical": 2},
                             {"name": "off", "query": "max(y)", "threshold": 1, "critical": 2, "enabled": False}],
                     conditions={"cache": {"enabled": False}})
    status = ModelRolloutStatus(canary_weight=5)
    r = SnapshotRequest.for_rollout(namespace="ml", name="fraud", spec=spec, status=status,
                                    windows=plan_windows(spec, status, AT))
    assert r.key == "ml/fraud" and r.stable == "fraud" and r.canary == "fraud-canary"
    assert "cache" not in r.windows and r.windows["latency"] == 60 * S
    assert r.series_step == 10 * S and r.series_window == 300 * S  # 30 points at a 10s interval
    assert r.interval_length == 10 * S and r.interval_points == 30
    assert [c.name for c in r.custom] == ["gpu"]
    assert r.minimum("latency") == 1000 and r.canary_weight == 5


# ------------------------------------------------------------------ canned answers


def vec(ns: str, dep: str, value: float | str, **extra: str) -> dict[str, Any]:
    return {"metric": {"namespace": ns, "deployment": dep, **extra}, "value": [AT.timestamp(), str(value)]}


BUNDLE_PART = re.compile(r'label_replace\((.*?), "mr_query", "(\d+)", "", ""\)(?: or |$)')


def subqueries(fake: "FakeClient") -> int:
    """Queries the fake answered, counting each part of a bundle."""
    return sum(len(BUNDLE_PART.findall(c)) if c.startswith("label_replace(") else 1 for c in fake.calls)


class FakeClient:
    """Answers planned queries from ``table[(name, window_s)][(ns, dep)]``.

    A value is a number (vector sample), a dict (labelled samples: {label value: number})
    or, for range queries, a list of (offset seconds before AT, value)."""

    def __init__(self, table: dict[tuple[str, int], dict[tuple[str, str], Any]], plan: list,
                 fail: Exception | None = None, fail_on: str | None = None) -> None:
        self.by_text = {q.promql: q.key for q in plan}
        self.table = table
        self.fail, self.fail_on = fail, fail_on
        self.calls: list[str] = []
        self.params: list[dict[str, Any]] = []

    def _answer(self, query: str) -> list[dict[str, Any]]:
        self.calls.append(query)
        if self.fail is not None and (self.fail_on is None or self.fail_on in query):
            raise self.fail
        parts = BUNDLE_PART.findall(query)
        if parts and query.startswith("label_replace("):  # a bundle: answer each part, tagged
            return [{**row, "metric": {**row["metric"], "mr_query": index}}
                    for text, index in parts for row in self._one(text)]
        return self._one(query)

    def _one(self, query: str) -> list[dict[str, Any]]:
        key = self.by_text.get(query)
        if key is None:
            return [{"metric": {}, "value": [AT.timestamp(), "7"]}]  # a custom query
        out = []
        for (ns, dep), value in self.table.get((key.name, key.window_s), {}).items():
            if isinstance(value, dict) and key.name == "model_digests":  # {pod: digest}
                out += [vec(ns, dep, 1, pod=pod, digest=digest) for pod, digest in value.items()]
            elif isinstance(value, dict) and key.is_range:  # {label value: [(offset, value), ...]}
                label = promql.EXTRA_LABEL[key.name]
                out += [{"metric": {"namespace": ns, "deployment": dep, label: k},
                         "values": [[AT.timestamp() - off, str(x)] for off, x in v]} for k, v in value.items()]
            elif isinstance(value, dict):
                label = promql.EXTRA_LABEL[key.name]
                out += [vec(ns, dep, v, **{label: k}) for k, v in value.items()]
            elif isinstance(value, list):
                out.append({"metric": {"namespace": ns, "deployment": dep},
                            "values": [[AT.timestamp() - off, str(v)] for off, v in value]})
            else:
                out.append(vec(ns, dep, value))
        return out

    def custom_query(self, query: str, params: dict[str, Any] | None = None, timeout: Any = None) -> Any:
        self.params.append(params or {})
        return self._answer(query)

    def custom_query_range(self, query: str, start_time: datetime, end_time: datetime, step: str,
                           params: dict[str, Any] | None = None, timeout: Any = None) -> Any:
        return self._answer(query)

    def close(self) -> None:
        pass


def healthy_table(ns: str = "ml", stable: str = "fraud", canary: str = "fraud-canary",
                  stable_latency_count: float = 57000.0) -> dict[tuple[str, int], dict[tuple[str, str], Any]]:
    c, s = (ns, canary), (ns, stable)
    conf = {"0.1": 0, "0.5": 10, "1.0": 90, "+Inf": 100, "0.9": 60}
    conf_stable = {"0.1": 0, "0.5": 900, "0.9": 5000, "+Inf": 10000}
    return {
        ("requests", 300): {c: 30000, s: 570000}, ("requests", BASELINE): {s: 9e7},
        ("errors", 300): {c: {"timeout": 30, "extraction": 3, "weird": 2}, s: {"timeout": 100}},
        ("errors", BASELINE): {s: {"timeout": 1000}},
        ("rps", 300): {c: 100.0, s: 1900.0},
        ("latency_mean_ms", 60): {c: 1.4, s: 1.2}, ("latency_p95_ms", 60): {c: 2.1, s: 1.9},
        ("latency_p99_ms", 60): {c: "NaN", s: 2.5}, ("latency_count", 60): {c: 6000, s: stable_latency_count},
        ("latency_mean_ms", BASELINE): {s: 1.0}, ("latency_p95_ms", BASELINE): {s: 1.5},
        ("latency_p99_ms", BASELINE): {s: 2.0}, ("latency_count", BASELINE): {s: 9e7},
        ("predictions_evaluated", 900): {c: 500, s: 9000}, ("predictions_correct", 900): {c: 501.3, s: 8300},
        ("predictions_evaluated", BASELINE): {s: 8e5}, ("predictions_correct", BASELINE): {s: 7e5},
        ("confidence", 900): {c: conf}, ("confidence", BASELINE): {s: conf_stable},
        ("cache_requests", 300): {c: {"hit": 29000}, s: {"hit": 560000, "miss": 1000}},
        ("cache_evictions_per_minute", 300): {c: 0.5, s: 0.0},
        ("cache_lookup_ms", 300): {c: 0.4, s: 0.3},
        ("series_rps", 60): {c: [(0, 101), (30, 99), (90, 98)]},
        ("series_latency_p95_ms", 60): {c: [(0, 2.0), (30, "NaN")]},
        ("latency_buckets", 60): {c: {"0.001": 2000, "0.0025": 5800, "0.005": 5990, "+Inf": 6000},
                                  s: {"0.001": 30000, "0.0025": 56000, "+Inf": 57000}},
        ("latency_buckets", BASELINE): {s: {"0.001": 5e7, "0.0025": 8.9e7, "+Inf": 9e7}},
        ("cache_lookup_buckets", 300): {c: {"0.0005": 20000, "0.001": 28500, "+Inf": 29000}},
    }


def run_snapshots(reqs: list[SnapshotRequest], table: dict, **kw: Any) -> tuple[dict, FakeClient, list]:
    calls: list[tuple[str, float, bool]] = []
    fake = FakeClient(table, plan_queries(reqs), fail=kw.pop("fail", None), fail_on=kw.pop("fail_on", None))
    source = PrometheusMetricsSource("http://prom.test:9090", client=fake,  # type: ignore[arg-type]
                                     on_query=lambda p, s, ok: calls.append((p, s, ok)), **kw)
    try:
        out = asyncio.run(source.snapshots(reqs, AT, path=kw.get("path", "tick")))
    finally:
        source.close()
    return out, fake, calls


def test_snapshot_fields_from_canned_answers() -> None:
    out, fake, calls = run_snapshots([request()], healthy_table())
    snap = out["ml/fraud"]
    assert isinstance(snap, Snapshot)
    c, s = snap.canary, snap.stable
    assert c is not None and s is not None
    assert c.requests == 30000 and c.rps == 100.0
    assert c.errors is not None and c.errors.timeout == 30 and c.errors.extraction == 3
    assert c.errors.serialization == 0 and c.errors.other == 2  # unknown category -> other
    assert c.latency_ms is not None and (c.latency_ms.mean, c.latency_ms.p95, c.latency_ms.p99) == (1.4, 2.1, None)
    assert c.latency_ms.count == 6000
    assert c.latency_ms.buckets is not None  # in ms, +Inf left to the count
    assert c.latency_ms.buckets.le == [1.0, 2.5, 5.0] and c.latency_ms.buckets.counts == [2000, 5800, 5990]
    assert c.predictions_evaluated == 500 and c.predictions_correct == 500  # clamped to evaluated
    assert c.confidence is not None
    assert c.confidence.le == [0.1, 0.5, 0.9, 1.0] and c.confidence.counts == [0, 10, 60, 90]
    assert c.cache is not None and (c.cache.hits, c.cache.misses) == (29000, 0)  # miss series absent -> 0
    assert c.cache.evictions_per_minute == 0.5 and c.cache.lookup_ms == 0.4
    assert c.cache.lookup_buckets is not None and c.cache.lookup_buckets.le == [0.5, 1.0]
    # Stable over the same window where it has the minimum samples...
    assert s.requests == 570000 and s.predictions_evaluated == 9000 and s.latency_ms is not None
    assert s.latency_ms.p95 == 1.9 and s.rps == 1900.0
    # ...and drift always over the baseline, +Inf folded into 1.0.
    assert s.confidence is not None and s.confidence.le == [0.1, 0.5, 0.9, 1.0]
    assert s.confidence.counts == [0, 900, 5000, 10000]
    assert snap.windows == {"accuracy": 900, "latency": 60, "confidenceDrift": 900, "errorRate": 300,
                            "cache": 300, "throughput": 300, "anomaly": 300}
    # 34 queries planned; the 25 instant ones go out as one bundle (one consistent read), the 9
    # range queries (3 anomaly series, 6 per-interval counts of the stable) one by one
    assert subqueries(fake) == 34 and len(calls) == 10 and all(p == "tick" and ok for p, _, ok in calls)
    assert all(p["time"] == f"{AT.timestamp():.3f}" and p["timeout"] == "5s" for p in fake.params)


def test_series_are_on_the_step_grid_oldest_first_with_gaps_as_none() -> None:
    out, _, _ = run_snapshots([request()], healthy_table())
    snap = out["ml/fraud"]
    assert isinstance(snap, Snapshot) and snap.canary is not None and snap.canary.series is not None
    series = snap.canary.series
    assert len(series["rps"]) == 11  # 300 s back at 30 s: both ends included
    assert series["rps"][-4:] == [98, None, 99, 101]
    assert series["latency_p95_ms"][-2:] == [None, 2.0]
    assert "error_rate" not in series  # absent series: absent, not zeros


def test_stable_below_minimum_is_read_over_the_baseline() -> None:
    out, _, _ = run_snapshots([request()], healthy_table(stable_latency_count=999))
    snap = out["ml/fraud"]
    assert isinstance(snap, Snapshot) and snap.stable is not None and snap.stable.latency_ms is not None
    assert snap.stable.latency_ms.p95 == 1.5 and snap.stable.latency_ms.count == 9e7
    assert snap.stable.requests == 570000  # errorRate's own choice is independent


def test_absent_series_are_none_not_errors() -> None:
    out, _, _ = run_snapshots([request()], {})
    snap = out["ml/fraud"]
    assert isinstance(snap, Snapshot) and snap.canary is not None and snap.stable is not None
    assert snap.canary.requests is None and snap.canary.errors is None and snap.canary.latency_ms is None
    assert snap.canary.confidence is None and snap.canary.cache is None and snap.canary.series is None
    assert snap.stable.confidence is None


def test_one_batch_serves_two_rollouts_in_different_namespaces() -> None:
    table = healthy_table()
    for k, v in healthy_table("risk", "scorer", "scorer-v2").items():
        table.setdefault(k, {}).update(v)
    table[("rps", 300)][("risk", "scorer-v2")] = 42.0
    out, fake, calls = run_snapshots([request(), request("risk", "scorer", "scorer-v2")], table)
    assert subqueries(fake) == 34 and len(calls) == 10 == len(fake.calls)
    a, b = out["ml/fraud"], out["risk/scorer"]
    assert isinstance(a, Snapshot) and isinstance(b, Snapshot)
    assert a.canary is not None and b.canary is not None
    assert a.canary.rps == 100.0 and b.canary.rps == 42.0


def test_custom_conditions_are_queried_per_rollout() -> None:
    gpu = CustomCondition(name="gpu", query='max(gpu{namespace="{namespace}",deployment="{canary}"})',
                          threshold=1, critical=2, min_samples_query='count(up{deployment="{stable}"})')
    out, fake, calls = run_snapshots([request(custom=[gpu])], healthy_table())
    snap = out["ml/fraud"]
    assert isinstance(snap, Snapshot) and snap.custom is not None
    assert snap.custom["gpu"].value == 7 and snap.custom["gpu"].samples == 7
    assert 'max(gpu{namespace="ml",deployment="fraud-canary"})' in fake.calls
    assert 'count(up{deployment="fraud"})' in fake.calls
    assert len(calls) == 12  # the bundle, 3 series, 6 intervals, 2 custom queries (never bundled: user PromQL)


def test_connection_refused_makes_every_request_unavailable_without_raising() -> None:
    reqs = [request(), request("risk", "scorer", "scorer-v2")]
    out, fake, calls = run_snapshots(reqs, {}, fail=requests.ConnectionError("Connection refused"), max_concurrency=2)
    assert set(out) == {"ml/fraud", "risk/scorer"}
    for value in out.values():
        assert isinstance(value, MetricsUnavailable) and "unreachable" in str(value) and "prom.test" in str(value)
    # The first transport failure stops the batch: no queueing behind a dead server.
    assert len(fake.calls) <= 2 and all(not ok for _, _, ok in calls)


def test_bad_promql_in_one_override_fails_only_that_rollout() -> None:
    override = "sum by ({by}) (rate(broken_metric{{selector}}[{window}])"
    reqs = [request(), request("risk", "scorer", "scorer-v2", queries={"rps": override})]
    out, _, calls = run_snapshots(reqs, healthy_table(), fail=PrometheusApiClientException(
        "HTTP Status Code 400 (b'parse error')"), fail_on="broken_metric")
    assert isinstance(out["ml/fraud"], Snapshot)
    bad = out["risk/scorer"]
    assert isinstance(bad, MetricsUnavailable) and "rps" in str(bad) and "400" in str(bad)
    assert sum(not ok for _, _, ok in calls) == 1


def test_custom_query_failure_names_the_field() -> None:
    gpu = CustomCondition(name="gpu", query="max(", threshold=1, critical=2)
    out, _, _ = run_snapshots([request(custom=[gpu]), request("risk", "scorer", "scorer-v2")], healthy_table(),
                              fail=PrometheusApiClientException("HTTP Status Code 400 (b'parse error')"),
                              fail_on="max(")
    assert isinstance(out["risk/scorer"], Snapshot)
    assert isinstance(out["ml/fraud"], MetricsUnavailable)
    assert "spec.analysis.custom[0].query (gpu)" in str(out["ml/fraud"])


def test_timeout_is_enforced_even_if_the_client_hangs() -> None:
    class Hanging(FakeClient):
        def custom_query(self, query: str, params: Any = None, timeout: Any = None) -> Any:
            import time
            time.sleep(1.5)
            return []

    source = PrometheusMetricsSource("http://prom.test", client=Hanging({}, []), query_timeout=0.2)  # type: ignore[arg-type]
    import time
    t0 = time.monotonic()
    out = asyncio.run(source.snapshots([request(series_window=None, series_step=None)], AT))
    elapsed = time.monotonic() - t0
    source.close()
    assert isinstance(out["ml/fraud"], MetricsUnavailable) and "timed out" in str(out["ml/fraud"])
    assert elapsed < 2.0


def test_long_window_answers_are_reused_within_the_ttl() -> None:
    reqs = [request()]
    fake = FakeClient(healthy_table(), plan_queries(reqs))
    source = PrometheusMetricsSource("http://prom.test", client=fake)  # type: ignore[arg-type]

    async def twice() -> None:
        await source.snapshots(reqs, AT)
        await source.snapshots(reqs, AT + timedelta(seconds=1), path="fastPath")
        await source.snapshots(reqs, AT + timedelta(seconds=120))

    asyncio.run(twice())
    # A new event loop (a CLI, a test) reuses the same source.
    again = asyncio.run(source.snapshots(reqs, AT + timedelta(seconds=125)))
    source.close()
    assert isinstance(again["ml/fraud"], Snapshot)
    parts = [t for c in fake.calls for t in ([p for p, _ in BUNDLE_PART.findall(c)] or [c])]
    baseline = [q for q in parts if "[86400s]" in q]
    assert len(baseline) == 2 * 10  # first and third batch; the second reused them


def _range_calls(fake: FakeClient) -> list[str]:
    return [c for c in fake.calls if not c.startswith("label_replace(") and fake.by_text.get(c) is not None
            and fake.by_text[c].is_range]


def test_the_ticks_of_one_instant_share_their_range_queries() -> None:
    """One instant's ticks come as several batches (each rollout reads the apiserver first):
    the first reads each range query for every pair asked recently, the next ones reuse it,
    on the grid it was read at (docs/prometheus.md#range-queries-shared-across-batches)."""
    first = [request(ns=f"a{i}", stable="s", canary="c") for i in range(3)]
    second = [request(ns=f"b{i}", stable="s", canary="c") for i in range(2)]
    table = healthy_table()
    for r in first + second:
        table.setdefault(("series_rps", 60), {})[(r.namespace, "c")] = [(0, 100), (30, 90)]
        table.setdefault(("interval_requests", 60), {})[(r.namespace, "s")] = [(0, 1000), (60, 1100), (120, 900)]
    fake = FakeClient(table, plan_queries(first + second))
    source = PrometheusMetricsSource("http://prom.test", client=fake)  # type: ignore[arg-type]
    previous = AT - timedelta(seconds=30)

    async def two_instants() -> dict[str, Any]:
        await source.snapshots(first, previous)
        await source.snapshots(second, previous + timedelta(seconds=1))  # new pairs: read again, for all
        fake.calls.clear()
        await source.snapshots(first, AT)
        reads = len(_range_calls(fake))
        out = await source.snapshots(second, AT + timedelta(seconds=1))
        assert len(_range_calls(fake)) == reads == 9  # 3 series + 6 intervals, once for both batches
        return out

    reused = asyncio.run(two_instants())
    alone, _, _ = run_snapshots(second, table)  # read by itself at AT
    source.close()
    for key in reused:
        a, b = reused[key], alone[key]
        assert isinstance(a, Snapshot) and isinstance(b, Snapshot) and a.canary and b.canary and a.stable and b.stable
        assert a.canary.series == b.canary.series and a.canary.series is not None
        assert a.canary.series["rps"][-2:] == [90, 100]
        assert a.stable.intervals == b.stable.intervals and a.stable.intervals is not None
        assert a.stable.intervals.requests[-3:] == [900, 1100, 1000]


def test_range_answers_are_reused_within_a_tenth_of_their_step_never_after_a_failure() -> None:
    reqs = [request()]
    fake = FakeClient(healthy_table(), plan_queries(reqs))
    source = PrometheusMetricsSource("http://prom.test", client=fake)  # type: ignore[arg-type]

    async def run() -> None:
        await source.snapshots(reqs, AT)
        await source.snapshots(reqs, AT + timedelta(seconds=3))   # 3 s: series and intervals both reused
        assert len(_range_calls(fake)) == 9
        await source.snapshots(reqs, AT + timedelta(seconds=5))   # past 3 s of a 30 s step, 6 s of 60 s
        assert len(_range_calls(fake)) == 9 + 3
        await source.snapshots(reqs, AT + timedelta(seconds=3))   # a batch of the same wave with an
        assert len(_range_calls(fake)) == 9 + 3                    # earlier clock: the +5 s series reused
        await source.snapshots(reqs, AT - timedelta(seconds=1))   # 6 s before the series' read: not
        assert len(_range_calls(fake)) == 9 + 3 + 3                # (the intervals read at AT are)
        fake.fail = MetricsUnavailable("down")
        out = await source.snapshots(reqs, AT + timedelta(seconds=40))
        assert isinstance(out["ml/fraud"], MetricsUnavailable)
        fake.fail = None
        fake.calls.clear()
        await source.snapshots(reqs, AT + timedelta(seconds=40.5))
        assert len(_range_calls(fake)) == 9  # the failed reads left nothing to reuse

    asyncio.run(run())
    source.close()


# ------------------------------------------------------------------------------ batching


def test_concurrent_callers_share_one_batch() -> None:
    reqs = [request(ns=f"ns{i}", stable=f"s{i}", canary=f"c{i}") for i in range(20)]
    fake = FakeClient({}, plan_queries(reqs))
    source = PrometheusMetricsSource("http://prom.test", client=fake)  # type: ignore[arg-type]
    batching = BatchingMetricsSource(source, window=0.05)

    async def tick_all() -> list[Any]:
        async def one(r: SnapshotRequest, delay: float) -> Any:
            await asyncio.sleep(delay)
            return await batching.snapshot(r, AT + timedelta(milliseconds=delay * 1000))
        return await asyncio.gather(*(one(r, i * 0.001) for i, r in enumerate(reqs)))

    results = asyncio.run(tick_all())
    source.close()
    assert batching.batches == 1 and subqueries(fake) == 34
    assert all(isinstance(r, Snapshot) for r in results)
    assert results[0].at == AT + timedelta(milliseconds=19)  # the latest at of the batch


def test_a_wave_of_ticks_is_one_batch_up_to_max_wait() -> None:
    """Ticks arriving 20 ms apart (each read its rollout from the apiserver first) join one
    batch while the gaps stay under ``window``; ``max_wait`` bounds how long the first waits."""
    reqs = [request(ns=f"ns{i}", stable=f"s{i}", canary=f"c{i}") for i in range(30)]
    fake = FakeClient({}, plan_queries(reqs))
    source = PrometheusMetricsSource("http://prom.test", client=fake)  # type: ignore[arg-type]
    sizes: list[int] = []
    batching = BatchingMetricsSource(source, window=0.05, max_wait=0.4, on_batch=sizes.append)

    async def wave() -> list[float]:
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def one(r: SnapshotRequest, delay: float) -> float:
            await asyncio.sleep(delay)
            await batching.snapshot(r, AT)
            return loop.time() - start
        return await asyncio.gather(*(one(r, i * 0.02) for i, r in enumerate(reqs)))

    answered = asyncio.run(wave())
    source.close()
    assert sum(sizes) == 30 and len(sizes) == 2 and sizes[0] >= 15  # 0.58 s of arrivals: cut at 0.4 s
    assert min(answered) >= 0.4
    with pytest.raises(ValueError, match="max_wait"):
        BatchingMetricsSource(source, window=0.5, max_wait=0.1)


def test_batches_follow_one_another() -> None:
    fake = FakeClient({}, plan_queries([request()]))
    source = PrometheusMetricsSource("http://prom.test", client=fake)  # type: ignore[arg-type]
    batching = BatchingMetricsSource(source, window=0.01)

    async def sequential() -> None:
        for _ in range(3):
            assert isinstance(await batching.snapshot(request(), AT), Snapshot)

    asyncio.run(sequential())
    source.close()
    assert batching.batches == 3


def test_confidence_histogram_folding_and_monotonicity() -> None:
    h = promql.confidence_histogram({"0.5": 10.2, "0.25": 11.0, "+Inf": 40, "0.75": 30})
    assert h is not None and h.le == [0.25, 0.5, 0.75, 1.0] and h.counts == [11.0, 11.0, 30, 40]
    h2 = promql.confidence_histogram({"1.0": 5, "+Inf": 5, "0.5": None})
    assert h2 is not None and h2.le == [0.5, 1.0] and h2.counts == [0.0, 5]
    assert promql.confidence_histogram({}) is None


def test_sample_values() -> None:
    assert promql.sample_value("1.5") == 1.5
    assert promql.sample_value("NaN") is None and promql.sample_value("+Inf") is None
    assert promql.sample_value(None) is None and promql.sample_value("x") is None
    assert math.isclose(promql.sample_value("1e3") or 0, 1000)


def test_bundled_queries_are_one_read_and_a_refused_bundle_falls_back_per_query() -> None:
    """The default-template instant queries go out as one PromQL query (Prometheus answers
    it from one snapshot, so a ratio's halves agree); when Prometheus refuses the bundle,
    each query is retried alone and only the broken one fails."""
    out, fake, calls = run_snapshots([request()], healthy_table())
    bundles = [c for c in fake.calls if c.startswith("label_replace(")]
    assert len(bundles) == 1 and len(BUNDLE_PART.findall(bundles[0])) == 25
    assert isinstance(out["ml/fraud"], Snapshot)
    unbundled, fake2, calls2 = run_snapshots([request()], healthy_table(), bundle=False)
    assert unbundled == out and len(calls2) == 34
    refused = PrometheusApiClientException("HTTP Status Code 422 (b'{\"error\":\"bad\"}')")
    out, fake, calls = run_snapshots([request()], healthy_table(), fail=refused, fail_on="mr_query")
    assert isinstance(out["ml/fraud"], Snapshot)  # every query answered alone
    assert len([c for c in fake.calls if not c.startswith("label_replace(")]) == 34


def test_a_bug_while_assembling_is_an_operator_error_not_prometheus_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only Prometheus' failures may count toward prometheusErrors (whose policy can be rollback)."""
    from modelrollout.adapters.metrics.assembly import SnapshotAssembler

    def broken(self: Any) -> Snapshot:
        raise ZeroDivisionError("a defect of ours")

    monkeypatch.setattr(SnapshotAssembler, "snapshot", broken)
    with pytest.raises(OperatorBug, match=r"ZeroDivisionError: a defect of ours"):
        run_snapshots([request()], healthy_table())


def test_a_bug_while_parsing_an_answer_is_an_operator_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import modelrollout.adapters.metrics.transport as transport

    def broken(key: Any, raw: Any) -> Any:
        raise KeyError("value")

    monkeypatch.setattr(transport, "parse_answer", broken)
    with pytest.raises(OperatorBug, match=r"KeyError"):
        run_snapshots([request()], healthy_table())


def test_a_client_failure_is_still_prometheus_unavailable() -> None:
    out, _, _ = run_snapshots([request()], healthy_table(), fail=ValueError("garbled JSON"))
    assert isinstance(out["ml/fraud"], MetricsUnavailable) and "garbled JSON" in str(out["ml/fraud"])


def test_a_confidence_histogram_without_its_inf_bucket_is_partial_and_unusable() -> None:
    """A partial answer that lost the +Inf bucket would make its last bucket pass for the
    total: a healthy model's CDF would look drifted (seen with partial vectors in e2e)."""
    full = {"0.5": 10.0, "0.9": 60.0, "1.0": 100.0, "+Inf": 100.0}
    assert promql.confidence_histogram(full) is not None
    assert promql.confidence_histogram({"0.5": 10.0, "0.9": 60.0}) is None
    coarser = promql.confidence_histogram({"0.9": 60.0, "+Inf": 100.0})  # intermediate buckets lost: coarser, fine
    assert coarser is not None and coarser.le == [0.9, 1.0] and coarser.counts == [60.0, 100.0]


def test_the_catalogue_has_one_entry_per_core_condition_filling_snapshot_fields() -> None:
    """Conditions are listed once, in core.conditions; the adapter's catalogue follows it."""
    from modelrollout.adapters.metrics.catalogue import CATALOGUE
    from modelrollout.core.conditions import CONDITIONS
    from modelrollout.core.snapshot import SideMetrics

    assert list(CATALOGUE) == [c.name.value for c in CONDITIONS]
    for name, entry in CATALOGUE.items():
        if entry.fill is not None:
            assert set(entry.fill(lambda template: None)) <= set(SideMetrics.model_fields), name


def test_the_router_asks_the_prometheus_a_request_names_else_the_default() -> None:
    from modelrollout.adapters.metrics.batching import PrometheusRouter

    router = PrometheusRouter("http://default.test:9090", timeout=1.0)
    assert router.source(None) is router.source("http://default.test:9090")
    assert router.source("http://other.test:9090") is not router.source(None)
    asked: list[str | None] = []

    class Source:
        async def snapshot(self, r: SnapshotRequest, at: datetime) -> MetricsUnavailable:
            return MetricsUnavailable(r.key)

    def source(url: str | None) -> Any:
        asked.append(url)
        return Source()

    router.source = source  # type: ignore[method-assign]
    asyncio.run(router.snapshot(request(), AT))
    asyncio.run(router.snapshot(request(prometheus_url="http://other.test:9090"), AT))
    assert asked == [None, "http://other.test:9090"]


def test_the_stables_counts_per_interval_are_read_on_a_grid_that_does_not_overlap() -> None:
    """docs/decisions.md#overdispersion: one point per interval of at least the shortest rate
    window (60 s here, the analysis interval being 30 s), read for the stable only."""
    table = healthy_table()
    s = ("ml", "fraud")
    table[("interval_requests", 60)] = {s: [(0, 1900 * 60), (60, 1700 * 60), (180, 2100 * 60)],
                                        ("ml", "fraud-canary"): [(0, 1)]}
    table[("interval_predictions_evaluated", 60)] = {s: [(0, 600), (60, 500)]}
    table[("interval_predictions_correct", 60)] = {s: [(0, 550), (60, 470)]}
    table[("interval_errors", 60)] = {s: {"timeout": [(0, 30), (60, 12)], "other": [(0, 2)]}}
    out, _, _ = run_snapshots([request()], table)
    snap = out["ml/fraud"]
    assert isinstance(snap, Snapshot) and snap.stable is not None and snap.stable.intervals is not None
    intervals = snap.stable.intervals
    assert intervals.seconds == 60.0
    assert intervals.requests == [None, None, 2100 * 60, None, 1700 * 60, 1900 * 60]  # oldest first, gaps None
    assert intervals.predictions_correct == [None, None, None, None, 470, 550]
    assert intervals.errors == [None, None, None, None, 12, 32]  # the categories' total per interval
    assert intervals.error_categories == {"other": [None] * 5 + [2], "timeout": [None] * 4 + [12, 30]}
    assert intervals.cache_hits is None  # Prometheus had none
    assert snap.canary is not None and snap.canary.intervals is None  # the canary's are not read
    intervals_planned = [q for q in plan_queries([request()]) if q.key.name.startswith("interval_")]
    assert len(intervals_planned) == 6 and all(q.key.step_s == 60 == q.key.window_s for q in intervals_planned)
    assert all('deployment=~"fraud"' in q.promql for q in intervals_planned)


def test_the_stables_counts_per_interval_are_read_with_the_anomaly_condition_disabled() -> None:
    """The overdispersion they measure widens every proportion's gate, not the anomaly
    condition's (docs/decisions.md#overdispersion): disabling anomaly keeps them."""
    spec = make_spec(conditions={"anomaly": {"enabled": False}})
    status = ModelRolloutStatus(canary_weight=5)
    r = SnapshotRequest.for_rollout(namespace="ml", name="fraud", spec=spec, status=status,
                                    windows=plan_windows(spec, status, AT))
    assert r.series_window is None and r.interval_points == 30
    names = {q.key.name for q in plan_queries([r], min_rate_window=4 * S)}
    assert set(promql.INTERVAL_QUERIES) <= names and not names & set(promql.SERIES_QUERIES)
    steps = {(q.key.step_s, q.key.range_s) for q in plan_queries([r], min_rate_window=4 * S)
             if q.key.name in promql.INTERVAL_QUERIES}
    assert steps == {(10, 300)}  # 30 intervals of the 10 s analysis interval
