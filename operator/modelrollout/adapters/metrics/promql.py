"""PromQL for the metrics contract: templates, safe label matchers, and result parsing.

This module owns the text that goes to Prometheus and the shape that comes back; it does
no I/O (``transport.py`` runs the queries, ``assembly.py`` builds snapshots). Keeping it
pure lets the unit tests check every query and every parse against canned API answers.

Why templates look the way they do:

* **One query serves many rollouts.** A template never names a rollout; it receives a
  ``{selector}`` matching every Deployment of the batch and groups ``by ({by})`` — the
  configured namespace and deployment label names — so the caller splits one answer into
  one value per (namespace, deployment). The number of queries grows with metrics and
  distinct windows, not with rollouts.
* **Placeholders are replaced literally** (``{selector}``, ``{window}``, ``{by}``); every
  other brace is PromQL's own, so ``model_requests_total{{selector}}`` is the metric with
  the selector inside its braces and ``model_x{result="hit",{selector}}`` adds a matcher.
  No ``str.format`` escaping to learn.
* **Label values are validated before they enter PromQL** (DNS-1123, the only values a
  namespace or Deployment name can take), so a spec can never inject a matcher; ``.``
  is escaped inside the regex matcher so ``a.b`` does not match ``axb``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ...errors import InvalidSpec, UnsafeLabelValue

# ------------------------------------------------------------------------- templates

PLACEHOLDERS = ("{selector}", "{window}", "{by}")

DEFAULT_QUERIES: dict[str, str] = {
    # errorRate: requests and errors by category, counts over the window
    "requests": "sum by ({by}) (increase(model_requests_total{{selector}}[{window}]))",
    "errors": "sum by ({by}, category) (increase(model_request_errors_total{{selector}}[{window}]))",
    # throughput
    "rps": "sum by ({by}) (rate(model_requests_total{{selector}}[{window}]))",
    # latency (milliseconds) and the requests behind it
    "latency_mean_ms": (
        "sum by ({by}) (rate(model_request_duration_seconds_sum{{selector}}[{window}]))"
        " / sum by ({by}) (rate(model_request_duration_seconds_count{{selector}}[{window}])) * 1000"
    ),
    "latency_p95_ms": (
        "histogram_quantile(0.95, sum by ({by}, le) "
        "(rate(model_request_duration_seconds_bucket{{selector}}[{window}]))) * 1000"
    ),
    "latency_p99_ms": (
        "histogram_quantile(0.99, sum by ({by}, le) "
        "(rate(model_request_duration_seconds_bucket{{selector}}[{window}]))) * 1000"
    ),
    "latency_count": "sum by ({by}) (increase(model_request_duration_seconds_count{{selector}}[{window}]))",
    # the buckets behind the quantiles, for their significance gate (the tick only)
    "latency_buckets": "sum by ({by}, le) (increase(model_request_duration_seconds_bucket{{selector}}[{window}]))",
    # accuracy (ground-truth feedback)
    "predictions_evaluated": "sum by ({by}) (increase(model_predictions_evaluated_total{{selector}}[{window}]))",
    "predictions_correct": "sum by ({by}) (increase(model_predictions_correct_total{{selector}}[{window}]))",
    # confidence drift: cumulative buckets over the window
    "confidence": "sum by ({by}, le) (increase(model_prediction_confidence_bucket{{selector}}[{window}]))",
    # cache
    "cache_requests": "sum by ({by}, result) (increase(model_cache_requests_total{{selector}}[{window}]))",
    "cache_evictions_per_minute": "sum by ({by}) (rate(model_cache_evictions_total{{selector}}[{window}])) * 60",
    "cache_lookup_ms": (
        "sum by ({by}) (rate(model_cache_lookup_duration_seconds_sum{{selector}}[{window}]))"
        " / sum by ({by}) (rate(model_cache_lookup_duration_seconds_count{{selector}}[{window}])) * 1000"
    ),
    # the lookup time's spread, for its significance gate (the tick only)
    "cache_lookup_buckets": (
        "sum by ({by}, le) (increase(model_cache_lookup_duration_seconds_bucket{{selector}}[{window}]))"),
    # anomaly: range queries over the canary, one point per analysis interval
    # ({window} is the rate window of each point: the step, at least 4 scrape intervals)
    "series_latency_p95_ms": (
        "histogram_quantile(0.95, sum by ({by}, le) "
        "(rate(model_request_duration_seconds_bucket{{selector}}[{window}]))) * 1000"
    ),
    "series_error_rate": (
        "sum by ({by}) (rate(model_request_errors_total{{selector}}[{window}]))"
        " / sum by ({by}) (rate(model_requests_total{{selector}}[{window}]))"
    ),
    "series_rps": "sum by ({by}) (rate(model_requests_total{{selector}}[{window}]))",
    # overdispersion: the stable's counts per interval, range queries with {window} = the
    # step, so that the points do not overlap (docs/decisions.md#overdispersion)
    "interval_requests": "sum by ({by}) (increase(model_requests_total{{selector}}[{window}]))",
    "interval_errors": "sum by ({by}, category) (increase(model_request_errors_total{{selector}}[{window}]))",
    "interval_predictions_evaluated": (
        "sum by ({by}) (increase(model_predictions_evaluated_total{{selector}}[{window}]))"),
    "interval_predictions_correct": "sum by ({by}) (increase(model_predictions_correct_total{{selector}}[{window}]))",
    "interval_cache_hits": 'sum by ({by}) (increase(model_cache_requests_total{result="hit",{selector}}[{window}]))',
    "interval_cache_misses": (
        'sum by ({by}) (increase(model_cache_requests_total{result="miss",{selector}}[{window}]))'),
    # model integrity: the digest each pod reports now (a fact, not a count over a window);
    # grouped by pod, so a pod scraped twice counts once
    "model_digests": "max by ({by}, pod, digest) (model_info{{selector}} > 0)",
}
"""Every default PromQL template, by the name ``spec.analysis.queries`` overrides."""

UNWINDOWED: frozenset[str] = frozenset({"model_digests"})
"""Templates read at an instant: they have no ``{window}``, and an override may not use one."""

EXTRA_LABEL: dict[str, str] = {"errors": "category", "confidence": "le", "cache_requests": "result",
                                "interval_errors": "category", "latency_buckets": "le", "cache_lookup_buckets": "le"}
"""Templates whose answer carries one more label than ``{by}``; overrides must keep it."""

SERIES_QUERIES: dict[str, str] = {
    "series_latency_p95_ms": "latency_p95_ms",
    "series_error_rate": "error_rate",
    "series_rps": "rps",
}
"""Range-query templates -> the key in ``side.series`` they fill."""

INTERVAL_QUERIES: dict[str, str] = {
    "interval_requests": "requests",
    "interval_errors": "errors",
    "interval_predictions_evaluated": "predictions_evaluated",
    "interval_predictions_correct": "predictions_correct",
    "interval_cache_hits": "cache_hits",
    "interval_cache_misses": "cache_misses",
}
"""Range-query templates of the stable's counts per interval -> the key in ``side.intervals``."""

