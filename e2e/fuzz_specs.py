"""Fuzzed ModelRollout specs (hypothesis) against the real apiserver and the real operator.

``python -m e2e.fuzz_specs --count 10000 --seed 1`` (``make fuzz``; docs/fuzz.md):

1. **generate** ``--count`` manifests with hypothesis: valid specs drawn from the models'
   own ranges (api/models.py, api/thresholds.py: every bound, every ordered pair of
   thresholds consistent with the profile), with 0-3 targeted mutations on most of them
   (wrong types, out-of-range numbers, steps not increasing / not ending at 100, bad and
   huge durations, unknown routers and enums, gatewayAPI without httpRoute, bad digests,
   custom conditions with critical on the wrong side, threshold overrides inconsistent
   with the profile, promotion counts / percentages / junk, unknown fields, nulls,
   unknown query names, junk pod-template values, ...). Each mutation records a label
   and the field path it touched;
2. **dry-run** each with a server-side dry-run create (``dryRun=All``,
   ``fieldValidation=Strict`` as kubectl sends it) and classify it: rejected (does the
   message name a field: ``details.causes[].field`` or the text, and is it the mutated
   one?) or accepted; for accepted ones, run the operator's own validation on what the
   apiserver would store (``parse_spec``, then the query plan the first tick builds,
   ``SnapshotRequest.for_rollout``): agrees, or marks it InvalidSpec (counted), or
   *raises something else* (a crash in validation: a product bug). Disagreements both
   ways are collected by label;
3. **run** a bounded, stratified sample of the accepted ones for real (``--runs``): each
   gets its own stable Deployment (``RolloutScenario``), its names and durations
   shortened (docs/fuzz.md lists exactly what is changed), and is created in a namespace
   watched by one operator process. Each must end Succeeded, RolledBack, Failed with a
   reason or Ready=False InvalidSpec within ``--run-timeout``; an InvalidSpec one must
   have no canary Deployment and an untouched stable; the operator must never exit and
   its log must hold no traceback.

Ends with one line::

    fuzz: N specs, A accepted, R rejected (F naming the field), I invalid-in-operator, S run to an end: ...

and exits 1 when a check failed (a rejection naming no field, a crash, a traceback, an
action on an invalid spec, a validation crash), 0 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import json
import math
import random
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.rest import ApiException

from modelrollout.adapters.metrics.promql import DEFAULT_QUERIES, EXTRA_LABEL, UNWINDOWED
from modelrollout.adapters.metrics.request import SnapshotRequest
from modelrollout.api.crd import openapi_schema
from modelrollout.api.durations import parse_duration
from modelrollout.api.manifests import ManifestError, parse_spec
from modelrollout.api.models import ModelRolloutStatus
from modelrollout.api.thresholds import PROFILES, ConditionName, Profile
from modelrollout.core.windows import plan_windows
from modelrollout.errors import InvalidSpec
from pydantic.alias_generators import to_snake

GROUP, VERSION, PLURAL, KIND = "modelrollout.io", "v1alpha1", "modelrollouts", "ModelRollout"
BUILTIN = [c.value for c in ConditionName]
PROFILE_NAMES = [p.value for p in Profile]

Json = dict[str, Any]
Path = tuple[Any, ...]  # ("steps", 1, "weight")


# =============================================================================== schema
# The CRD's own schema (generated from the models): the generic mutations pick their
# target among its nodes, so a field added to the models is fuzzed without a change here.

SPEC_SCHEMA: Json = openapi_schema()["properties"]["spec"]


@dataclass(frozen=True)
class Node:
    path: tuple[str, ...]   # schema path: property names, "[]" for list items, "*" for map values
    schema: Json

    @property
    def kind(self) -> str:
        if self.schema.get("x-kubernetes-int-or-string"):
            return "int-or-string"
        return str(self.schema.get("type", "any"))


def _nodes(schema: Json, path: tuple[str, ...] = ()) -> Iterator[Node]:
    if path:
        yield Node(path, schema)
    for name, sub in (schema.get("properties") or {}).items():
        yield from _nodes(sub, (*path, name))
    if "items" in schema:
        yield from _nodes(schema["items"], (*path, "[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], (*path, "*"))


NODES: list[Node] = list(_nodes(SPEC_SCHEMA))
NUMERIC = [n for n in NODES if n.kind in ("integer", "number") and ("minimum" in n.schema or "maximum" in n.schema)]
PATTERNED = [n for n in NODES if n.kind == "string" and "pattern" in n.schema]
ENUMS = [n for n in NODES if "enum" in n.schema]
OBJECTS = [n for n in NODES if n.kind == "object" and n.schema.get("properties")]


def path_text(path: Path, root: str = "spec") -> str:
    """("steps", 1, "weight") -> spec.steps[1].weight (the apiserver's spelling)."""
    out = root
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


# =========================================================================== strategies

IMAGES = ["registry.example/model:v2", "registry.example/fraud:v2", "ghcr.io/acme/recommender@sha256:" + "ab" * 32,
          "model:2.0.1", "localhost:5000/llm/serving:latest"]
# At least what the e2e stable requests (1 GPU, 1 cpu, 2Gi): a limit below a request the pod
# template keeps would make the canary Deployment invalid (template.* mutations try that).
RESOURCE_VALUES = {"nvidia.com/gpu": ["1", "2", "3", "4"], "memory": ["2Gi", "4Gi", "24Gi"], "cpu": ["1", "2", "4"]}
DURATION_JUNK = ["5", "five", "-1s", "1d", "1 h", "", "1.s", ".5s", "1e3s", "10us", "10ns", "1h-", "PT30S", "30 s",
                 "1H", "1w", "∞", "0x10s", "1h 30m", "s", "30sec", "1m30", "+5s", "1,5s"]
DURATION_HUGE = ["99999999999h", "9" * 25 + "s", "1" + "0" * 400 + "ms", "2562048h", "100000000000000m"]
NAME_JUNK = ["Fraud", "fraud_scorer", "-fraud", "fraud-", "a" * 254, "", "a..b", "fraud scorer", "fraud/v2", "ünï"]
DIGEST_JUNK = ["sha256:" + "a" * 63, "sha256:" + "a" * 65, "sha256:" + "A" * 64, "sha512:" + "a" * 64, "a" * 64,
               "sha256:" + "g" * 64, "", "sha256: " + "a" * 64, "SHA256:" + "a" * 64, "sha256:" + "a" * 64 + "\n"]
INT_OR_PERCENT_JUNK = ["150%", -1, "abc", "101%", "-5%", "25 %", " 25%", "5", "0x10", 1.5, True, "", "%", "100.0%",
                       "1e2%", "25%%", 2**31, 10**20, "２５%", None, [25], {"percent": 25}]
ROUTER_JUNK = ["istio", "Replicas", "gatewayapi", "GatewayAPI", "nginx", "", "linkerd", "replicas ", "smi"]
PROFILE_JUNK = ["Balanced", "default", "safe", "", "conservative,balanced", "BALANCED"]
CUSTOM_NAME_JUNK = ["1abc", "has space", "x" * 64, "", "näme", "-lead", "a.b", "_x"]
PROMQL = ["vector(0.5)", 'sum(rate(model_requests_total{namespace="{namespace}",deployment="{canary}"}[1m]))',
          'histogram_quantile(0.99, sum by (le) (rate(model_request_duration_seconds_bucket'
          '{namespace="{namespace}",deployment="{canary}"}[2m]))) * 1000',
          "scalar(up)", "foo(", "sum(", 'rate(x[5m]', "1/0", "not promql at all"]
ENV_NAMES_JUNK = ["1BAD", "has space", "", "a=b", "ÄÖ"]
QUANTITY_JUNK = ["abc", "-1", "1.5.5", "2 Gi", "1e999", "0x10", ""]


def _snake(name: str) -> str:
    return to_snake(name)


def fmt_ms(total_ms: int, style: str) -> str:
    """A duration in one of the spellings users write: 90s, 1m30s, 1.5m, 90000ms."""
    if style == "ms":
        return f"{total_ms}ms"
    if style == "s" and total_ms % 1000 == 0:
        return f"{total_ms // 1000}s"
    if style == "s":
        return f"{total_ms / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if style == "m" and total_ms % 6000 == 0:
        return f"{total_ms / 60000:.1f}".rstrip("0").rstrip(".") + "m"
    if total_ms == 0:
        return "0s"
    parts = []
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    for value, unit in ((hours, "h"), (minutes, "m"), (seconds, "s"), (millis, "ms")):
        if value:
            parts.append(f"{value}{unit}")
    return "".join(parts)


def durations(min_s: float = 0.0, max_s: float = 7200.0) -> st.SearchStrategy[str]:
    return st.builds(fmt_ms, st.integers(int(min_s * 1000), int(max_s * 1000)),
                     st.sampled_from(["go", "go", "s", "ms", "m"]))


def dns_names(max_len: int = 20) -> st.SearchStrategy[str]:
    return st.from_regex(rf"\A[a-z]([a-z0-9-]{{0,{max_len - 2}}}[a-z0-9])?\Z")


def label_names() -> st.SearchStrategy[str]:
    return st.from_regex(r"\A[a-zA-Z_][a-zA-Z0-9_]{0,15}\Z")


def numbers(lo: float, hi: float, *, lo_excl: bool = False, hi_excl: bool = False) -> st.SearchStrategy[float | int]:
    """A float in the range, sometimes written as an integer (users write ``threshold: 1``)."""
    floats = st.floats(lo, hi, exclude_min=lo_excl, exclude_max=hi_excl, allow_nan=False, allow_infinity=False)
    ilo = math.floor(lo) + 1 if lo_excl and float(lo).is_integer() else math.ceil(lo)
    ihi = math.ceil(hi) - 1 if hi_excl and float(hi).is_integer() else math.floor(hi)
    if ilo <= ihi:
        return st.one_of(floats, floats, floats, st.integers(ilo, min(ihi, ilo + 1000)))
    return floats


def bounds_of(schema: Json, cap: float = 1e6) -> tuple[float, float, bool, bool]:
    lo = float(schema.get("minimum", -cap))
    hi = float(schema.get("maximum", cap))
    return lo, hi, bool(schema.get("exclusiveMinimum")), bool(schema.get("exclusiveMaximum"))


def schema_at(path: tuple[str, ...]) -> Json:
    node = SPEC_SCHEMA
    for part in path:
        node = node["items"] if part == "[]" else node["additionalProperties"] if part == "*" else node["properties"][part]
    return node


# Ordered threshold pairs: (warning field, critical field, how they must relate).
#   lower:   critical < warning (lower is worse)      higher: critical > warning
#   atmost:  baselineRate <= maxRate                   service: criticalServiceRps < minServiceRps, unless min is 0
PAIRS: dict[str, list[tuple[str, str, str]]] = {
    "accuracy": [("minAccuracy", "criticalAccuracy", "lower"), ("maxRelativeDrop", "criticalRelativeDrop", "higher")],
    "confidenceDrift": [("minStatistic", "criticalStatistic", "higher")],
    "errorRate": [("maxRate", "baselineRate", "atmost")],
    "cache": [("minHitRate", "criticalHitRate", "lower")],
    "throughput": [("minServiceRps", "criticalServiceRps", "service"), ("maxShareDrop", "criticalShareDrop", "higher")],
}


def ordered(kind: str, warn: float, crit: float) -> bool:
    if kind == "lower":
        return crit < warn
    if kind == "higher":
        return crit > warn
    if kind == "atmost":
        return crit <= warn
    return warn == 0 or crit < warn  # service


def profile_value(profile: str, condition: str, name: str) -> float:
    thresholds = getattr(PROFILES[Profile(profile)], _snake(condition))
    return float(getattr(thresholds, _snake(name)))


@st.composite
def pair_values(draw: st.DrawFn, condition: str, warn: str, crit: str, kind: str, profile: str) -> Json:
    """Values for one ordered pair, consistent with each other and with the profile's other side."""
    lo, hi, lo_x, hi_x = bounds_of(schema_at(("analysis", "conditions", condition, warn)), cap=50_000)
    pw, pc = profile_value(profile, condition, warn), profile_value(profile, condition, crit)
    mode = draw(st.sampled_from(["none", "none", "warn", "crit", "both"]))
    if mode == "none":
        return {}
    if mode == "both":
        a, b = draw(numbers(lo, hi, lo_excl=lo_x, hi_excl=hi_x)), draw(numbers(lo, hi, lo_excl=lo_x, hi_excl=hi_x))
        if kind == "service" and draw(st.booleans()):
            return {warn: 0, crit: b}
        if a == b and kind != "atmost":
            return {}
        small, big = min(a, b), max(a, b)
        return {warn: big, crit: small} if kind in ("lower", "atmost", "service") else {warn: small, crit: big}
    # One side only: it must sit on the right side of the profile's value of the other.
    value = draw(numbers(lo, hi, lo_excl=lo_x, hi_excl=hi_x))
    if mode == "warn":
        return {warn: value} if ordered(kind, value, pc) else {}
    return {crit: value} if ordered(kind, pw, value) else {}


@st.composite
def condition_override(draw: st.DrawFn, condition: str, profile: str) -> Json:
    out: Json = {}
    paired = {n for w, c, _ in PAIRS.get(condition, []) for n in (w, c)}
    props = schema_at(("analysis", "conditions", condition))["properties"]
    for name, sub in props.items():
        if name in paired or not draw(st.integers(0, 3)) == 0:
            continue
        if name == "enabled":
            out[name] = draw(st.booleans())
        elif name == "window":
            out[name] = draw(durations(1, 3 * 3600))
        elif name == "minSamples":
            out[name] = draw(st.integers(1, 5000))
        elif name == "categories":
            cats = sub["properties"]
            out[name] = {c: draw(numbers(0, 1)) for c in draw(st.lists(st.sampled_from(sorted(cats)), unique=True))}
        elif name == "sensitivity":
            out[name] = draw(st.sampled_from(sub["enum"]))
        else:
            lo, hi, lo_x, hi_x = bounds_of(sub, cap=10_000)
            out[name] = draw(numbers(lo, hi, lo_excl=lo_x, hi_excl=hi_x))
    for warn, crit, kind in PAIRS.get(condition, []):
        out.update(draw(pair_values(condition, warn, crit, kind, profile)))
    return out


@st.composite
def custom_conditions(draw: st.DrawFn, size: int | None = None) -> list[Json]:
    names = draw(st.lists(st.from_regex(r"\A[a-zA-Z][a-zA-Z0-9_-]{0,20}\Z").filter(lambda n: n not in BUILTIN),
                          unique=True, min_size=size or 0, max_size=size or 3))
    out = []
    for name in names:
        direction = draw(st.sampled_from([None, "above", "below"]))
        a, b = draw(numbers(-1000, 1000)), draw(numbers(-1000, 1000))
        if a == b:
            b = a + 1
        low, high = min(a, b), max(a, b)
        threshold, critical = (high, low) if direction == "below" else (low, high)
        item: Json = {"name": name, "query": draw(st.sampled_from(PROMQL)), "threshold": threshold, "critical": critical}
        if direction:
            item["direction"] = direction
        if draw(st.booleans()):
            item["weight"] = draw(numbers(0, 100))
        if draw(st.integers(0, 3)) == 0:
            item["minSamplesQuery"] = draw(st.sampled_from(PROMQL))
        if draw(st.integers(0, 3)) == 0:
            item["minSamples"] = draw(st.integers(1, 10_000))
        if draw(st.integers(0, 4)) == 0:
            item["enabled"] = draw(st.booleans())
        out.append(item)
    return out


@st.composite
def valid_steps(draw: st.DrawFn, max_steps: int = 20) -> list[Json]:
    weights = draw(st.lists(st.integers(1, 99), unique=True, max_size=max_steps - 1)) + [100]
    return [{"weight": w, "duration": draw(durations(1, 7200))} for w in sorted(weights)]


@st.composite
def shadow_settings(draw: st.DrawFn) -> Json:
    """A shadow step's settings (docs/shadow.md)."""
    shadow: Json = {"duration": draw(durations(1, 7200))}
    if maybe(draw):
        shadow["percent"] = draw(st.integers(1, 100))
    if maybe(draw, 3):
        shadow["replicas"] = draw(st.integers(1, 50))
    return shadow


def maybe(draw: st.DrawFn, chance: int = 2) -> bool:
    """True one time in ``chance``."""
    return draw(st.integers(1, chance)) == 1


@st.composite
def valid_specs(draw: st.DrawFn) -> Json:
    """A spec the models accept, drawn from their own ranges."""
    stable = draw(dns_names())
    canary = draw(dns_names().filter(lambda n: n != stable))
    spec: Json = {"stable": {"deployment": stable}, "canary": {"deployment": canary}}
    if maybe(draw, 3) is False:
        template: Json = {}
        if maybe(draw):
            template["image"] = draw(st.sampled_from(IMAGES))
        if maybe(draw, 6):
            template["container"] = "server"
        if maybe(draw, 3):
            template["modelDigest"] = "sha256:" + draw(st.from_regex(r"\A[a-f0-9]{64}\Z"))
        if maybe(draw):
            # Limits, and requests equal to some of them (extended resources must request their limit).
            res: Json = {}
            if maybe(draw, 4) is False:
                keys = draw(st.lists(st.sampled_from(sorted(RESOURCE_VALUES)), unique=True, min_size=1))
                res["limits"] = {k: draw(st.sampled_from(RESOURCE_VALUES[k])) for k in keys}
                requested = draw(st.lists(st.sampled_from(keys), unique=True))
                if requested:
                    res["requests"] = {k: res["limits"][k] for k in requested}
            template["resources"] = res
        if maybe(draw, 3):
            template["env"] = draw(st.dictionaries(st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,12}\Z"), st.text(max_size=20),
                                                   max_size=3))
        spec["canary"]["template"] = template
    if maybe(draw):
        router = draw(st.sampled_from(["replicas", "gatewayAPI", None]))
        traffic: Json = {} if router is None else {"router": router}
        if router == "gatewayAPI" or (router is None and maybe(draw, 4)):
            route: Json = {"name": draw(dns_names())}
            if maybe(draw, 3):
                route["namespace"] = draw(dns_names())
            traffic["httpRoute"] = route
        spec["traffic"] = traffic
    if maybe(draw):
        spec["steps"] = draw(valid_steps())
        if spec.get("traffic", {}).get("router") == "gatewayAPI" and len(spec["steps"]) < 20 and maybe(draw, 3):
            spec["steps"].insert(0, {"shadow": draw(shadow_settings())})
    if maybe(draw, 3) is False:
        spec["analysis"] = draw(valid_analysis())
    if maybe(draw, 3):
        promotion: Json = {}
        for key in ("maxSurge", "maxUnavailable"):
            if maybe(draw):
                promotion[key] = draw(st.one_of(st.integers(0, 20), st.integers(0, 100).map(lambda p: f"{p}%")))
        spec["promotion"] = promotion
    if maybe(draw, 5):
        spec["paused"] = draw(st.booleans())
    return spec


