"""Confidence drift: KS on the canary's and the stable's cumulative confidence histograms."""

from __future__ import annotations

import pytest

from modelrollout.core.conditions import drift
from modelrollout.core.stats import ks_from_histograms

from .support import LE, DELETE, beta_histogram, ctx, snap

BALANCED = ctx()  # p < 0.05 and D > 0.10; critical D >= 0.30


def two_point(d: float, n_canary: int = 100_000, n_stable: int = 1_000_000):
    """Histograms whose CDFs differ by exactly d at one bound (0.5) and agree elsewhere."""
    stable = [0.0] * 4 + [0.5] + [0.5] * 4 + [1.0]
    canary = [0.0] * 4 + [0.5 + d] + [0.5 + d] * 4 + [1.0]
    return {
        "canary.confidence": {"le": LE, "counts": [c * n_canary for c in canary]},
        "stable.confidence": {"le": LE, "counts": [c * n_stable for c in stable]},
    }


def test_identical_distributions_do_not_trigger():
    r = drift.evaluate(snap(), BALANCED)
    assert r.severity == 0.0 and not r.inconclusive
    assert r.observed["statistic"] < 1e-6 and r.observed["p_value"] == pytest.approx(1.0)
    assert r.weight == 0.15 and r.samples == 1_800_000


def test_at_warning_statistic_is_not_triggered():
    r = drift.evaluate(snap(**two_point(0.10)), BALANCED)
    assert r.observed["statistic"] == pytest.approx(0.10)
    assert r.observed["p_value"] < 0.05 and not r.triggered


def test_between_bounds_is_proportional():
    r = drift.evaluate(snap(**two_point(0.20)), BALANCED)
    assert r.severity == pytest.approx(0.5) and not r.critical


def test_at_and_beyond_critical_statistic_is_critical():
    at = drift.evaluate(snap(**two_point(0.30)), BALANCED)
    assert at.severity == pytest.approx(1.0) and at.critical
    beyond = drift.evaluate(snap(**two_point(0.40)), BALANCED)
    assert beyond.critical and "critical" in beyond.message


def test_large_d_without_significance_is_not_triggered():
    # D 0.15 between 100 and 100 predictions: p ~ 0.2
    r = drift.evaluate(snap(**two_point(0.15, n_canary=100, n_stable=100)), BALANCED)
    assert r.observed["p_value"] > 0.05 and r.severity == 0.0 and "not significant" in r.message


def test_shifted_beta_is_drift():
    r = drift.evaluate(snap(**{"canary.confidence": beta_histogram(5, 3, 2000)}), BALANCED)
    assert r.triggered
    assert r.observed["statistic"] > 0.1 and r.observed["p_value"] < 1e-6


def test_statistic_and_p_value_come_from_the_histograms():
    s = snap(**{"canary.confidence": beta_histogram(7, 2, 3000)})
    r = drift.evaluate(s, BALANCED)
    ks = ks_from_histograms(s.canary.confidence.le, s.canary.confidence.counts,
                            s.stable.confidence.le, s.stable.confidence.counts)
    assert r.observed["statistic"] == ks.statistic and r.observed["p_value"] == ks.p_value
    assert r.observed["n_canary"] == 3000 and r.observed["n_stable"] == s.stable.confidence.total


def test_too_few_predictions_is_inconclusive_with_progress():
    r = drift.evaluate(snap(**{"canary.confidence": beta_histogram(8, 2, 64)}), BALANCED)
    assert r.inconclusive and not r.no_data and r.message.startswith("64/100 predictions")


@pytest.mark.parametrize("changes", [
    {"canary.confidence": DELETE},
    {"canary.confidence": {"le": LE, "counts": [0.0] * 10}},
    {"canary": DELETE},
])
def test_no_canary_samples_is_no_data(changes):
    r = drift.evaluate(snap(**changes), BALANCED)
    assert r.inconclusive and r.no_data


@pytest.mark.parametrize("changes", [{"stable.confidence": DELETE}, {"stable": DELETE}])
def test_missing_reference_is_inconclusive_not_no_data(changes):
    r = drift.evaluate(snap(**changes), BALANCED)
    assert r.inconclusive and not r.no_data and r.severity == 0.0
    assert "cannot be judged" in r.message


def test_empty_reference_skips_the_check_without_wedging():
    r = drift.evaluate(snap(**{"stable.confidence": {"le": LE, "counts": [0.0] * 10}}), BALANCED)
    assert not r.inconclusive and not r.triggered and "skipped" in r.message


@pytest.mark.parametrize("profile, triggered", [("conservative", True), ("balanced", False), ("aggressive", False)])
def test_profiles_move_the_bounds(profile, triggered):
    # min statistic 0.08 / 0.10 / 0.15
    assert drift.evaluate(snap(**two_point(0.09)), ctx(profile)).triggered is triggered


def test_worse_drift_never_lowers_severity():
    severities = [drift.evaluate(snap(**two_point(d / 100)), BALANCED).severity for d in range(0, 50, 2)]
    assert severities == sorted(severities)