_COUNTER_OVER_WINDOW = re.compile(r"\b(increase|rate)\((\w+)\{\{selector\}\}\[\{window\}\]\)")


def exact_template(template: str) -> str:
    """A default template rewritten to read exact counter differences over its window.

    ``increase(m{sel}[w])`` becomes, per series, ``m - m offset w`` where the series
    existed one window ago and did not reset within the window (``resets()``), else
    ``m`` itself: a series born or reset within the window counts from zero, i.e. what it
    counted since. A reset must be found by ``resets()``, not by the sign of the
    difference: a counter that restarted and grew back past its old value gives a
    positive difference that is wrong, and the two counters of a ratio would then be
    read differently. ``rate(m{sel}[w])`` is the count over the window's seconds (for a
    series younger than the window, an underestimate: only the cache eviction rate is
    such a rate, and it can then only miss a breach). No extrapolation: the answer is
    what the counters counted (docs/design.md#fast-path). ``* 1`` drops the metric name
    so that ``unless`` and ``or`` match the series of both sides by their labels. A series
    that ended within the window (a pod gone) counts nothing, where ``increase()`` would
    count its last increments. Requests that share a window share the query.
    """
    def exact(match: re.Match[str]) -> str:
        kind, metric = match.group(1), match.group(2)
        selected = f"{metric}{{{{selector}}}}"
        counted = (f"((({selected} - {selected} offset {{window}}) unless (resets({selected}[{{window}}]) > 0))"
                   f" or {selected} * 1)")
        return counted if kind == "increase" else f"({counted} / {{window_seconds}})"

    rewritten = _COUNTER_OVER_WINDOW.sub(exact, template)
    # every range left is a resets() of the rewriting: no increase() or rate() escaped it
    if "offset {window}" not in rewritten or rewritten.count("[{window}]") != rewritten.count("resets("):
        raise ValueError(f"not a counter template that can be read exactly: {template!r}")
    return rewritten


