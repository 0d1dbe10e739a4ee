"""The Grafana dashboard's queries, as tests need them: every panel target with its
template variables replaced the way Grafana would replace them.

The dashboard itself is ``charts/modelrollout/dashboards/modelrollout.json`` (the chart
ships that file as a ConfigMap; there is no other copy). The unit tests check its
structure and PromQL syntax; ``e2e/tests/test_dashboard.py`` runs every query against
the real Prometheus scraping a real operator.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "charts" / "modelrollout" / "dashboards" / "modelrollout.json"

VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
"""Grafana's three variable syntaxes: ``${name}`` (``${name:format}``), ``$name``, ``[[name]]``."""


@dataclass(frozen=True)
class PanelQuery:
    panel_id: int
    panel_title: str
    ref_id: str
    expr: str
    instant: bool

    @property
    def where(self) -> str:
        return f"panel {self.panel_id} {self.panel_title!r} target {self.ref_id}"


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included (rows themselves too)."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    return [PanelQuery(p["id"], p.get("title", ""), t["refId"], t["expr"], bool(t.get("instant")))
            for p in panels(dashboard) for t in p.get("targets", []) if t.get("expr")]


def variables_in(expr: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in VARIABLE.finditer(expr)}


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace Grafana variables; a variable without a value raises KeyError naming it."""
    def one(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in values:
            raise KeyError(f"no value for the dashboard variable ${name} in {expr!r}")
        return values[name]
    return VARIABLE.sub(one, expr)