@st.composite
def valid_analysis(draw: st.DrawFn) -> Json:
    analysis: Json = {}
    profile_key = draw(st.sampled_from([None, *PROFILE_NAMES]))
    profile = profile_key or "balanced"
    if profile_key:
        analysis["profile"] = profile_key
    if maybe(draw):
        analysis["interval"] = draw(durations(1, 600))
    if maybe(draw, 6):
        analysis["prometheus"] = {"url": draw(st.sampled_from(["http://prometheus.monitoring:9090",
                                                               "https://prom.example", "http://127.0.0.1:19090"]))}
    if maybe(draw):
        conditions = {}
        for condition in draw(st.lists(st.sampled_from(BUILTIN), unique=True, max_size=4)):
            conditions[condition] = draw(condition_override(condition, profile))
        analysis["conditions"] = conditions
    if maybe(draw, 3):
        analysis["custom"] = draw(custom_conditions())
    scalars: dict[str, Callable[[], Any]] = {
        "dryRun": lambda: draw(st.booleans()) if maybe(draw, 3) else False,
        "sustainedHighSeconds": lambda: draw(st.integers(0, 86_400)),
        "significance": lambda: draw(numbers(0, 0.5, lo_excl=True, hi_excl=True)),
        "baselineWindow": lambda: draw(durations(60, 48 * 3600)),
        "fastPathInterval": lambda: draw(durations(0.1, 60)),
        "progressDeadlineSeconds": lambda: draw(st.integers(1, 86_400)),
        "labelDelay": lambda: draw(durations(0, 7 * 86_400)),
    }
    for key, make in scalars.items():
        if maybe(draw, 4):
            analysis[key] = make()
    if "fastPathInterval" not in analysis and maybe(draw, 8):
        analysis["fastPathSeconds"] = draw(numbers(0.1, 60))  # the deprecated spelling still works
    if maybe(draw, 8):
        analysis["labels"] = {k: draw(st.sampled_from([k, draw(label_names())]))
                              for k in draw(st.lists(st.sampled_from(["namespace", "deployment"]), unique=True))}
    if maybe(draw, 8):
        names = draw(st.lists(st.sampled_from(sorted(DEFAULT_QUERIES)), unique=True, max_size=3))
        analysis["queries"] = {n: DEFAULT_QUERIES[n] for n in names}
    if maybe(draw, 5):
        analysis["noData"] = {"policy": draw(st.sampled_from(["hold", "rollback", "ignore"])),
                              "maxConsecutive": draw(st.integers(1, 10_000))}
    if maybe(draw, 5):
        analysis["prometheusErrors"] = {"then": draw(st.sampled_from(["hold", "rollback"])),
                                        "maxConsecutive": draw(st.integers(1, 10_000))}
    return analysis