def exact_queries(names: Iterable[str]) -> dict[str, str]:
    """``exact_template`` of each named default template."""
    return {name: exact_template(DEFAULT_QUERIES[name]) for name in names}


EXACT_QUERIES: dict[str, str] = exact_queries([
    "requests", "errors", "latency_mean_ms", "latency_p95_ms", "latency_p99_ms", "latency_count",
    "predictions_evaluated", "predictions_correct", "confidence", "cache_requests", "cache_evictions_per_minute",
    "cache_lookup_ms",
])
"""The exact form of the critical conditions' templates (``exact_template``), read by the
fast path while the step is younger than their window."""

CUSTOM_PLACEHOLDERS = ("{namespace}", "{stable}", "{canary}")

# ------------------------------------------------------------------------- validation

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def check_namespace(value: str, field: str = "metadata.namespace") -> str:
    """A namespace as it may enter PromQL: a DNS-1123 label (<= 63 chars)."""
    if not isinstance(value, str) or len(value) > 63 or not DNS_LABEL.match(value):
        raise UnsafeLabelValue(
            f"{field}: {value!r} is not a DNS-1123 label (lowercase letters, digits and '-', "
            "at most 63 characters); it cannot be used in a PromQL label matcher"
        )
    return value


def check_deployment(value: str, field: str) -> str:
    """A Deployment name as it may enter PromQL: a DNS-1123 subdomain (<= 253 chars)."""
    if not isinstance(value, str) or len(value) > 253 or not DNS_SUBDOMAIN.match(value):
        raise UnsafeLabelValue(
            f"{field}: {value!r} is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', "
            "at most 253 characters); it cannot be used in a PromQL label matcher"
        )
    return value


def check_label_name(value: str, field: str) -> str:
    if not isinstance(value, str) or not LABEL_NAME.match(value):
        raise UnsafeLabelValue(f"{field}: {value!r} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)")
    return value


def resolve_queries(overrides: Mapping[str, str] | None, field: str = "spec.analysis.queries") -> dict[str, str]:
    """The templates a rollout uses: the defaults with its overrides laid over them.

    Raises ``InvalidSpec`` naming ``spec.analysis.queries.<name>`` for an unknown name or
    an override that lacks a placeholder the batching needs.
    """
    resolved = dict(DEFAULT_QUERIES)
    for name, template in (overrides or {}).items():
        where = f"{field}.{name}"
        if name not in DEFAULT_QUERIES:
            raise InvalidSpec(f"{where}: unknown query name; known names: {', '.join(sorted(DEFAULT_QUERIES))}")
        if not isinstance(template, str) or not template.strip():
            raise InvalidSpec(f"{where}: must be a non-empty PromQL template")
        if name in UNWINDOWED and "{window}" in template:
            raise InvalidSpec(f"{where}: this template is read at an instant and has no {{window}}; remove it")
        missing = [p for p in PLACEHOLDERS if p not in template and not (p == "{window}" and name in UNWINDOWED)]
        if missing:
            raise InvalidSpec(
                f"{where}: the template lacks {', '.join(missing)}; every template must match "
                "{selector}, cover {window} and group by ({by}) so one query serves every rollout"
            )
        extra = EXTRA_LABEL.get(name)
        if extra and not re.search(rf"\b{extra}\b", template):
            raise InvalidSpec(f"{where}: the answer must keep the {extra!r} label, e.g. sum by ({{by}}, {extra}) (…)")
        if name == "model_digests" and not (re.search(r"\bpod\b", template) and re.search(r"\bdigest\b", template)):
            raise InvalidSpec(f"{where}: the answer must keep the 'pod' and 'digest' labels, "
                              "e.g. max by ({by}, pod, digest) (…)")
        resolved[name] = template
    return resolved


# --------------------------------------------------------------------------- rendering


def promql_duration(value: timedelta) -> str:
    """Whole seconds, at least 1 (``increase(x[0s])`` is an error): ``900s``."""
    return f"{max(1, math.ceil(value.total_seconds() - 1e-9))}s"


def _regex_alternatives(values: Iterable[str]) -> str:
    # Values are validated DNS names: only [a-z0-9.-]. '.' is a regex metacharacter; the
    # PromQL string needs the backslash itself escaped, hence "\\.".
    return "|".join(v.replace(".", "\\\\.") for v in sorted(set(values)))


