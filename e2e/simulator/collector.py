"""Prometheus exposition of the metrics contract (docs/design.md#metrics-contract), built at scrape time.

A custom collector rather than prometheus_client's Counter/Histogram objects:
the simulator owns its counters (pods come and go, values are drawn in bulk),
and building families from a snapshot at each scrape keeps the exposition an
exact copy of the state without double bookkeeping.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from e2e.simulator.behaviour import ERROR_CATEGORIES
from e2e.simulator.engine import Simulator

LABELS = ["namespace", "deployment", "pod"]


class ContractCollector(Collector):
    """Yields every contract series for every ready pod of every registered Deployment."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    def collect(self) -> Iterator[Metric]:
        snap = self._sim.snapshot()
        requests = CounterMetricFamily("model_requests_total", "Requests served.", labels=LABELS)
        errors = CounterMetricFamily(
            "model_request_errors_total", "Failed requests by category.", labels=LABELS + ["category"]
        )
        duration = HistogramMetricFamily(
            "model_request_duration_seconds", "Request latency.", labels=LABELS
        )
        evaluated = CounterMetricFamily(
            "model_predictions_evaluated_total", "Predictions that received ground truth.", labels=LABELS
        )
        correct = CounterMetricFamily(
            "model_predictions_correct_total", "Evaluated predictions that were correct.", labels=LABELS
        )
        confidence = HistogramMetricFamily(
            "model_prediction_confidence", "Confidence of each prediction.", labels=LABELS
        )
        cache = CounterMetricFamily(
            "model_cache_requests_total", "Cache lookups by result.", labels=LABELS + ["result"]
        )
        evictions = CounterMetricFamily("model_cache_evictions_total", "Cache evictions.", labels=LABELS)
        lookup = HistogramMetricFamily(
            "model_cache_lookup_duration_seconds", "Cache lookup latency.", labels=LABELS
        )
        for ns, dep, pod, c in snap:
            lv = [ns, dep, pod]
            requests.add_metric(lv, c.requests)
            for cat in ERROR_CATEGORIES:
                errors.add_metric(lv + [cat], c.errors[cat])
            duration.add_metric(lv, c.duration.cumulative(), c.duration.total)
            evaluated.add_metric(lv, c.predictions_evaluated)
            correct.add_metric(lv, c.predictions_correct)
            confidence.add_metric(lv, c.confidence.cumulative(), c.confidence.total)
            cache.add_metric(lv + ["hit"], c.cache_hits)
            cache.add_metric(lv + ["miss"], c.cache_misses)
            evictions.add_metric(lv, c.cache_evictions)
            lookup.add_metric(lv, c.cache_lookup.cumulative(), c.cache_lookup.total)
        info = GaugeMetricFamily("model_info", "The model each server loaded, by digest (1 per pod).",
                                 labels=LABELS + ["digest"])
        for ns, dep, pod, digest in self._sim.model_digests():
            info.add_metric([ns, dep, pod, digest], 1.0)
        yield from (requests, errors, duration, evaluated, correct, confidence, cache, evictions, lookup, info)