# ============================================================================ mutations
# Each takes (draw, spec), changes the spec in place and returns [(label, field path)].

Mutation = Callable[[st.DrawFn, Json], list[tuple[str, str]]]


SKELETONS: dict[tuple[str, ...], Json] = {
    ("stable",): {"deployment": "fz-stable"}, ("canary",): {"deployment": "fz-canary"},
    ("traffic", "httpRoute"): {"name": "fz-route"}, ("analysis", "prometheus"): {"url": "http://prometheus:9090"},
    ("steps", "[]"): {"weight": 100, "duration": "1m"},
}
"""Required fields of the objects a mutation creates on its way to a field: the object is
valid but for the mutation, so the rejection can only be about the mutated field."""


def skeleton(schema_path: tuple[str, ...]) -> Json:
    return copy.deepcopy(SKELETONS.get(schema_path, {}))


def ensure(spec: Json, schema_path: tuple[str, ...], draw: st.DrawFn) -> tuple[Any, Any, Path]:
    """Walk (creating what is missing) to the parent of the node; (parent, key, concrete path)."""
    node: Any = spec
    concrete: list[Any] = []
    for i, part in enumerate(schema_path):
        last = i == len(schema_path) - 1
        nxt = None if last else schema_path[i + 1]
        if part == "[]":
            if not isinstance(node, list):
                raise LookupError
            if not node:
                node.append(valid_item(schema_path[:i], draw))
            key: Any = draw(st.integers(0, len(node) - 1))
        elif part == "*":
            if not isinstance(node, dict):
                raise LookupError
            key = draw(st.sampled_from(sorted(node))) if node and maybe(draw) else draw(st.sampled_from(
                ["nvidia.com/gpu", "memory", "MODEL_NAME", "requests", "latency_mean_ms"]))
        else:
            key = part
        if last:
            return node, key, (*concrete, key)
        if isinstance(node, dict):
            if not isinstance(node.get(key), (dict, list)):
                node[key] = [] if nxt == "[]" else skeleton(schema_path[: i + 1])
                if nxt == "[]" and schema_path[: i + 1] == ("steps",):
                    node[key].append(skeleton(("steps", "[]")))
        elif isinstance(node, list):
            if not isinstance(node[key], (dict, list)):
                node[key] = skeleton(schema_path[: i + 1])
        else:
            raise LookupError
        node = node[key]
        concrete.append(key)
    raise LookupError


def valid_item(list_path: tuple[str, ...], draw: st.DrawFn) -> Json:
    if list_path == ("steps",):
        return skeleton(("steps", "[]"))
    if list_path == ("analysis", "custom"):
        return draw(custom_conditions(size=1))[0]
    return {}


def set_at(spec: Json, schema_path: tuple[str, ...], value: Any, draw: st.DrawFn) -> str:
    parent, key, concrete = ensure(spec, schema_path, draw)
    parent[key] = value
    return path_text(concrete)


def wrong_type_value(node: Node, draw: st.DrawFn) -> Any:
    kind = node.kind
    # An integer written as a whole float (100.0): JSON clients other than kubectl send it so.
    whole = float(min(max(node.schema.get("minimum", 1), 1), node.schema.get("maximum", 100)))
    if node.path == ("steps", "[]", "weight"):
        whole = 100.0
    choices: dict[str, list[Any]] = {
        "string": [7, 3.5, True, ["x"], {"value": "x"}],
        "integer": ["abc", "5", True, [1], {"n": 1}, 2.5, "1e3", whole],
        "number": ["0.5", "high", True, [0.5], {"v": 1}],
        "boolean": ["yes", "true", 1, "false", 0, "on"],
        "object": ["text", [1, 2], 5, True],
        "array": [{"weight": 100}, "5%,25%,100%", 3],
        "int-or-string": [1.5, True, [25], {"percent": 25}],
    }
    return draw(st.sampled_from(choices.get(kind, ["x"])))


def schema_label(path: tuple[str, ...]) -> str:
    """A short label for a schema path: analysis.conditions.latency.window -> conditions.*.window."""
    parts = [p for p in path if p not in ("[]", "*")]
    if len(parts) >= 3 and parts[:2] == ["analysis", "conditions"]:
        parts = ["conditions", "*", *parts[3:]] if len(parts) > 3 else ["conditions", parts[2]]
    return ".".join(parts)


def m_wrong_type(draw: st.DrawFn, spec: Json) -> list[tuple[str, str]]:
    if maybe(draw, 40):
        value = draw(st.sampled_from(["text", [1], 5, None]))
        spec.clear()
        spec["__replace_spec__"] = value
        return [("type.spec-not-object", "spec")]
    node = draw(st.sampled_from(NODES))
    value = wrong_type_value(node, draw)
    label = f"type.{node.kind}-as-{'whole-float' if isinstance(value, float) and value.is_integer() else type(value).__name__}"
    return [(label, set_at(spec, node.path, value, draw))]


def m_out_of_range(draw: st.DrawFn, spec: Json) -> list[tuple[str, str]]:
    node = draw(st.sampled_from(NUMERIC))
    lo, hi, lo_x, hi_x = bounds_of(node.schema, cap=math.inf)
    options: list[Any] = []
    if lo != -math.inf:
        options += [lo] if lo_x else []
        options += [lo - 1, lo - 0.001 if node.kind == "number" else lo - 1, -1e9]
    if hi != math.inf:
        options += [hi] if hi_x else []
        options += [hi + 1, hi + 0.001 if node.kind == "number" else hi + 1, 1e12 if node.kind == "number" else 10**12]
    value = draw(st.sampled_from(options))
    if node.kind == "integer":
        value = int(value) if float(value).is_integer() else value
    return [(f"range.{schema_label(node.path)}", set_at(spec, node.path, value, draw))]


def junk_for(pattern: str) -> list[str]:
    """Values that break ``pattern`` (each pool holds only non-matching values)."""
    if "sha256" in pattern:
        return DIGEST_JUNK
    if "(ms|s|m|h)" in pattern:
        return DURATION_JUNK
    if "https?" in pattern:
        return ["prometheus:9090", "ftp://prom", "127.0.0.1:9090", "HTTP://prom", ""]
    if "{0,62}" in pattern:
        return CUSTOM_NAME_JUNK
    if "[-a-z0-9]" in pattern:
        return NAME_JUNK
    return ["has space", "1abc", "", "ünï", "a-b", "a.b"]  # Prometheus label names


def m_pattern(draw: st.DrawFn, spec: Json) -> list[tuple[str, str]]:
    node = draw(st.sampled_from(PATTERNED))
    value = draw(st.sampled_from(junk_for(node.schema["pattern"])))
    return [(f"pattern.{schema_label(node.path)}", set_at(spec, node.path, value, draw))]


def m_enum(draw: st.DrawFn, spec: Json) -> list[tuple[str, str]]:
    node = draw(st.sampled_from(ENUMS))
    name = node.path[-1]
    pool = {"router": ROUTER_JUNK, "profile": PROFILE_JUNK}.get(name, [v.upper() for v in node.schema["enum"]]
                                                               + ["", "unknown", "none"])
    return [(f"enum.{schema_label(node.path)}", set_at(spec, node.path, draw(st.sampled_from(pool)), draw))]


def m_unknown_field(draw: st.DrawFn, spec: Json) -> list[tuple[str, str]]:
    node = draw(st.sampled_from([Node((), SPEC_SCHEMA), *OBJECTS]))
    known = sorted(node.schema["properties"])
    typo = draw(st.one_of(
        st.sampled_from(known).map(lambda k: k + k[-1]),           # intervall
        st.sampled_from(known).map(lambda k: k.lower() if k.lower() != k else k.upper()),  # maxsurge
        st.sampled_from(known).map(lambda k: re.sub(r"([A-Z])", lambda m: "_" + m[1].lower(), k) + "_"),
        st.sampled_from(["foo", "replicas", "strategy", "canaryWeight", "x-extra", "status"])))
    if typo in known:
        typo += "X"
    if not node.path:
        spec[typo] = "x"
        return [("unknown-field", path_text((typo,)))]
    parent, key, concrete = ensure(spec, node.path, draw)
    if not isinstance(parent.get(key) if isinstance(parent, dict) else parent[key], dict):
        parent[key] = skeleton(node.path)
    target = parent[key]
    target[typo] = draw(st.sampled_from(["x", 1, True, {"a": 1}]))
    return [("unknown-field", path_text((*concrete, typo)))]


def m_null(draw: st.DrawFn, spec: Json) -> list[tuple[str, str]]:
    node = draw(st.sampled_from(NODES))
    label = "null." + ("nullable" if node.schema.get("nullable") else "not-nullable")
    return [(label, set_at(spec, node.path, None, draw))]


def m_missing_required(draw: st.DrawFn, spec: Json) -> list[tuple[str, str]]:
    which = draw(st.sampled_from(["stable", "canary", "stable.deployment", "canary.deployment", "steps.weight",
                                  "steps.duration", "custom.field", "httpRoute.name", "prometheus.url"]))
    if which in ("stable", "canary"):
        del spec[which]
        return [("required.missing", path_text((which,)))]
    if which in ("stable.deployment", "canary.deployment"):
        side = which.split(".")[0]
        spec[side].pop("deployment", None)
        return [("required.missing", path_text((side, "deployment")))]
    if which.startswith("steps"):
        spec.setdefault("steps", [{"weight": 100, "duration": "1m"}])
        i = draw(st.integers(0, len(spec["steps"]) - 1))
        key = which.split(".")[1]
        spec["steps"][i].pop(key, None)
        return [("required.missing", path_text(("steps", i, key)))]
    if which == "custom.field":
        custom = spec.setdefault("analysis", {}).setdefault("custom", [])
        if not custom:
            custom.extend(draw(custom_conditions(size=1)))
        i = draw(st.integers(0, len(custom) - 1))
        key = draw(st.sampled_from(["name", "query", "threshold", "critical"]))
        custom[i].pop(key, None)
        return [("required.missing", path_text(("analysis", "custom", i, key)))]
    if which == "httpRoute.name":
        spec["traffic"] = {"router": "gatewayAPI", "httpRoute": {"namespace": "ml"}}
        return [("required.missing", path_text(("traffic", "httpRoute", "name")))]
    spec.setdefault("analysis", {})["prometheus"] = {}
    return [("required.missing", path_text(("analysis", "prometheus", "url")))]