def build_selector(namespace_label: str, deployment_label: str, pairs: Iterable[tuple[str, str]]) -> str:
    """Matchers (without braces) for every (namespace, deployment) in ``pairs``.

    The product of the two regexes may match a few pairs nobody asked for (``ns1/b``
    when only ``ns1/a`` and ``ns2/b`` were); the caller keeps only the pairs it wants.
    """
    pairs = list(pairs)
    if not pairs:
        raise ValueError("a selector needs at least one (namespace, deployment) pair")
    check_label_name(namespace_label, "spec.analysis.labels.namespace")
    check_label_name(deployment_label, "spec.analysis.labels.deployment")
    namespaces = [check_namespace(ns) for ns, _ in pairs]
    deployments = [check_deployment(d, "deployment") for _, d in pairs]
    return (
        f'{namespace_label}=~"{_regex_alternatives(namespaces)}",'
        f'{deployment_label}=~"{_regex_alternatives(deployments)}"'
    )


def render(template: str, *, selector: str, window: timedelta, by: str) -> str:
    """Replace the placeholders literally; every other brace is PromQL's
    (``{window_seconds}``, the window as a number, is used by ``exact_template``'s)."""
    return (
        template.replace("{selector}", selector)
        .replace("{window_seconds}", promql_duration(window)[:-1])
        .replace("{window}", promql_duration(window))
        .replace("{by}", by)
    )


def render_custom(query: str, namespace: str, stable: str, canary: str) -> str:
    """A custom condition's PromQL for one rollout (validated values, substituted literally)."""
    return query.replace("{namespace}", namespace).replace("{stable}", stable).replace("{canary}", canary)


# ----------------------------------------------------------------------------- parsing

Pair = tuple[str, str]


def sample_value(raw: Any) -> float | None:
    """A Prometheus sample value (a string) as a float; NaN, ±Inf and junk are None."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _pair(metric: Mapping[str, str], namespace_label: str, deployment_label: str) -> Pair | None:
    ns, dep = metric.get(namespace_label), metric.get(deployment_label)
    return (ns, dep) if ns is not None and dep is not None else None


def parse_vector(result: list[dict[str, Any]], namespace_label: str, deployment_label: str) -> dict[Pair, float | None]:
    """An instant vector grouped by (namespace, deployment) -> value (None for NaN)."""
    out: dict[Pair, float | None] = {}
    for item in result:
        pair = _pair(item.get("metric", {}), namespace_label, deployment_label)
        if pair is None:
            continue
        value = item.get("value") or [None, None]
        out[pair] = sample_value(value[1])
    return out


def _labelled(result: list[dict[str, Any]], namespace_label: str, deployment_label: str,
              extra: str) -> Iterator[tuple[Pair, str, dict[str, Any]]]:
    """The series of an answer grouped by ``extra`` as (pair, extra value, series); series
    without the pair's labels or ``extra`` are left out."""
    for item in result:
        metric = item.get("metric", {})
        pair = _pair(metric, namespace_label, deployment_label)
        key = metric.get(extra)
        if pair is not None and key is not None:
            yield pair, key, item


def _points(item: dict[str, Any]) -> dict[float, float | None]:
    """One range series' samples: {timestamp: value}."""
    return {float(ts): sample_value(raw) for ts, raw in item.get("values") or []}


def parse_labelled(result: list[dict[str, Any]], namespace_label: str, deployment_label: str,
                   extra: str) -> dict[Pair, dict[str, float | None]]:
    """An instant vector grouped by (namespace, deployment, extra) -> {extra value: value}."""
    out: dict[Pair, dict[str, float | None]] = {}
    for pair, key, item in _labelled(result, namespace_label, deployment_label, extra):
        value = item.get("value") or [None, None]
        out.setdefault(pair, {})[key] = sample_value(value[1])
    return out


def parse_pod_digests(result: list[dict[str, Any]], namespace_label: str,
                      deployment_label: str) -> dict[Pair, dict[str, str]]:
    """``model_digests``' answer -> {(namespace, deployment): {pod: digest}}. A pod that
    reports several digests at once gets them comma-joined (sorted): it serves something
    besides the declared model, and the judgement must see it."""
    found: dict[Pair, dict[str, set[str]]] = {}
    for item in result:
        metric = item.get("metric", {})
        pair = _pair(metric, namespace_label, deployment_label)
        pod, digest = metric.get("pod"), metric.get("digest")
        if pair is None or pod is None or digest is None:
            continue
        found.setdefault(pair, {}).setdefault(pod, set()).add(digest)
    return {pair: {pod: ",".join(sorted(digests)) for pod, digests in pods.items()} for pair, pods in found.items()}


