"""Exact counter differences over a window (the fast path on a young step), evaluated by
Prometheus' own PromQL engine: ``promtool test rules`` (installed with Prometheus by
e2e/build.sh) runs the queries the plan renders over synthetic series with a steady pod,
a pod born within the window and a pod whose counters reset, and compares the answers
with the counts worked out by hand. No cluster, no scrape timing: the engine and the
series are exact, so the expected values are too.
"""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from modelrollout.adapters.metrics import promql
from modelrollout.adapters.metrics.catalogue import CATALOGUE
from modelrollout.adapters.metrics.plan import plan_queries
from modelrollout.adapters.metrics.request import SnapshotRequest, reads_exactly
from modelrollout.core.windows import FAST_PATH_CONDITIONS

from .test_dashboard import PROMTOOL

WINDOW = timedelta(seconds=20)
EVAL_AT = "25s"  # promtool's series start at t=0: the window reaches back to t=5


def exact_request() -> SnapshotRequest:
    conditions = {c.value for c in FAST_PATH_CONDITIONS}
    return SnapshotRequest(key="ml/r", namespace="ml", stable="s", canary="c",
                           windows={c: WINDOW for c in conditions}, exact=frozenset(conditions))


def exact_query(name: str) -> str:
    found = [q.promql for q in plan_queries([exact_request()]) if q.key.name == name and q.key.exact]
    assert len(found) == 1, found
    return found[0]


def series(metric: str, pod: str, values: str, **labels: str) -> dict[str, str]:
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    return {"series": f'{metric}{{namespace="ml",deployment="c",pod="{pod}"{extra}}}', "values": values}


# One sample per second from t=0. Pod a: steady. Pod b: born at t=10 (within the window).
# Pod r: its counters reset at t=11 (a restart within the window).
STEADY, BORN_LATE, RESET = "0+10x30", "_x10 0+5x20", "100+10x10 0+10x20"
# At t=25: a counted 250 - 50 = 200, b all of its 75 (absent at t=5), r its 140 since the reset.
COUNTED = 200 + 75 + 140


def run_promtool(tmp_path: Path, input_series: list[dict[str, str]], tests: list[dict[str, object]]) -> None:
    spec = {"evaluation_interval": "1s",
            "tests": [{"interval": "1s", "input_series": input_series, "promql_expr_test": tests}]}
    path = tmp_path / "exact.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_counts_over_the_window_cover_new_and_reset_series_without_extrapolation(tmp_path: Path) -> None:
    run_promtool(tmp_path, [
        series("model_requests_total", "a", STEADY),
        series("model_requests_total", "b", BORN_LATE),
        series("model_requests_total", "r", RESET),
    ], [{"expr": exact_query("requests"), "eval_time": EVAL_AT,
         "exp_samples": [{"labels": '{namespace="ml",deployment="c"}', "value": COUNTED}]}])


def test_a_counter_that_restarted_and_grew_back_counts_from_its_restart(tmp_path: Path) -> None:
    """A reset found by resets(), not by the sign of the difference: this pod's counters
    restarted at t=12; by t=25 ``correct`` (902) exceeds its value of t=5 (800) while
    ``evaluated`` (949) does not, so the sign alone would read accuracy 102/949 where it
    is 902/949, a false critical breach."""
    run_promtool(tmp_path, [
        series("model_predictions_evaluated_total", "g", "1000x11 0+73x13"),
        series("model_predictions_correct_total", "g", "800x11 0+69.4x13"),
    ], [{"expr": exact_query("predictions_evaluated"), "eval_time": EVAL_AT,
         "exp_samples": [{"labels": '{namespace="ml",deployment="c"}', "value": 949}]},
        {"expr": f"round({exact_query('predictions_correct')})", "eval_time": EVAL_AT,
         "exp_samples": [{"labels": '{namespace="ml",deployment="c"}', "value": 902}]}])


def test_labelled_counts_keep_their_label(tmp_path: Path) -> None:
    run_promtool(tmp_path, [
        series("model_request_errors_total", "a", STEADY, category="timeout"),
        series("model_request_errors_total", "r", RESET, category="timeout"),
        series("model_request_errors_total", "a", "0+1x30", category="other"),
    ], [{"expr": exact_query("errors"), "eval_time": EVAL_AT,
         "exp_samples": [{"labels": '{namespace="ml",deployment="c",category="timeout"}', "value": 200 + 140},
                         {"labels": '{namespace="ml",deployment="c",category="other"}', "value": 20}]}])


def test_rates_are_counts_over_the_windows_seconds(tmp_path: Path) -> None:
    """Evictions per minute: 2 per second over the 20 s window is 120 per minute; mean latency: pod a serves 10 requests/s at 1 ms, pod b 5/s at 3 ms from t=10,
    so (200 * 1 + 75 * 3) / 275 ms (compared in µs: sums of 0.01 are not exact in binary)."""
    run_promtool(tmp_path, [
        series("model_cache_evictions_total", "a", "0+2x30"),
        series("model_request_duration_seconds_count", "a", STEADY),
        series("model_request_duration_seconds_sum", "a", "0+0.01x30"),
        series("model_request_duration_seconds_count", "b", BORN_LATE),
        series("model_request_duration_seconds_sum", "b", "_x10 0+0.015x20"),
    ], [
        {"expr": exact_query("cache_evictions_per_minute"), "eval_time": EVAL_AT,
         "exp_samples": [{"labels": '{namespace="ml",deployment="c"}', "value": 120}]},
        {"expr": f"round(1000 * ({exact_query('latency_mean_ms')}))", "eval_time": EVAL_AT,
         "exp_samples": [{"labels": '{namespace="ml",deployment="c"}',
                          "value": round(1000 * (200 * 1 + 75 * 3) / 275)}]},
    ])


def test_every_critical_condition_can_be_read_exactly() -> None:
    for condition in FAST_PATH_CONDITIONS:
        assert reads_exactly(condition.value, {}), condition
        for name in CATALOGUE[condition.value].queries:
            text = promql.EXACT_QUERIES[name]
            assert "offset {window}" in text and text.count("[{window}]") == text.count("resets(")
            assert "increase(" not in text and "rate(" not in text.replace("resets(", "")


def test_only_counter_templates_can_be_rewritten() -> None:
    with pytest.raises(ValueError, match="not a counter template"):
        promql.exact_template("sum by ({by}) (my_gauge{{selector}})")