def m_steps(draw: st.DrawFn, spec: Json) -> list[tuple[str, str]]:
    steps = draw(valid_steps(max_steps=8))
    kind = draw(st.sampled_from(["not-increasing", "duplicate", "not-ending-100", "empty", "too-many",
                                 "weight-0", "weight-over-100", "unsorted", "whole-float-weights",
                                 "shadow-not-first", "shadow-with-weight", "shadow-last", "shadow-replicas-router"]))
    target = path_text(("steps",))
    if kind in ("not-increasing", "duplicate", "unsorted"):
        if len(steps) < 2:
            steps = [{"weight": 50, "duration": "1m"}, {"weight": 100, "duration": "1m"}]
        i = draw(st.integers(1, len(steps) - 1))
        if kind == "duplicate":
            steps[i - 1]["weight"] = steps[i]["weight"]
        elif kind == "not-increasing":
            steps[i]["weight"] = draw(st.integers(1, steps[i - 1]["weight"]))
        else:
            steps.reverse()
    elif kind == "not-ending-100":
        if len(steps) > 1 and steps[-2]["weight"] >= 99:
            steps.pop()
        else:
            steps[-1]["weight"] = draw(st.integers(steps[-2]["weight"] + 1 if len(steps) > 1 else 1, 99))
    elif kind == "empty":
        steps = []
    elif kind == "whole-float-weights":
        # 25.0, 100.0: what JSON encoders of floats send (kubectl turns YAML 100.0 into 100).
        for step in steps:
            step["weight"] = float(step["weight"])
    elif kind.startswith("shadow-"):
        shadow: Json = {"shadow": draw(shadow_settings())}
        spec["traffic"] = {"router": "gatewayAPI", "httpRoute": {"name": "r"}}
        if kind == "shadow-not-first":
            steps.insert(draw(st.integers(1, len(steps))), shadow)
        elif kind == "shadow-with-weight":
            key = draw(st.sampled_from(["weight", "duration"]))
            shadow[key] = 1 if key == "weight" else "1m"
            steps.insert(0, shadow)
            target = path_text(("steps", 0))
        elif kind == "shadow-last":
            steps = [shadow]
        else:
            steps.insert(0, shadow)
            spec["traffic"] = draw(st.sampled_from([{"router": "replicas"}, {}]))
            target = path_text(("steps", 0, "shadow"))
    elif kind == "too-many":
        n = draw(st.integers(21, 30))
        steps = [{"weight": w, "duration": "1s"} for w in sorted(draw(
            st.lists(st.integers(1, 99), unique=True, min_size=n - 1, max_size=n - 1))) + [100]]
    else:
        i = draw(st.integers(0, len(steps) - 1))
        steps[i]["weight"] = draw(st.sampled_from([0, -5]) if kind == "weight-0" else st.sampled_from([101, 150, 1000]))
        target = path_text(("steps", i, "weight"))
    spec["steps"] = steps
    return [(f"steps.{kind}", target)]


DURATION_FIELDS: list[tuple[str, ...]] = [("steps", "[]", "duration"), ("analysis", "interval"),
                                          ("analysis", "baselineWindow"), ("analysis", "fastPathInterval")] + [
    ("analysis", "conditions", c, "window") for c in BUILTIN]


def m_duration(draw: st.DrawFn, spec: Json) -> list[tuple[str, str]]:
    where = draw(st.sampled_from(DURATION_FIELDS))
    kind = draw(st.sampled_from(["junk", "junk", "number", "huge", "huge", "below-1s"]))
    if kind == "junk":
        value: Any = draw(st.sampled_from(DURATION_JUNK))
    elif kind == "number":
        value = draw(st.sampled_from([30, 1.5, 0, -1]))
    elif kind == "huge":
        value = draw(st.sampled_from(DURATION_HUGE))
    else:
        value = draw(st.sampled_from(["500ms", "0s", "0.9s", "999ms", "0ms", "0.0001h"]))
    return [(f"duration.{kind}" + (".interval" if where == ("analysis", "interval") else ""),
             set_at(spec, where, value, draw))]


def m_router(draw: st.DrawFn, spec: Json) -> list[tuple[str, str]]:
    kind = draw(st.sampled_from(["unknown", "gateway-without-route", "gateway-route-null", "replicas-with-route"]))
    if kind == "unknown":
        spec["traffic"] = {"router": draw(st.sampled_from(ROUTER_JUNK))}
        return [("router.unknown", "spec.traffic.router")]
    if kind == "gateway-without-route":
        spec["traffic"] = {"router": "gatewayAPI"}
    elif kind == "gateway-route-null":
        spec["traffic"] = {"router": "gatewayAPI", "httpRoute": None}
    else:
        spec["traffic"] = {"router": "replicas", "httpRoute": {"name": draw(dns_names())}}
    return [(f"router.{kind}", "spec.traffic.httpRoute")]


def m_digest(draw: st.DrawFn, spec: Json) -> list[tuple[str, str]]:
    template = spec["canary"].get("template")
    if not isinstance(template, dict):
        template = spec["canary"]["template"] = {}
    template["modelDigest"] = draw(st.sampled_from(DIGEST_JUNK))
    return [("digest.bad", "spec.canary.template.modelDigest")]


def custom_list(draw: st.DrawFn, spec: Json, size: int = 1) -> list[Json]:
    analysis = spec.get("analysis")
    if not isinstance(analysis, dict):
        analysis = spec["analysis"] = {}
    custom = analysis.get("custom")
    if not isinstance(custom, list) or len(custom) < size:
        custom = analysis["custom"] = draw(custom_conditions(size=size))
    return custom


def m_custom(draw: st.DrawFn, spec: Json) -> list[tuple[str, str]]:
    kind = draw(st.sampled_from(["critical-wrong-side", "critical-equal", "name-builtin", "name-duplicate",
                                 "too-many", "huge-query", "empty-query"]))
    if kind == "name-duplicate":
        custom = custom_list(draw, spec, 2)
        custom[1]["name"] = custom[0]["name"]
        return [("custom.name-duplicate", "spec.analysis.custom")]
    if kind == "too-many":
        spec.setdefault("analysis", {})["custom"] = draw(custom_conditions(size=draw(st.integers(33, 40))))
        return [("custom.too-many", "spec.analysis.custom")]
    custom = custom_list(draw, spec)
    i = draw(st.integers(0, len(custom) - 1))
    item = custom[i]
    if kind == "name-builtin":
        item["name"] = draw(st.sampled_from(BUILTIN))
        return [("custom.name-builtin", "spec.analysis.custom")]
    if kind == "huge-query":
        item["query"] = "vector(1) + " * draw(st.integers(1000, 3000)) + "vector(1)"
        return [("custom.huge-query", path_text(("analysis", "custom", i, "query")))]
    if kind == "empty-query":
        item["query"] = ""
        return [("custom.empty-query", path_text(("analysis", "custom", i, "query")))]
    direction = draw(st.sampled_from(["above", "below", None]))
    a = draw(numbers(-100, 100))
    b = a if kind == "critical-equal" else draw(numbers(-100, 100))
    if a == b and kind != "critical-equal":
        b = a + 1
    low, high = min(a, b), max(a, b)
    # Wrong side: above wants critical > threshold; give it the lower one (and vice versa).
    item["threshold"], item["critical"] = (low, high) if direction == "below" else (high, low)
    if direction:
        item["direction"] = direction
    else:
        item.pop("direction", None)
    return [(f"custom.{kind}", path_text(("analysis", "custom", i, "critical")))]


def analysis_of(spec: Json) -> Json:
    analysis = spec.get("analysis")
    if not isinstance(analysis, dict):
        analysis = spec["analysis"] = {}
    return analysis


def m_thresholds(draw: st.DrawFn, spec: Json) -> list[tuple[str, str]]:
    """Ordered pairs wrong: both set (CEL sees it) or one set against the profile (only the operator does)."""
    analysis = analysis_of(spec)
    profile = analysis.get("profile") if analysis.get("profile") in PROFILE_NAMES else "balanced"
    condition = draw(st.sampled_from(sorted(PAIRS)))
    warn, crit, kind = draw(st.sampled_from(PAIRS[condition]))
    conditions = analysis.get("conditions")
    if not isinstance(conditions, dict):
        conditions = analysis["conditions"] = {}
    override = conditions.get(condition)
    if not isinstance(override, dict):
        override = conditions[condition] = {}
    override.pop(warn, None)
    override.pop(crit, None)
    lo, hi, lo_x, hi_x = bounds_of(schema_at(("analysis", "conditions", condition, warn)), cap=50_000)
    pw, pc = profile_value(profile, condition, warn), profile_value(profile, condition, crit)
    if maybe(draw):  # both set, wrong order
        for _ in range(20):
            w, c = draw(numbers(lo, hi, lo_excl=lo_x, hi_excl=hi_x)), draw(numbers(lo, hi, lo_excl=lo_x, hi_excl=hi_x))
            if not ordered(kind, w, c):
                override[warn], override[crit] = w, c
                field_name = "baselineRate" if kind == "atmost" else crit
                return [("thresholds.pair-wrong", path_text(("analysis", "conditions", condition, field_name)))]
    # one side, beyond the profile's other side
    for _ in range(20):
        side = draw(st.sampled_from(["warn", "crit"]))
        value = draw(numbers(lo, hi, lo_excl=lo_x, hi_excl=hi_x))
        if side == "warn" and not ordered(kind, value, pc):
            override[warn] = value
            return [("thresholds.against-profile", path_text(("analysis", "conditions", condition, warn)))]
        if side == "crit" and not ordered(kind, pw, value):
            override[crit] = value
            return [("thresholds.against-profile", path_text(("analysis", "conditions", condition, crit)))]
    return []


def m_promotion(draw: st.DrawFn, spec: Json) -> list[tuple[str, str]]:
    key = draw(st.sampled_from(["maxSurge", "maxUnavailable"]))
    value = draw(st.one_of(st.sampled_from(INT_OR_PERCENT_JUNK), st.integers(0, 50),
                           st.integers(0, 100).map(lambda p: f"{p}%")))
    promotion = spec.get("promotion")
    if not isinstance(promotion, dict):
        promotion = spec["promotion"] = {}
    promotion[key] = value
    kind = ("count" if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31
            else "percent" if isinstance(value, str) and re.fullmatch(r"(100|[1-9]?[0-9])%", value) else "junk")
    return [(f"promotion.{kind}", path_text(("promotion", key)))]


