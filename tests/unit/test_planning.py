"""Step sizing (``modelrollout plan``, docs/tuning.md#sizing-steps): the samples for 90 %
power come from the operator's own gate, and the plan covers every step and condition."""

from __future__ import annotations

from datetime import timedelta

import pytest
from scipy.stats import binom

from modelrollout.api.models import ModelRolloutSpec
from modelrollout.core.planning import plan, render, samples_for_power
from modelrollout.core.stats import binomial_gate


def exact_power(n: int, bound: float, critical: float, worse: str, alpha: float) -> float:
    """P(the operator's gate finds a true rate of ``critical`` beyond ``bound``) with n samples."""
    return sum(float(binom.pmf(x, n, critical)) for x in range(n + 1)
               if binomial_gate(x, n, bound, worse, alpha).beyond)  # type: ignore[arg-type]


@pytest.mark.parametrize("bound,critical,worse", [
    (0.85, 0.75, "below"),   # accuracy, balanced
    (0.05, 0.10, "above"),   # error rate
    (0.98, 0.90, "below"),   # cache hit rate
    (0.90, 0.88, "below"),   # a close pair: thousands of samples
])
def test_samples_for_power_is_what_the_operator_s_own_gate_needs(bound: float, critical: float, worse: str) -> None:
    n = samples_for_power(bound, critical, worse, 0.05)
    assert n is not None
    assert exact_power(n, bound, critical, worse, 0.05) >= 0.90
    # and it is not wildly more than needed: a quarter fewer samples fall short
    assert exact_power(int(n * 0.75), bound, critical, worse, 0.05) < 0.90


def test_a_critical_bound_on_the_healthy_side_needs_no_samples_it_can_never_be_detected() -> None:
    assert samples_for_power(0.85, 0.90, "below", 0.05) is None
    assert samples_for_power(0.05, 0.05, "above", 0.05) is None


SPEC = {"stable": {"deployment": "a"}, "canary": {"deployment": "b"},
        "traffic": {"router": "gatewayAPI", "httpRoute": {"name": "r"}},
        "steps": [{"shadow": {"percent": 50, "duration": "10m"}}, {"weight": 5, "duration": "5m"},
                  {"weight": 100, "duration": "1h"}],
        "analysis": {"interval": "30s", "conditions": {"cache": {"enabled": False}}}}


def test_the_plan_covers_every_step_and_enabled_condition_at_the_step_s_share() -> None:
    spec = ModelRolloutSpec.model_validate(SPEC)
    steps = plan(spec, 200.0, 0.1)
    assert [p.label for p in steps] == ["shadow 50%", "5%", "100%"]
    assert [p.canary_rps for p in steps] == [100.0, 10.0, 200.0]
    names = [c.condition for c in steps[0].conditions]
    assert "cache" not in names and names[0] == "accuracy" and names[-1] == "anomaly"
    accuracy = steps[1].conditions[0]
    assert accuracy.rate == pytest.approx(1.0)  # 10 RPS × 10 % labelled
    assert accuracy.needs == timedelta(seconds=accuracy.power_n or 0)
    assert accuracy.power_n == 149 and accuracy.needs < steps[1].duration  # 149 labels at 1/s: 2.5 of its 5 minutes
    assert steps[0].too_short_for == steps[1].too_short_for == ["anomaly"]  # 30 points at 30 s = 15m
    assert steps[2].too_short_for == []
    text = render(steps, 200.0, 0.1, 0.05)
    assert "step 2 (5%, 5m): too short for" in text and "not modelled: relative bounds" in text


def test_late_labels_add_their_delay_to_accuracy_and_the_plan_says_its_share() -> None:
    spec = ModelRolloutSpec.model_validate({**SPEC, "analysis": {**SPEC["analysis"], "labelDelay": "20m"}})
    steps = plan(spec, 200.0, 0.1)
    accuracy = steps[1].conditions[0]
    assert accuracy.delay == timedelta(minutes=20)
    assert accuracy.needs == timedelta(minutes=20, seconds=149)  # the delay, then 149 labels at 1/s
    assert "accuracy" in steps[1].too_short_for  # a 5 m step cannot wait 20 m for labels
    assert "accuracy" not in steps[2].too_short_for
    text = render(steps, 200.0, 0.1, 0.05, spec.analysis.label_delay)
    assert "arriving up to 20m late (labelDelay)" in text and "labelDelay 20m is 89% of it" in text


def test_bad_traffic_figures_are_refused_naming_the_option() -> None:
    spec = ModelRolloutSpec.model_validate(SPEC)
    with pytest.raises(ValueError, match="--rps"):
        plan(spec, 0.0, 0.1)
    with pytest.raises(ValueError, match="--label-share"):
        plan(spec, 10.0, 1.5)