def parse_matrix(result: list[dict[str, Any]], namespace_label: str, deployment_label: str) -> dict[Pair, dict[float, float | None]]:
    """A range answer grouped by (namespace, deployment) -> {timestamp: value}."""
    out: dict[Pair, dict[float, float | None]] = {}
    for item in result:
        pair = _pair(item.get("metric", {}), namespace_label, deployment_label)
        if pair is not None:
            out.setdefault(pair, {}).update(_points(item))
    return out


def parse_matrix_labelled(result: list[dict[str, Any]], namespace_label: str, deployment_label: str,
                          extra: str) -> dict[Pair, dict[str, dict[float, float | None]]]:
    """A range answer grouped by (namespace, deployment, extra) -> {extra value: {timestamp: value}}."""
    out: dict[Pair, dict[str, dict[float, float | None]]] = {}
    for pair, key, item in _labelled(result, namespace_label, deployment_label, extra):
        out.setdefault(pair, {}).setdefault(key, {}).update(_points(item))
    return out


def series_points(points: Mapping[float, float | None], grid: list[float]) -> list[float | None]:
    """One value per grid timestamp, oldest first; a step with no sample is None."""
    return [points.get(ts) for ts in grid]


@dataclass(frozen=True, slots=True)
class CumulativeHistogram:
    le: list[float]
    counts: list[float]


def _buckets(buckets: Mapping[str, float | None], scale: float = 1.0) -> tuple[list[tuple[float, float]], float | None]:
    """An ``le``-grouped answer as its finite buckets (bound × ``scale``, count; sorted,
    NaN or negative counts as 0) and the ``+Inf`` bucket's count (None when absent)."""
    finite: list[tuple[float, float]] = []
    inf_count: float | None = None
    for le_raw, count in buckets.items():
        try:
            bound = float(le_raw)
        except ValueError:
            continue
        c = count if count is not None and count >= 0 else 0.0
        if math.isinf(bound):
            inf_count = c
        elif not math.isnan(bound):
            finite.append((bound * scale, c))
    finite.sort()
    return finite, inf_count


def _cumulative(finite: list[tuple[float, float]]) -> CumulativeHistogram:
    """Counts made non-decreasing (running maximum), as ``histogram_quantile`` does."""
    le, counts, running = [], [], 0.0
    for bound, c in finite:
        running = max(running, c)
        le.append(bound)
        counts.append(running)
    return CumulativeHistogram(le=le, counts=counts)


def latency_histogram(buckets: Mapping[str, float | None]) -> CumulativeHistogram | None:
    """Cumulative ``le`` buckets of a duration histogram in seconds (the ``latency_buckets``
    query) -> the finite ones in milliseconds, counts made non-decreasing as
    ``histogram_quantile`` does. The ``+Inf`` bucket is left out (the total is the
    latency's ``count``); None without it (a partial answer, as for confidence) or
    without any finite bucket."""
    finite, inf_count = _buckets(buckets, scale=1000.0)
    if inf_count is None or not finite:
        return None
    return _cumulative(finite)


def confidence_histogram(buckets: Mapping[str, float | None]) -> CumulativeHistogram | None:
    """Cumulative ``le`` buckets (as returned by the ``confidence`` query) -> a CDF.

    * buckets are sorted by their bound; NaN counts are 0;
    * ``+Inf`` is folded into 1.0: confidences live in [0, 1], so the +Inf bucket counts
      the same predictions as a bucket at 1.0. When the server has a bucket at or above
      1.0 the +Inf bucket is dropped; otherwise it becomes the 1.0 bucket;
    * counts are made non-decreasing (running maximum): ``increase()`` extrapolates each
      bucket series on its own, which can leave a bucket a hair below the one before it.
      ``histogram_quantile`` applies the same fix.

    None when there are no buckets at all (absent series), and when the ``+Inf`` bucket is
    missing: every Prometheus histogram has one, so an answer without it is partial (a
    scrape or rule evaluation cut short). Its last bucket would pass for the total and
    skew the CDF into a false drift; judged as no data instead (inconclusive, never
    healthy). Missing intermediate buckets only coarsen the CDF, which is conservative.
    """
    finite, inf_count = _buckets(buckets)
    if inf_count is None:
        return None
    if not (finite and finite[-1][0] >= 1.0):
        finite.append((1.0, inf_count))
    return _cumulative(finite)