def m_same_deployment(draw: st.DrawFn, spec: Json) -> list[tuple[str, str]]:
    spec["canary"]["deployment"] = spec["stable"]["deployment"]
    return [("deployment.same-as-stable", "spec.canary.deployment")]


def m_queries(draw: st.DrawFn, spec: Json) -> list[tuple[str, str]]:
    analysis = analysis_of(spec)
    kind = draw(st.sampled_from(["unknown-name", "missing-placeholder", "lost-label", "too-many", "empty"]))
    if kind == "too-many":
        analysis["queries"] = {f"q{i}": "x" for i in range(draw(st.integers(33, 40)))}
        return [("queries.too-many", "spec.analysis.queries")]
    name = draw(st.sampled_from(sorted(DEFAULT_QUERIES)))
    if kind == "unknown-name":
        name = draw(st.sampled_from(["latency", "accuracy", "request_total", "p99", "errors_total"]))
        template = DEFAULT_QUERIES["requests"]
    elif kind == "missing-placeholder":
        # An instant template has no {window} to lose (removing it would change nothing).
        placeholders = ["{selector}", "{by}"] if name in UNWINDOWED else ["{selector}", "{window}", "{by}"]
        template = DEFAULT_QUERIES[name].replace(draw(st.sampled_from(placeholders)), "x")
    elif kind == "lost-label":
        name = draw(st.sampled_from(sorted(EXTRA_LABEL)))
        template = "sum by ({by}) (increase(model_requests_total{{selector}}[{window}]))"
    else:
        template = "   "
    queries = analysis.get("queries")
    if not isinstance(queries, dict):
        queries = analysis["queries"] = {}
    queries[name] = template
    return [(f"queries.{kind}", path_text(("analysis", "queries", name)))]


def m_template_runtime(draw: st.DrawFn, spec: Json) -> list[tuple[str, str]]:
    """Values the CRD types as plain strings but a Deployment refuses, or a container that is not there."""
    template = spec["canary"].get("template")
    if not isinstance(template, dict):
        template = spec["canary"]["template"] = {}
    kind = draw(st.sampled_from(["container", "env-name", "quantity", "image", "gpu-int", "gpu-requests-only",
                                 "limit-below-request"]))
    if kind == "gpu-requests-only":
        template["resources"] = {"requests": {"nvidia.com/gpu": draw(st.sampled_from(["2", "4"]))}}
        return [("template.gpu-requests-only", "spec.canary.template.resources.requests.nvidia.com/gpu")]
    if kind == "limit-below-request":
        template["resources"] = {"limits": {draw(st.sampled_from(["memory", "cpu"])): "100m"}}
        return [("template.limit-below-request", "spec.canary.template.resources.limits")]
    if kind == "container":
        template["container"] = draw(st.sampled_from(["model", "sidecar", "Server", "x" * 70]))
        return [("template.unknown-container", "spec.canary.template.container")]
    if kind == "env-name":
        template["env"] = {draw(st.sampled_from(ENV_NAMES_JUNK)): "1"}
        return [("template.bad-env-name", "spec.canary.template.env")]
    if kind == "quantity":
        part = draw(st.sampled_from(["limits", "requests"]))
        key = draw(st.sampled_from(sorted(RESOURCE_VALUES)))
        template["resources"] = {part: {key: draw(st.sampled_from(QUANTITY_JUNK))}}
        return [("template.bad-quantity", f"spec.canary.template.resources.{part}.{key}")]
    if kind == "gpu-int":
        template["resources"] = {"limits": {"nvidia.com/gpu": draw(st.integers(1, 4))}}
        return [("template.gpu-as-integer", "spec.canary.template.resources.limits.nvidia.com/gpu")]
    template["image"] = draw(st.sampled_from([" registry.example/model:v2", "model v2", "\t", "Registry/UPPER:v2"]))
    return [("template.odd-image", "spec.canary.template.image")]


MUTATIONS: list[tuple[Mutation, int]] = [
    (m_wrong_type, 8), (m_out_of_range, 8), (m_pattern, 6), (m_enum, 4), (m_unknown_field, 6), (m_null, 3),
    (m_missing_required, 4), (m_steps, 8), (m_duration, 8), (m_router, 4), (m_digest, 3), (m_custom, 6),
    (m_thresholds, 8), (m_promotion, 6), (m_same_deployment, 2), (m_queries, 3), (m_template_runtime, 3),
]


@st.composite
def fuzzed_specs(draw: st.DrawFn) -> tuple[Any, list[str], list[str]]:
    """(spec, mutation labels, touched field paths): ~1/3 valid as drawn, the rest mutated 1-3 times."""
    spec = draw(valid_specs())
    labels: list[str] = []
    targets: list[str] = []
    # Which mutations, and how many, from hypothesis' seeded Random: a plain draw from a
    # list favours its first element (hypothesis tries simple choices first), and the mix
    # should follow the weights.
    rnd = draw(st.randoms(use_true_random=True))
    count = rnd.choices([0, 1, 2, 3], weights=[30, 52, 12, 6])[0]
    for _ in range(count):
        if "__replace_spec__" in spec:
            break
        mutation = rnd.choices([m for m, _ in MUTATIONS], weights=[w for _, w in MUTATIONS])[0]
        try:
            for label, target in mutation(draw, spec):
                labels.append(label)
                targets.append(target)
        except (LookupError, TypeError, AttributeError, KeyError):
            continue  # an earlier mutation changed the shape this one walks: skip it
    final: Any = spec.pop("__replace_spec__") if "__replace_spec__" in spec else spec
    return final, labels, targets


@dataclass
class Case:
    index: int
    manifest: Json
    labels: list[str]
    targets: list[str]
    # dry run
    verdict: str = ""                 # accepted | rejected | error
    code: int | None = None
    reason: str = ""
    message: str = ""
    fields: list[str] = field(default_factory=list)
    names_field: bool = False
    names_target: bool = False
    stored_spec: Json | None = None
    # the operator's own validation
    pydantic_original: str | None = None   # parse_spec on what we sent (None: accepted)
    operator_error: str | None = None      # parse_spec on what the apiserver stores
    runtime_error: str | None = None       # the first tick's query plan (InvalidSpec)
    validation_crash: str | None = None    # anything else raised by the operator's validation

    @property
    def label(self) -> str:
        return "+".join(self.labels) or "valid"

    @property
    def operator_invalid(self) -> bool:
        return self.verdict == "accepted" and (self.operator_error is not None or self.runtime_error is not None)


GENERATE_BATCH = 1000
"""Examples per hypothesis run. Each run starts with small, simple examples and then
mutates the ones it has seen (it duplicates spans: useful, but near-copies); several
seeded runs of this size keep the mix varied."""


def generate(count: int, seed: int, log: Callable[[str], None] | None = None,
             deadline: float = math.inf) -> list[Case]:
    """``count`` distinct manifests from hypothesis, reproducible from ``seed`` (fewer if
    ``deadline``, a monotonic time, passes first: no batch starts after it)."""
    drawn: list[tuple[Any, list[str], list[str]]] = []
    seen: set[str] = set()
    batch = 0
    started = time.monotonic()
    while len(drawn) < count and batch < 10 + 3 * (count // GENERATE_BATCH) and time.monotonic() < deadline:
        size = min(GENERATE_BATCH, count - len(drawn))

        @hypothesis_seed(seed * 100_003 + batch)
        @settings(max_examples=size, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(fuzzed_specs())
        def collect(example: tuple[Any, list[str], list[str]]) -> None:
            key = json.dumps(example[0], sort_keys=True, default=str)
            if len(drawn) < count and key not in seen:
                seen.add(key)
                drawn.append(copy.deepcopy(example))

        collect()
        batch += 1
        if log and count > GENERATE_BATCH:
            log(f"generated {len(drawn)}/{count} ({time.monotonic() - started:.0f}s)")
    cases = []
    for index, (spec, labels, targets) in enumerate(drawn[:count]):
        manifest = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
                    "metadata": {"name": f"fz-{seed}-{index}"}, "spec": spec}
        cases.append(Case(index, manifest, labels, targets))
    return cases


# ============================================================================ dry run

CEL_RUNTIME = re.compile(r"(no such key|index out of bounds|type conversion error|no such overload|"
                         r"invalid data, expected|no matching overload).{0,200}?evaluating rule")
FIELD_IN_TEXT = re.compile(r"(?<![\w.])(spec(?:\.[A-Za-z0-9_/.-]*[A-Za-z0-9_]|\[\d+\])*)")
UNKNOWN_FIELD = re.compile(r'unknown field "([^"]+)"')


def fields_named(body: Json) -> list[str]:
    """Field paths an apiserver Status names: its causes' fields, then paths in the message."""
    out = []
    for cause in (body.get("details") or {}).get("causes") or []:
        f = cause.get("field") or ""
        if f and f != "<nil>":
            out.append(f)
    message = body.get("message") or ""
    out += UNKNOWN_FIELD.findall(message)
    out += [m for m in FIELD_IN_TEXT.findall(message) if m not in out]
    return list(dict.fromkeys(out))


def relates(named: str, target: str) -> bool:
    """The named path is the target, an ancestor of it (not spec itself) or a descendant."""
    if named == target:
        return True
    if named != "spec" and (target.startswith(named + ".") or target.startswith(named + "[")):
        return True
    return named.startswith(target + ".") or named.startswith(target + "[")


def operator_checks(case: Case, namespace: str) -> None:
    """What the operator decides about this spec: parse_spec, then the first tick's query plan."""
    spec = case.manifest.get("spec")
    try:
        parse_spec(spec if isinstance(spec, dict) else {"__not_an_object__": spec})
    except ManifestError as exc:
        case.pydantic_original = str(exc)
    except Exception as exc:  # noqa: BLE001 - recorded: only reachable if the apiserver lets it through
        case.pydantic_original = f"CRASH {type(exc).__name__}: {exc}"
    if case.verdict != "accepted" or case.stored_spec is None:
        return
    try:
        parsed = parse_spec(case.stored_spec)
    except ManifestError as exc:
        case.operator_error = str(exc)
        return
    except Exception as exc:  # noqa: BLE001 - a product bug: the operator's reconcile would raise this
        case.validation_crash = f"parse_spec raised {type(exc).__name__}: {exc}"
        return
    try:
        status = ModelRolloutStatus()
        SnapshotRequest.for_rollout(namespace=namespace, name=case.manifest["metadata"]["name"], spec=parsed,
                                    status=status, windows=plan_windows(parsed, status, datetime.now(UTC)))
    except InvalidSpec as exc:
        case.runtime_error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a product bug: the first tick would raise this
        case.validation_crash = f"SnapshotRequest.for_rollout raised {type(exc).__name__}: {exc}"


def dry_run(custom: client.CustomObjectsApi, namespace: str, case: Case) -> None:
    manifest = copy.deepcopy(case.manifest)
    manifest["metadata"]["namespace"] = namespace
    try:
        stored = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest, dry_run="All",
                                                        field_validation="Strict", _request_timeout=30)
        case.verdict = "accepted"
        case.stored_spec = stored.get("spec")
    except ApiException as exc:
        case.code = exc.status
        try:
            body = json.loads(exc.body or "{}")
        except json.JSONDecodeError:
            body = {"message": str(exc.body)}
        case.reason = str(body.get("reason") or "")
        case.message = str(body.get("message") or exc.reason or "")
        if exc.status in (400, 422):
            case.verdict = "rejected"
            case.fields = fields_named(body)
            case.names_field = bool(case.fields)
            case.names_target = any(relates(f, t) for f in case.fields for t in case.targets)
        else:
            case.verdict = "error"
    except Exception as exc:  # noqa: BLE001 - transport trouble: reported, not classified
        case.verdict = "error"
        case.message = f"{type(exc).__name__}: {exc}"
    operator_checks(case, namespace)


