"""Fuzzed ModelRollouts against the real apiserver and the real operator, small.

``make fuzz`` runs ``e2e/fuzz_specs.py`` on 10,000 generated specs and 30 real rollouts
(docs/fuzz.md); this runs the same code in-process on 300 specs and 4 real rollouts
(under two minutes) and asserts its checks: every rejection names a field, the operator's
validation never crashes on what the apiserver accepts, the operator never exits and logs
no traceback, and it never acts on a spec it finds invalid.
"""

from __future__ import annotations

import pytest

from e2e import fuzz_specs
from e2e.harness.cluster import Cluster

from .operator_support import crds  # noqa: F401 — fixture

pytestmark = pytest.mark.e2e

SEED = 1


def test_fuzzed_specs_are_refused_naming_the_field_or_handled_by_the_operator(crds: Cluster, namespace: str) -> None:
    options = fuzz_specs.Options(count=300, seed=SEED, runs=4, parallel=4, run_timeout=75.0,
                                 dry_run_timeout=60.0, deadline=200.0)
    report = fuzz_specs.run(options, cluster=crds, namespace=namespace)
    print(report.details())
    print(report.line())

    assert len(report.cases) == 300 and not report.errors, report.line()
    assert report.rejected and report.accepted, report.line()
    assert not report.rejected_without_field, brief(report.rejected_without_field, lambda c: c.message)
    assert not report.validation_crashes, brief(report.validation_crashes, lambda c: c.validation_crash)

    assert len(report.runs) == 4, report.line()
    assert any(r.case.operator_invalid for r in report.runs), "the sample holds no spec the operator refuses"
    assert not report.crashes, report.crashes[0]
    assert not report.tracebacks, report.tracebacks[0]
    assert not report.acted_on_invalid, brief(report.acted_on_invalid, lambda r: "; ".join(r.problems))
    unexplained = [r for r in report.runs if r.outcome in ("stuck", "setup-error", "skipped") or r.problems]
    assert not unexplained, brief(unexplained, lambda r: f"{r.outcome}: {r.detail} {r.problems}")


def brief(items: list, what) -> str:  # type: ignore[no-untyped-def]
    """The first few offenders, one line each: label, what happened, the spec."""
    import json

    lines = []
    for item in items[:3]:
        case = getattr(item, "case", item)
        spec = json.dumps(case.manifest.get("spec"), separators=(",", ":"), default=str)
        lines.append(f"[{case.label}] {str(what(item))[:300]} | spec {spec[:400]}")
    return f"{len(items)}:\n" + "\n".join(lines)
