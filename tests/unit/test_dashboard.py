"""The Grafana dashboard: its structure, its PromQL, and the chart's ConfigMap of it.

No cluster: the queries' *syntax* is checked with promtool (installed with Prometheus by
``make cluster-build``) and every metric they read must be one the operator defines
(``telemetry.OperatorMetrics``). That each query returns data from a real operator is
``e2e/tests/test_dashboard.py``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.harness.cluster import built_path
from e2e.harness.dashboard import DASHBOARD, load_dashboard, panels, queries, substitute, variables_in
from modelrollout.telemetry import OperatorMetrics

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modelrollout"
# Built before collection by the root conftest (e2e/build.sh helm prometheus).
HELM = [built_path("HELM")]
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

DS = {"type": "prometheus", "uid": "${datasource}"}
# What Grafana would put in place of the variables, for a syntax check.
SAMPLE_VALUES = {"namespace": "(ml|risk)", "rollout": ".*", "instance": ".*", "__rate_interval": "1m",
                 "__interval": "30s", "__range": "6h", "datasource": "prometheus"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def data_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in panels(dashboard) if p["type"] != "row"]


def exported_metric_names() -> set[str]:
    """Every series name the operator's registry can export (histogram parts included)."""
    names: set[str] = set()
    for metric in OperatorMetrics().registry.collect():
        if metric.type == "counter":
            names.add(metric.name + "_total")
        elif metric.type == "histogram":
            names.update(metric.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(metric.name)
    return names


def metrics_in(expr: str) -> set[str]:
    return set(re.findall(r"\bmodelrollout_[a-z_]+\b", expr))


def test_identity_and_variables(dashboard):
    assert dashboard["uid"] == "modelrollout" and dashboard["title"] == "ModelRollout"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"datasource", "namespace", "rollout", "instance"}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "rollout", "instance"):
        var = variables[name]
        assert var["type"] == "query" and var["datasource"] == DS
        assert var["includeAll"] and var["multi"] and var["allValue"] == ".*", name
    assert "$namespace" in variables["rollout"]["query"]["query"]


def test_every_panel_reads_the_datasource_variable(dashboard):
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in data_panels(dashboard):
        assert panel["datasource"] == DS, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DS and target["expr"].strip(), (panel["title"], target["refId"])


def test_panels_fit_the_grid_without_overlapping(dashboard):
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(dashboard):
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_the_panels_the_issue_asks_for(dashboard):
    by_title = {p["title"]: p for p in data_panels(dashboard)}
    exprs = {title: " ".join(t["expr"] for t in p["targets"]) for title, p in by_title.items()}
    assert "by (phase)" in exprs["Rollouts by phase"] and "modelrollout_phase" in exprs["Rollouts by phase"]
    assert "modelrollout_canary_weight_percent" in exprs["Canary weight"]
    assert "by (namespace, name)" in exprs["Canary weight"]
    assert "modelrollout_risk_score" in exprs["Risk score"] and "by (namespace, name)" in exprs["Risk score"]
    assert "by (namespace, name, condition)" in exprs["Condition severity"]
    assert "by (trigger, path)" in exprs["Rollbacks by trigger and path"]
    assert "modelrollout_rollbacks_total" in exprs["Rollbacks by trigger and path"]
    assert "by (action, path)" in exprs["Decisions by action"]
    assert exprs["Tick duration"].count("histogram_quantile") == 3
    assert "modelrollout_tick_duration_seconds_bucket" in exprs["Tick duration"]
    assert "by (path)" in exprs["Prometheus queries per second by path"]
    assert "modelrollout_prometheus_query_errors_total" in exprs["Prometheus query errors and operator errors"]
    assert "modelrollout_operator_errors_total" in exprs["Prometheus query errors and operator errors"]


def test_rollout_panels_filter_by_namespace_rollout_and_instance(dashboard):
    for q in queries(dashboard):
        used = variables_in(q.expr)
        assert "instance" in used, q.where
        if metrics_in(q.expr) & {"modelrollout_phase", "modelrollout_canary_weight_percent", "modelrollout_risk_score",
                                 "modelrollout_current_step", "modelrollout_condition_severity",
                                 "modelrollout_rollbacks_total"}:
            assert {"namespace", "rollout"} <= used, q.where
        assert used <= {"namespace", "rollout", "instance", "__rate_interval"}, (q.where, used)


def test_queries_read_only_metrics_the_operator_exports(dashboard):
    exported = exported_metric_names()
    used: set[str] = set()
    for q in queries(dashboard):
        names = metrics_in(q.expr)
        assert names, q.where
        assert names <= exported, (q.where, names - exported)
        used |= names
    # Every metric the operator exports is on the dashboard (histograms through one of their parts).
    families = {re.sub(r"_(bucket|sum|count|total)$", "", n) for n in used}
    for metric in OperatorMetrics().registry.collect():
        assert metric.name in families, f"{metric.name} is on no panel"


def test_substitute_replaces_every_variable_syntax():
    assert substitute('x{a=~"$namespace",b=~"${rollout}",c=~"[[instance]]"}[$__rate_interval]',
                      {"namespace": "ml", "rollout": "r", "instance": "i", "__rate_interval": "1m"}) == \
        'x{a=~"ml",b=~"r",c=~"i"}[1m]'
    with pytest.raises(KeyError, match="namespace"):
        substitute("x{a=~\"$namespace\"}", {})


def test_every_query_is_valid_promql(dashboard, tmp_path):
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel{q.panel_id}:{q.ref_id.lower()}", "expr": substitute(q.expr, SAMPLE_VALUES)}
        for q in queries(dashboard)]}]}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ----------------------------------------------------------------------------- the chart's ConfigMap

def render(*args: str) -> list[dict[str, Any]]:
    result = subprocess.run([str(HELM[-1]), "template", "mro", str(CHART), "--namespace", "modelrollout-system",
                             *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def dashboard_maps(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == "ConfigMap" and "modelrollout.json" in (d.get("data") or {})]


def test_chart_ships_the_dashboard_file_itself_for_the_grafana_sidecar():
    cm, = dashboard_maps(render())
    assert cm["metadata"]["name"] == "mro-modelrollout-dashboard"
    assert cm["metadata"]["namespace"] == "modelrollout-system"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["labels"]["app.kubernetes.io/instance"] == "mro"
    # One source: the ConfigMap holds the file byte for byte.
    assert cm["data"]["modelrollout.json"] == DASHBOARD.read_text()


def test_dashboard_configmap_can_be_moved_relabelled_or_switched_off():
    assert not dashboard_maps(render("--set", "grafanaDashboard.enabled=false"))
    cm, = dashboard_maps(render("--set", "grafanaDashboard.namespace=monitoring",
                                "--set", "grafanaDashboard.labels.grafana_dashboard=null",
                                "--set", "grafanaDashboard.labels.dashboards=ml",
                                "--set", "grafanaDashboard.annotations.grafana_folder=ML rollouts"))
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["dashboards"] == "ml" and "grafana_dashboard" not in cm["metadata"]["labels"]
    assert cm["metadata"]["annotations"] == {"grafana_folder": "ML rollouts"}