def dry_run_all(cluster: Any, namespace: str, cases: list[Case], *, workers: int, deadline: float,
                log: Callable[[str], None]) -> list[Case]:
    """Dry-run every case (threads); the ones done before ``deadline`` (monotonic) are returned."""
    custom = cluster.custom
    done: list[Case] = []
    lock = threading.Lock()
    started = time.monotonic()
    step = max(100, len(cases) // 20)

    def one(case: Case) -> None:
        if time.monotonic() > deadline:
            return
        dry_run(custom, namespace, case)
        with lock:
            done.append(case)
            if len(done) % step == 0 or len(done) == len(cases):
                accepted = sum(c.verdict == "accepted" for c in done)
                rejected = sum(c.verdict == "rejected" for c in done)
                log(f"dry-run {len(done)}/{len(cases)}: {accepted} accepted, {rejected} rejected "
                    f"({time.monotonic() - started:.0f}s)")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, cases))
    done.sort(key=lambda c: c.index)
    return done


# ============================================================================ real runs

TERMINAL = ("Succeeded", "RolledBack", "Failed")
# What the e2e tests use to make conditions conclusive within seconds on the simulator.
FAST_CONDITIONS = {"accuracy": {"window": "30s", "minSamples": 50}, "latency": {"window": "20s", "minSamples": 200},
                   "confidenceDrift": {"window": "30s", "minSamples": 100}, "errorRate": {"window": "20s"},
                   "cache": {"window": "20s"}, "throughput": {"window": "20s"}, "anomaly": {}}


def _seconds(value: Any) -> float | None:
    try:
        return parse_duration(value).total_seconds()
    except Exception:  # noqa: BLE001 - unparseable or overflowing: left alone (it is what is being fuzzed)
        return None


def _clamp_duration(container: Any, key: Any, max_s: float, to: str) -> None:
    if isinstance(container, (dict, list)):
        try:
            value = container[key]
        except (KeyError, IndexError, TypeError):
            return
        seconds = _seconds(value)
        if isinstance(value, str) and seconds is not None and seconds > max_s:
            container[key] = to


def _clamp_int(container: Any, key: str, max_value: int) -> None:
    if isinstance(container, dict) and isinstance(container.get(key), int) and not isinstance(container[key], bool) \
            and container[key] > max_value:
        container[key] = max_value


def normalise(spec: Json, *, stable: str, canary: str, route: str | None, prometheus_url: str, index: int) -> Json:
    """The sampled spec made runnable in seconds on the simulator; everything else is kept.

    Changed: the Deployment (and HTTPRoute) names; durations above a few seconds (steps 3s,
    interval 2s, windows 20-30s, baselineWindow 2m), and unset ones get those values (unset
    steps: 25/50/100 % for 3 s each); sustainedHighSeconds <= 10,
    progressDeadlineSeconds <= 30, labelDelay <= 4s, noData/prometheusErrors maxConsecutive <= 5, built-in
    minSamples at most the e2e values; unset windows/minSamples get the e2e values, an unset
    throughput.minServiceRps 0 and an unset anomaly is disabled (as in the e2e tests);
    paused false; a prometheus.url becomes the cluster's (even index) or a closed port (odd).
    Values the operator cannot parse are never touched: they are what is being fuzzed.
    """
    spec = copy.deepcopy(spec)
    spec["stable"] = {**(spec.get("stable") or {}), "deployment": stable}
    spec["canary"] = {**(spec.get("canary") or {}), "deployment": canary}
    traffic = spec.get("traffic")
    if isinstance(traffic, dict) and isinstance(traffic.get("httpRoute"), dict) and route:
        traffic["httpRoute"] = {"name": route}
    if "steps" not in spec:
        spec["steps"] = [{"weight": 25, "duration": "3s"}, {"weight": 50, "duration": "3s"},
                         {"weight": 100, "duration": "3s"}]
    for step in spec["steps"] if isinstance(spec["steps"], list) else []:
        _clamp_duration(step, "duration", 3, "3s")
    analysis = spec.setdefault("analysis", {})
    if isinstance(analysis, dict):
        analysis.setdefault("interval", "2s")
        _clamp_duration(analysis, "interval", 2, "2s")
        analysis.setdefault("baselineWindow", "2m")
        _clamp_duration(analysis, "baselineWindow", 120, "2m")
        _clamp_int(analysis, "sustainedHighSeconds", 10)
        if "sustainedHighSeconds" not in analysis:
            analysis["sustainedHighSeconds"] = 10
        _clamp_duration(analysis, "labelDelay", 4, "4s")
        _clamp_int(analysis, "progressDeadlineSeconds", 30)
        if "progressDeadlineSeconds" not in analysis:
            analysis["progressDeadlineSeconds"] = 30
        for key in ("noData", "prometheusErrors"):
            _clamp_int(analysis.get(key), "maxConsecutive", 5)
        if isinstance(analysis.get("prometheus"), dict):
            analysis["prometheus"]["url"] = prometheus_url if index % 2 == 0 else "http://127.0.0.1:1"
        conditions = analysis.setdefault("conditions", {})
        if isinstance(conditions, dict):
            for name, fast in FAST_CONDITIONS.items():
                override = conditions.get(name)
                if override is None and name in conditions:
                    continue  # an explicit null: kept
                if override is None:
                    conditions[name] = dict(fast) if name != "anomaly" else {"enabled": False}
                    if name == "throughput":
                        conditions[name]["minServiceRps"] = 0
                    continue
                if not isinstance(override, dict):
                    continue
                if "window" in fast:
                    if "window" not in override:
                        override["window"] = fast["window"]
                    _clamp_duration(override, "window", 30, fast["window"])
                if "minSamples" in fast:
                    override.setdefault("minSamples", fast["minSamples"])
                    _clamp_int(override, "minSamples", fast["minSamples"])
                if name == "throughput" and "minServiceRps" not in override and "criticalServiceRps" not in override:
                    override["minServiceRps"] = 0
            if not conditions:
                analysis.pop("conditions")
    if spec.get("paused") is True:
        spec["paused"] = False
    return spec


@dataclass
class Run:
    case: Case
    name: str
    manifest: Json
    expect_invalid: str | None = None      # parse_spec / runtime message for the normalised spec
    scenario: Any = None
    route: str | None = None
    started: float = 0.0
    timeout: float = 0.0
    outcome: str = ""                      # succeeded | rolledBack | failed | invalidSpec | dryRun | held | stuck
    detail: str = ""
    problems: list[str] = field(default_factory=list)


def _ready_false_invalid(status: Json) -> str | None:
    for c in status.get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "False" and c.get("reason") == "InvalidSpec":
            return str(c.get("message") or "")
    return None


