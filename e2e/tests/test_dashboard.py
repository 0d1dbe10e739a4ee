"""The Grafana dashboard against a real operator: every panel's PromQL returns data.

A real operator process runs two rollouts in the test namespace — one healthy (promoted),
one whose canary turns slow at its second step (rolled back on latency) — while the
harness' Prometheus scrapes the operator's /metrics. Then every target of every panel of
``charts/modelrollout/dashboards/modelrollout.json`` is run the way Grafana runs it (range
queries over the test's time range; instant queries at its end), with the template
variables set to this namespace and this operator instance, and must return at least one
series with a value. A few answers are checked for their meaning too (the rollback's
trigger, the phases seen, the weights).
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.parse
import urllib.request
from typing import Any

import pytest

from e2e.harness.cluster import Cluster
from e2e.harness.dashboard import PanelQuery, load_dashboard, queries, substitute
from e2e.harness.manifests import rollout_manifest
from e2e.harness.operator_process import OperatorProcess
from e2e.harness.scenario import RolloutScenario

from .operator_support import crds, operator  # noqa: F401 — fixtures

pytestmark = pytest.mark.e2e

RATE_INTERVAL = "20s"
"""``$__rate_interval``: Grafana takes max(4 × scrape interval, step + scrape interval); the
harness scrapes every second, and 20 s holds enough samples for every rate."""
STEP = 2.0


def prom_range(cluster: Cluster, expr: str, start: float, end: float, step: float = STEP) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"})
    with urllib.request.urlopen(f"{cluster.prometheus_url}/api/v1/query_range?{query}", timeout=10) as resp:
        body = json.loads(resp.read())
    if body.get("status") != "success":
        raise RuntimeError(f"PromQL {expr!r}: {body}")
    return body["data"]["result"]


def numeric(value: str) -> bool:
    number = float(value)
    return not (math.isnan(number) or math.isinf(number))


def with_data(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The series that have at least one number (Grafana draws nothing for NaN)."""
    out = []
    for series in result:
        values = series.get("values") or ([series["value"]] if "value" in series else [])
        if any(numeric(v) for _, v in values):
            out.append(series)
    return out


def regex_literal(value: str) -> str:
    """``value`` matched literally inside a PromQL ``=~"…"`` string, as Grafana formats a
    variable's value: regex metacharacters escaped, the backslash doubled for the string."""
    return re.sub(r"([.+*?()|\[\]{}^$\\])", r"\\\\\1", value)


def answer(cluster: Cluster, q: PanelQuery, expr: str, start: float) -> list[dict[str, Any]]:
    if q.instant:
        return with_data(cluster.prom_query(expr))
    return with_data(prom_range(cluster, expr, start, time.time()))


def test_every_dashboard_query_returns_data_from_a_running_operator(
        crds: Cluster, namespace: str, operator: OperatorProcess) -> None:
    instance = f"127.0.0.1:{operator.metrics_port}"
    target_file = crds.add_scrape_target(f"dashboard-{namespace}", [instance])
    try:
        started = time.time()
        crds.wait_for(lambda: crds.prom_query(f'up{{instance="{instance}"}} == 1'), timeout=30,
                      message=f"Prometheus scraping the operator at {instance}")

        bad = RolloutScenario(crds, namespace, name="fraud")
        good = RolloutScenario(crds, namespace, name="scorer")
        bad.apply(rollout_manifest(bad.name, namespace, stable=bad.stable, canary=bad.canary))
        good.apply(rollout_manifest(good.name, namespace, stable=good.stable, canary=good.canary))
        bad.wait_status(lambda st: st.get("canaryWeight") == 50, timeout=90, message="fraud at its second step")
        # Scraped before the breach: the fast path rolls a canary slow from its step's first
        # second back within about half a second, before the next scrape of the operator.
        crds.wait_for(lambda: crds.prom_query(f'modelrollout_canary_weight_percent{{namespace="{namespace}", '
                                              f'name="fraud", instance="{instance}"}} == 50'),
                      timeout=30, interval=0.2, message="fraud's weight of 50 scraped from the operator")
        crds.simulator.set_behaviour(namespace, bad.canary, latency_ms={"median": 8.0, "p95": 14.0})
        bad.wait_phase("RolledBack", timeout=90)
        good.wait_phase("Succeeded", timeout=150)
        for name, phase in (("fraud", "RolledBack"), ("scorer", "Succeeded")):
            crds.wait_for(lambda: crds.prom_query(f'modelrollout_phase{{namespace="{namespace}", name="{name}", '
                                                  f'phase="{phase}", instance="{instance}"}} == 1'),
                          timeout=20, message=f"Prometheus seeing {name} {phase}")
        time.sleep(2 * STEP)  # so that the range queries' last steps fall after the final scrapes

        values = {"namespace": regex_literal(namespace), "rollout": ".*", "instance": regex_literal(instance),
                  "__rate_interval": RATE_INTERVAL}
        answers: dict[str, list[dict[str, Any]]] = {}
        for q in queries(load_dashboard()):
            expr = substitute(q.expr, values)
            # Prometheus has the last scrapes a second or two late: retry briefly.
            answers[f"{q.panel_title}/{q.ref_id}"] = crds.wait_for(
                lambda: answer(crds, q, expr, started), timeout=20, interval=1.0,
                message=f"data for {q.where}: {expr}")
    finally:
        target_file.unlink(missing_ok=True)

    phases = {s["metric"]["phase"] for s in answers["Rollouts by phase/A"]}
    assert {"Progressing", "RolledBack", "Succeeded"} <= phases, phases

    rollbacks = answers["Rollbacks by trigger and path/A"]
    assert [s["metric"]["trigger"] for s in rollbacks] == ["latency"], rollbacks
    assert rollbacks[0]["metric"]["path"] in ("tick", "fastPath") and float(rollbacks[0]["value"][1]) == 1

    def peak(series: dict[str, Any]) -> float:
        return max(float(v) for _, v in series["values"] if numeric(v))
    weights = {s["metric"]["name"]: peak(s) for s in answers["Canary weight/A"]}
    assert set(weights) == {"fraud", "scorer"} and weights["scorer"] == 100.0, weights
    # fraud's 50 % may last under the panel's 2 s step (the fast path rolls it back within
    # a second of the breach): its peak is read from every scraped sample instead.
    window = f"{int(time.time() - started) + 5}s"
    scraped = crds.prom_query(f'max_over_time(modelrollout_canary_weight_percent{{namespace="{namespace}", '
                              f'name="fraud", instance="{instance}"}}[{window}])')
    assert scraped and float(scraped[0]["value"][1]) >= 50.0, (weights, scraped)

    severities = {(s["metric"]["name"], s["metric"]["condition"]): peak(s) for s in answers["Condition severity/A"]}
    if rollbacks[0]["metric"]["path"] == "tick":  # the fast path acts between ticks: no tick scored the breach
        assert severities[("fraud", "latency")] > 0, severities
    assert {c for n, c in severities if n == "scorer"} >= {"accuracy", "latency", "errorRate"}, severities