def sample(cases: list[Case], runs: int, rng: random.Random) -> list[Case]:
    """Up to ``runs`` accepted cases: a quarter (at least one) invalid in the operator, labels spread out."""
    accepted = [c for c in cases if c.verdict == "accepted" and c.validation_crash is None]
    crashing = [c for c in cases if c.verdict == "accepted" and c.validation_crash is not None]
    invalid = [c for c in accepted if c.operator_invalid]
    valid = [c for c in accepted if not c.operator_invalid]

    def spread(pool: list[Case], n: int) -> list[Case]:
        by_label: dict[str, list[Case]] = collections.defaultdict(list)
        for c in pool:
            by_label[c.label].append(c)
        labels = sorted(by_label)
        rng.shuffle(labels)
        for group in by_label.values():
            rng.shuffle(group)
        out: list[Case] = []
        while len(out) < n and any(by_label.values()):
            for label in labels:
                if by_label[label] and len(out) < n:
                    out.append(by_label[label].pop())
        return out

    chosen = spread(crashing, min(len(crashing), max(1, runs // 10))) if crashing and runs >= 2 else []
    n_invalid = min(len(invalid), max(1, math.ceil(runs / 4)))
    chosen += spread(invalid, n_invalid)
    chosen += spread(valid, runs - len(chosen))
    if len(chosen) < runs:
        chosen += spread([c for c in invalid if c not in chosen], runs - len(chosen))
    return chosen[:runs]


class RealRuns:
    """The sampled specs created for real in one namespace watched by one operator process."""

    def __init__(self, cluster: Any, namespace: str, *, parallel: int, run_timeout: float, deadline: float,
                 log: Callable[[str], None]) -> None:
        from e2e.harness.operator_process import OperatorProcess

        self.cluster = cluster
        self.namespace = namespace
        self.parallel = parallel
        self.run_timeout = run_timeout
        self.deadline = deadline
        self.log = log
        self.operator = OperatorProcess(cluster, namespace, name="fuzz-operator")
        self.crashes: list[str] = []
        self.tracebacks: list[str] = []
        self.runs: list[Run] = []

    # -- setup and teardown of one run --
    def prepare(self, case: Case, slot: int) -> Run:
        name = f"fz{slot}-{uuid.uuid4().hex[:4]}"
        spec = case.stored_spec or case.manifest["spec"]
        traffic = spec.get("traffic") if isinstance(spec, dict) else None
        gateway = isinstance(traffic, dict) and traffic.get("router") == "gatewayAPI" \
            and isinstance(traffic.get("httpRoute"), dict)
        route = name if gateway else None
        manifest = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
                    "metadata": {"name": name, "namespace": self.namespace},
                    "spec": normalise(case.manifest["spec"], stable=name, canary=f"{name}-canary", route=route,
                                      prometheus_url=self.cluster.prometheus_url, index=slot)}
        run = Run(case, name, manifest, route=route)
        # The normalised spec as the apiserver and the operator see it.
        probe = Case(case.index, manifest, case.labels, case.targets)
        dry_run(self.cluster.custom, self.namespace, probe)
        if probe.verdict != "accepted":
            run.outcome = "skipped"
            run.detail = f"normalised spec rejected: {probe.message[:300]}"
            return run
        run.expect_invalid = probe.operator_error or probe.runtime_error or probe.validation_crash
        return run

    def start(self, run: Run) -> None:
        from e2e.harness.manifests import http_route
        from e2e.harness.scenario import RolloutScenario

        if run.route:
            self.cluster.apply(http_route(run.route, self.namespace, {run.name: 100, f"{run.name}-canary": 0}))
        run.scenario = RolloutScenario(self.cluster, self.namespace, name=run.name, replicas=3, rps=3000.0,
                                       router="gatewayAPI" if run.route else "replicas", http_route=run.route)
        self.cluster.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, run.manifest,
                                                           field_validation="Strict", _request_timeout=30)
        run.started = time.monotonic()
        steps = run.manifest["spec"].get("steps")
        n_steps = len(steps) if isinstance(steps, list) else 3
        run.timeout = min(self.run_timeout, max(60.0, 40.0 + 6.0 * n_steps))

    def poll(self, run: Run) -> bool:
        """True when the run has ended (or timed out); its outcome is then set."""
        try:
            status = run.scenario.status()
        except ApiException as exc:
            run.outcome, run.detail = "stuck", f"cannot read the rollout: {exc.status} {exc.reason}"
            return True
        phase = status.get("phase")
        invalid = _ready_false_invalid(status)
        if invalid is not None:
            run.outcome, run.detail = "invalidSpec", invalid
            return True
        if phase in TERMINAL:
            run.outcome = {"Succeeded": "succeeded", "RolledBack": "rolledBack", "Failed": "failed"}[phase]
            run.detail = str(status.get("message") or "")
            return True
        spec = run.manifest["spec"]
        if (spec.get("analysis") or {}).get("dryRun") is True and (status.get("decision") or {}).get("action"):
            run.outcome = "dryRun"
            run.detail = str(status["decision"].get("reason") or "")
            return True
        if time.monotonic() - run.started > run.timeout:
            decision = status.get("decision") or {}
            reason = decision.get("reason") or status.get("message")
            run.outcome = "held" if reason else "stuck"
            run.detail = f"phase {phase}, step {status.get('currentStep')}, weight {status.get('canaryWeight')}: " \
                         f"{decision.get('action', '-')}: {reason or 'no decision, no message'}"
            return True
        return False

    def verify(self, run: Run) -> None:
        """The checks on an ended run: a Failed one says why; an invalid one changed nothing."""
        s = run.scenario
        if run.outcome == "failed" and not run.detail:
            run.problems.append("Failed without a message")
        invalid = run.outcome == "invalidSpec" or run.expect_invalid is not None
        if run.expect_invalid is not None and run.outcome != "invalidSpec":
            run.problems.append(f"not reported: the operator's validation rejects the spec "
                                f"({run.expect_invalid[:200]}) but the rollout ended {run.outcome}: {run.detail[:200]}")
        if invalid or run.outcome == "dryRun":
            what = "acted on an invalid spec" if invalid else "acted in a dry run"
            try:
                canary = s.deployment(s.canary)
                run.problems.append(f"{what}: canary Deployment {s.canary} exists ({canary.spec.replicas} replicas)")
            except ApiException as exc:
                if exc.status != 404:
                    raise
            if s.replicas(s.stable) != s.original_replicas or s.template_of(s.stable) != s.original_template:
                run.problems.append(f"{what}: stable {s.stable} changed "
                                    f"(replicas {s.original_replicas} -> {s.replicas(s.stable)})")
            status = s.status()
            # A dry run walks the state machine without acting (phase Progressing, no record).
            dry = (run.manifest["spec"].get("analysis") or {}).get("dryRun") is True
            started = status.get("stableRecord") or (status.get("phase") not in (None, "Pending") and not dry)
            if invalid and started:
                run.problems.append(f"acted on an invalid spec: the rollout was started (phase {status.get('phase')}, "
                                    f"stableRecord {'set' if status.get('stableRecord') else 'unset'})")

    def cleanup(self, run: Run) -> None:
        custom = self.cluster.custom
        with contextlib.suppress(ApiException):
            custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, run.name)
        end = time.monotonic() + 15
        while time.monotonic() < end:
            try:
                custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, run.name)
            except ApiException:
                break
            time.sleep(0.3)
        else:
            with contextlib.suppress(ApiException):
                custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, run.name,
                                                      {"metadata": {"finalizers": None}})
            run.problems.append("the rollout was not released within 15 s of its deletion")
        for deployment in (run.name, f"{run.name}-canary"):
            with contextlib.suppress(ApiException):
                self.cluster.apps.delete_namespaced_deployment(deployment, self.namespace)
        if run.route:
            with contextlib.suppress(ApiException):
                custom.delete_namespaced_custom_object("gateway.networking.k8s.io", "v1", self.namespace,
                                                       "httproutes", run.route)
        with contextlib.suppress(Exception):
            self.cluster.simulator.remove_service(self.namespace, run.name)

    # -- the loop --
    def check_operator(self) -> None:
        if not self.operator.alive():
            code = self.operator.proc.returncode if self.operator.proc else None
            self.crashes.append(f"operator exited with {code}; log tail:\n{self.operator.log_tail(40)}")
            self.log(f"OPERATOR EXITED ({code}): restarting it")
            self.operator.start()

    def run_all(self, cases: list[Case]) -> list[Run]:
        self.operator.start()
        queue = list(enumerate(cases))
        active: list[Run] = []
        finished = 0
        try:
            while (queue or active) and time.monotonic() < self.deadline:
                while queue and len(active) < self.parallel:
                    slot, case = queue.pop(0)
                    run = self.prepare(case, slot)
                    self.runs.append(run)
                    if run.outcome == "skipped":
                        self.log(f"run {slot}: skipped ({run.detail})")
                        continue
                    try:
                        self.start(run)
                    except Exception as exc:  # noqa: BLE001 - setup trouble is reported, the others go on
                        run.outcome, run.detail = "setup-error", f"{type(exc).__name__}: {exc}"[:400]
                        self.cleanup(run)
                        continue
                    active.append(run)
                for run in list(active):
                    if self.poll(run):
                        self.verify(run)
                        self.cleanup(run)
                        active.remove(run)
                        finished += 1
                        flag = " PROBLEM: " + "; ".join(run.problems) if run.problems else ""
                        self.log(f"run {finished}/{len(cases)} {run.name} "
                                 f"[{run.case.label}] -> {run.outcome} in {time.monotonic() - run.started:.0f}s: "
                                 f"{run.detail[:160]}{flag}")
                self.check_operator()
                time.sleep(0.5)
            for run in active:  # out of time
                run.outcome, run.detail = "stuck", "the runner's deadline passed"
                self.cleanup(run)
        finally:
            from e2e.harness.operator_process import delete_rollouts

            delete_rollouts(self.cluster, self.namespace)
            self.check_operator()
            self.operator.stop()
            self.tracebacks = tracebacks_in(self.operator.log_path.read_text(errors="replace"))
        return self.runs


def tracebacks_in(text: str) -> list[str]:
    """Every traceback in a log, with the line that introduced it."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            end = i + 1
            while end < len(lines) and (lines[end].startswith((" ", "\t")) or not lines[end].strip()):
                end += 1
            block = lines[max(0, i - 1): min(len(lines), end + 1)]
            out.append("\n".join(block))
    return out


# ============================================================================ report


@dataclass
class Report:
    cases: list[Case]
    runs: list[Run]
    crashes: list[str]
    tracebacks: list[str]
    seconds: float

    @property
    def accepted(self) -> list[Case]:
        return [c for c in self.cases if c.verdict == "accepted"]

    @property
    def rejected(self) -> list[Case]:
        return [c for c in self.cases if c.verdict == "rejected"]

    @property
    def errors(self) -> list[Case]:
        return [c for c in self.cases if c.verdict == "error"]

    @property
    def rejected_without_field(self) -> list[Case]:
        return [c for c in self.rejected if not c.names_field]

    @property
    def rejected_not_naming_target(self) -> list[Case]:
        return [c for c in self.rejected if c.targets and c.names_field and not c.names_target]

    @property
    def cel_runtime_messages(self) -> list[Case]:
        """Rejections whose message carries a CEL evaluation error (not the rule's own words)."""
        return [c for c in self.rejected if CEL_RUNTIME.search(c.message)]

    @property
    def operator_invalid(self) -> list[Case]:
        return [c for c in self.cases if c.operator_invalid]

    @property
    def validation_crashes(self) -> list[Case]:
        return [c for c in self.cases if c.validation_crash]

    @property
    def stricter_apiserver(self) -> list[Case]:
        """Rejected by the apiserver though the operator's validation accepts what was sent."""
        return [c for c in self.rejected if c.pydantic_original is None]

    @property
    def acted_on_invalid(self) -> list[Run]:
        return [r for r in self.runs if any(p.startswith("acted on") for p in r.problems)]

    @property
    def failed_checks(self) -> list[str]:
        out = []
        if self.rejected_without_field:
            out.append(f"{len(self.rejected_without_field)} rejection(s) name no field")
        if self.validation_crashes:
            out.append(f"{len(self.validation_crashes)} accepted spec(s) crash the operator's validation")
        if self.crashes:
            out.append(f"{len(self.crashes)} operator crash(es)")
        if self.tracebacks:
            out.append(f"{len(self.tracebacks)} traceback(s) in the operator log")
        if self.acted_on_invalid:
            out.append(f"{len(self.acted_on_invalid)} run(s) acted on an invalid spec")
        other = [r for r in self.runs if r.problems and r not in self.acted_on_invalid]
        if other:
            out.append(f"{len(other)} run(s) with other problems")
        stuck = [r for r in self.runs if r.outcome in ("stuck", "setup-error")]
        if stuck:
            out.append(f"{len(stuck)} run(s) stuck or not set up")
        if self.errors:
            out.append(f"{len(self.errors)} dry-run(s) failed outside admission")
        return out

    def outcome_count(self, outcome: str) -> int:
        return sum(r.outcome == outcome for r in self.runs)

    def line(self) -> str:
        s, b, f, i = (self.outcome_count(o) for o in ("succeeded", "rolledBack", "failed", "invalidSpec"))
        return (f"fuzz: {len(self.cases)} specs, {len(self.accepted)} accepted, {len(self.rejected)} rejected "
                f"({sum(c.names_field for c in self.rejected)} naming the field), "
                f"{len(self.operator_invalid)} invalid-in-operator, {s + b + f + i} run to an end: "
                f"{s} succeeded, {b} rolled back, {f} failed, {i} InvalidSpec; {len(self.crashes)} operator crashes")

    def details(self, limit: int = 5) -> str:
        out: list[str] = []
        add = out.append
        add(f"== by mutation label ({len(self.cases)} specs in {self.seconds:.0f}s)")
        table: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for c in self.cases:
            for label in c.labels or ["valid"]:
                key = label if len(c.labels) <= 1 else f"{label} (+others)"
                table[key][c.verdict] += 1
                table[key]["operator-invalid"] += c.operator_invalid
                table[key]["names-target"] += c.verdict == "rejected" and c.names_target
        add(f"  {'label':44} {'n':>5} {'rejected':>8} {'accepted':>8} {'op-inval':>8} {'->field':>7}")
        for key in sorted(table):
            t = table[key]
            n = t["accepted"] + t["rejected"] + t["error"]
            add(f"  {key:44} {n:5} {t['rejected']:8} {t['accepted']:8} {t['operator-invalid']:8} {t['names-target']:7}")

        def examples(title: str, items: list[Case], show: Callable[[Case], str]) -> None:
            if not items:
                return
            add(f"== {title}: {len(items)}")
            by_label: dict[str, list[Case]] = collections.defaultdict(list)
            for c in items:
                by_label[c.label].append(c)
            for label, group in sorted(by_label.items(), key=lambda kv: -len(kv[1])):
                add(f"  [{label}] x{len(group)}: {show(group[0])}")
                if len(by_label) > 40:
                    break

        def sent(c: Case) -> str:
            return json.dumps(c.manifest.get("spec"), separators=(",", ":"), default=str)[:600]

        examples("REJECTED NAMING NO FIELD", self.rejected_without_field,
                 lambda c: f"{c.code} {c.message[:300]} | spec {sent(c)}")
        examples("VALIDATION CRASHES on accepted specs (product bug)", self.validation_crashes,
                 lambda c: f"{c.validation_crash} | targets {c.targets} | spec {sent(c)}")
        examples("rejected, naming a field but not the mutated one", self.rejected_not_naming_target,
                 lambda c: f"targets {c.targets}, named {c.fields[:4]}: {c.message[:300]}")
        examples("rejected with a CEL evaluation error in the message (misleading or noisy)",
                 self.cel_runtime_messages, lambda c: f"{c.message[:400]} | targets {c.targets}")
        examples("apiserver stricter than the operator (rejected; parse_spec accepts what was sent)",
                 self.stricter_apiserver, lambda c: f"{c.message[:260]} | targets {c.targets}")
        examples("accepted by the apiserver, invalid in the operator (InvalidSpec)", self.operator_invalid,
                 lambda c: f"{(c.operator_error or c.runtime_error or '')[:260]}")
        examples("dry-run errors outside admission", self.errors, lambda c: f"{c.code} {c.message[:300]}")
        if self.runs:
            add(f"== real runs: {len(self.runs)}")
            for r in self.runs:
                flag = "  PROBLEM: " + "; ".join(r.problems) if r.problems else ""
                add(f"  {r.name:12} [{r.case.label}] {r.outcome}: {r.detail[:500 if r.problems else 200]}{flag}")
                if r.problems:
                    add(f"      spec: {json.dumps(r.manifest['spec'], separators=(',', ':'), default=str)[:900]}")
            held = self.outcome_count("held") + self.outcome_count("dryRun")
            add(f"  also: {self.outcome_count('dryRun')} dry-run (observed, no action), "
                f"{self.outcome_count('held')} held at the bound with a reason, "
                f"{self.outcome_count('stuck')} stuck, {self.outcome_count('skipped')} skipped, "
                f"{self.outcome_count('setup-error')} setup errors ({held} did not end by design)")
        for crash in self.crashes:
            add(f"== OPERATOR CRASH\n{crash}")
        if self.tracebacks:
            kinds = collections.Counter(t.strip().splitlines()[-1][:120] for t in self.tracebacks)
            add(f"== {len(self.tracebacks)} traceback(s) in the operator log, by exception: "
                + "; ".join(f"{n} x {k}" for k, n in kinds.most_common()))
        for tb in self.tracebacks[:limit]:
            add(f"== TRACEBACK in the operator log\n{tb}")
        if len(self.tracebacks) > limit:
            add(f"   ... {len(self.tracebacks) - limit} more traceback(s)")
        checks = self.failed_checks
        add("== checks: " + ("all passed" if not checks else "FAILED: " + "; ".join(checks)))
        return "\n".join(out)


@dataclass
class Options:
    count: int = 10_000
    seed: int = 1
    runs: int = 30
    parallel: int = 8
    workers: int = 8
    run_timeout: float = 180.0
    dry_run_timeout: float = 1800.0
    deadline: float = 3600.0
    keep_namespace: bool = False
    json_out: str | None = None


def run(options: Options, *, cluster: Any = None, namespace: str | None = None,
        log: Callable[[str], None] | None = None) -> Report:
    """The whole fuzz run; in-process for the e2e test (which passes its cluster and namespace)."""
    log = log or (lambda text: print(text, flush=True))
    started = time.monotonic()
    deadline = started + options.deadline
    own_namespace = namespace is None
    if cluster is None:
        from e2e.harness.cluster import Cluster

        cluster = Cluster.from_state()
    from e2e.harness.operator_process import install_crds

    install_crds(cluster)
    if own_namespace:
        namespace = f"fuzz-{options.seed}-{uuid.uuid4().hex[:5]}"
        cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
            name=namespace, labels={"modelrollout.io/e2e": "true"})))
        cluster.wait_for(lambda: cluster.core.read_namespaced_service_account("default", namespace), timeout=30,
                         message=f"default ServiceAccount in {namespace}")
    assert namespace is not None
    try:
        log(f"fuzz: generating {options.count} manifests (hypothesis, seed {options.seed})")
        t0 = time.monotonic()
        # Generation gets at most half of the time: the dry runs and the real runs need the rest.
        cases = generate(options.count, options.seed, log, deadline=started + options.deadline / 2)
        log(f"fuzz: generated {len(cases)} in {time.monotonic() - t0:.0f}s; "
            f"{sum(not c.labels for c in cases)} unmutated; dry-run create in namespace {namespace}")
        cases = dry_run_all(cluster, namespace, cases, workers=options.workers,
                            deadline=min(deadline, time.monotonic() + options.dry_run_timeout), log=log)
        runs: list[Run] = []
        crashes: list[str] = []
        tracebacks: list[str] = []
        if options.runs > 0 and time.monotonic() < deadline:
            chosen = sample(cases, options.runs, random.Random(options.seed))
            log(f"fuzz: running {len(chosen)} accepted specs for real "
                f"({sum(c.operator_invalid for c in chosen)} invalid in the operator), {options.parallel} at a time")
            real = RealRuns(cluster, namespace, parallel=options.parallel, run_timeout=options.run_timeout,
                            deadline=deadline, log=log)
            runs = real.run_all(chosen)
            crashes, tracebacks = real.crashes, real.tracebacks
        report = Report(cases, runs, crashes, tracebacks, time.monotonic() - started)
        if options.json_out:
            dump_json(report, options.json_out)
        return report
    finally:
        if own_namespace and not options.keep_namespace:
            with contextlib.suppress(Exception):
                cluster.simulator.forget_namespace(namespace)
            with contextlib.suppress(ApiException):
                cluster.core.delete_namespace(namespace)


def dump_json(report: Report, path: str) -> None:
    def case(c: Case) -> Json:
        return {"index": c.index, "labels": c.labels, "targets": c.targets, "verdict": c.verdict, "code": c.code,
                "message": c.message, "fields": c.fields, "namesField": c.names_field, "namesTarget": c.names_target,
                "pydanticOriginal": c.pydantic_original, "operatorError": c.operator_error,
                "runtimeError": c.runtime_error, "validationCrash": c.validation_crash, "spec": c.manifest.get("spec")}

    data = {"line": report.line(), "checks": report.failed_checks, "cases": [case(c) for c in report.cases],
            "runs": [{"name": r.name, "labels": r.case.labels, "outcome": r.outcome, "detail": r.detail,
                      "problems": r.problems, "spec": r.manifest["spec"]} for r in report.runs],
            "crashes": report.crashes, "tracebacks": report.tracebacks}
    with open(path, "w") as fh:
        json.dump(data, fh, indent=1, default=str)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.fuzz_specs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="manifests to generate and dry-run")
    parser.add_argument("--seed", type=int, default=1, help="hypothesis seed (same seed, same manifests)")
    parser.add_argument("--runs", type=int, default=30, help="accepted specs to create for real (0: none)")
    parser.add_argument("--parallel", type=int, default=8, help="real runs at a time")
    parser.add_argument("--workers", type=int, default=8, help="dry-run requests at a time")
    parser.add_argument("--run-timeout", type=float, default=180.0, help="bound on one real run, seconds")
    parser.add_argument("--dry-run-timeout", type=float, default=1800.0, help="bound on the dry-run phase, seconds")
    parser.add_argument("--deadline", type=float, default=3600.0, help="bound on everything, seconds")
    parser.add_argument("--keep-namespace", action="store_true", help="leave the namespace for inspection")
    parser.add_argument("--json", dest="json_out", help="write every case and run to this file")
    args = parser.parse_args(argv)
    options = Options(count=args.count, seed=args.seed, runs=args.runs, parallel=args.parallel, workers=args.workers,
                      run_timeout=args.run_timeout, dry_run_timeout=args.dry_run_timeout, deadline=args.deadline,
                      keep_namespace=args.keep_namespace, json_out=args.json_out)
    try:
        report = run(options)
    except Exception:  # noqa: BLE001 - the runner itself failed: say so plainly
        traceback.print_exc()
        return 2
    print(report.details(), flush=True)
    print(report.line(), flush=True)
    return 1 if report.failed_checks else 0


if __name__ == "__main__":
    sys.exit(main())
