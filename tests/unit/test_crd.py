"""The generated CRD: committed == generated, structural, examples valid, invalid ones rejected.

CEL rules cannot be evaluated here (no CEL interpreter among the dependencies): this
suite checks they sit on the right nodes; the e2e suite applies the invalid examples
to a real kube-apiserver. The OpenAPI part of the schema *is* checked here, with a
small validator covering exactly the keywords the generator emits.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from modelrollout.api import crd
from modelrollout.api.models import API_GROUP, API_VERSION, KIND, ModelRollout

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "crds" / "modelrollout.io_modelrollouts.yaml"
VALID = sorted((REPO / "examples" / "rollouts").glob("*.yaml"))
INVALID = sorted((REPO / "examples" / "invalid").glob("*.yaml"))

Schema = dict[str, Any]


@pytest.fixture(scope="module")
def generated() -> dict[str, Any]:
    return crd.generate_crd()


@pytest.fixture(scope="module")
def schema(generated: dict[str, Any]) -> Schema:
    return generated["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _expected_fragment(path: Path) -> str:
    match = re.search(r"^# expect: (\S+)\s*$", path.read_text(), re.MULTILINE)
    assert match, f"{path.name}: add a '# expect: <field path fragment>' comment line"
    return match.group(1)


def _walk(node: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node with its Kubernetes-style path (``spec.steps[].weight``)."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}" if path else name)
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}[*]")


# -------------------------------------------------------- a validator for the emitted subset

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}


def openapi_errors(value: Any, node: Schema, path: str = "") -> list[str]:
    """Errors the apiserver's OpenAPI validation (plus strict field validation) would report.

    Covers the keywords api/crd.py emits; CEL rules are not evaluated.
    """
    if value is None:
        return [] if node.get("nullable") else [f"{path}: must not be null"]
    kind = node.get("type")
    if kind is None and node.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            return [f"{path}: must be an integer or a string"]
        if isinstance(value, str):
            return [f"{path}: {value!r} does not match {node['pattern']}"] \
                if "pattern" in node and not re.search(node["pattern"], value) else []
        return [f"{path}: below the minimum {node['minimum']}"] if value < node.get("minimum", value) else []
    if kind is None:
        assert node.get("x-kubernetes-preserve-unknown-fields"), f"{path}: untyped node"
        return []
    if not _TYPES[kind](value):
        return [f"{path}: must be of type {kind}"]
    errors: list[str] = []
    if "enum" in node and value not in node["enum"]:
        errors.append(f"{path}: unsupported value {value!r}, allowed {node['enum']}")
    if "pattern" in node and not re.search(node["pattern"], value):
        errors.append(f"{path}: {value!r} does not match {node['pattern']}")
    if len(value if isinstance(value, str) else "") < node.get("minLength", 0):
        errors.append(f"{path}: shorter than {node['minLength']}")
    if isinstance(value, str) and len(value) > node.get("maxLength", len(value)):
        errors.append(f"{path}: longer than {node['maxLength']}")
    if "minimum" in node and (value <= node["minimum"] if node.get("exclusiveMinimum") else value < node["minimum"]):
        errors.append(f"{path}: below the minimum {node['minimum']}")
    if "maximum" in node and (value >= node["maximum"] if node.get("exclusiveMaximum") else value > node["maximum"]):
        errors.append(f"{path}: above the maximum {node['maximum']}")
    if kind == "array":
        if not node.get("minItems", 0) <= len(value) <= node.get("maxItems", len(value)):
            errors.append(f"{path}: {len(value)} items, outside [{node.get('minItems', 0)}, {node.get('maxItems')}]")
        for i, item in enumerate(value):
            errors += openapi_errors(item, node["items"], f"{path}[{i}]")
    if kind == "object" and not node.get("minProperties", 0) <= len(value) <= node.get("maxProperties", len(value)):
        errors.append(f"{path}: {len(value)} properties, outside [{node.get('minProperties', 0)}, "
                      f"{node.get('maxProperties')}]")
    if kind == "object" and not node.get("x-kubernetes-preserve-unknown-fields"):
        props = node.get("properties", {})
        extra = node.get("additionalProperties")
        for key in node.get("required", []):
            if key not in value:
                errors.append(f"{path}.{key}: Required value")
        for key, sub in value.items():
            child = f"{path}.{key}" if path else key
            if key in props:
                errors += openapi_errors(sub, props[key], child)
            elif isinstance(extra, dict):
                errors += openapi_errors(sub, extra, child)
            elif props:
                errors.append(f'unknown field "{child}"')
    return errors


def _kube_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _pydantic_report(exc: ValidationError) -> str:
    """Pydantic's errors with their locations written the way kubectl prints field paths."""
    return "\n".join(f"{_kube_path(e['loc'])}: {e['msg']}" for e in exc.errors())


# -------------------------------------------------------------------------------- tests


def test_committed_crd_is_the_generated_one() -> None:
    assert COMMITTED.exists(), f"{COMMITTED.relative_to(REPO)} is missing: run `make crds`"
    assert COMMITTED.read_text() == crd.render_crd_yaml(), (
        f"{COMMITTED.relative_to(REPO)} is stale: the models changed; run `make crds` and commit the result"
    )


def test_rendering_is_deterministic_and_headed() -> None:
    first, second = crd.render_crd_yaml(), crd.render_crd_yaml()
    assert first == second
    assert first.startswith("# Generated by `make crds`")
    assert "DO NOT EDIT" in first.splitlines()[1]
    assert yaml.safe_load(first) == crd.generate_crd()


def test_schema_is_structural(schema: Schema) -> None:
    forbidden = {"$ref", "$defs", "anyOf", "allOf", "oneOf", "not", "title", "$schema"}
    for path, node in _walk(schema):
        where = path or "<root>"
        assert not forbidden & node.keys(), f"{where}: {sorted(forbidden & node.keys())} left in the schema"
        assert node.get("type") or node.get("x-kubernetes-preserve-unknown-fields") or node.get(
            "x-kubernetes-int-or-string"
        ), f"{where}: every structural node needs a type"
        assert node.get("additionalProperties") is not False, f"{where}: additionalProperties: false is not structural"
        assert not ("properties" in node and "additionalProperties" in node), f"{where}: properties with additionalProperties"
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert bound not in node or node[bound] is True, f"{where}: OpenAPI v3.0 wants {bound} as a boolean"
        if node.get("type") == "array":
            assert "items" in node, f"{where}: arrays need items"


def test_defaults_are_scalars_that_validate(schema: Schema) -> None:
    seen = 0
    for path, node in _walk(schema):
        if "default" in node:
            seen += 1
            assert not isinstance(node["default"], (dict, list)), f"{path}: only scalar defaults are kept"
            assert openapi_errors(node["default"], node, path) == [], f"{path}: default {node['default']!r} is invalid"
    assert seen > 10
    analysis = schema["properties"]["spec"]["properties"]["analysis"]["properties"]
    assert analysis["interval"]["default"] == "30s"
    assert analysis["baselineWindow"]["default"] == "24h"


def test_types_follow_the_models(schema: Schema) -> None:
    spec = schema["properties"]["spec"]["properties"]
    status = schema["properties"]["status"]["properties"]
    assert spec["steps"]["items"]["properties"]["weight"] == {
        "description": "canary traffic percent in (0, 100]",
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "nullable": True,  # a shadow step has none (docs/shadow.md)
    }
    assert spec["steps"]["maxItems"] == 20
    assert spec["analysis"]["properties"]["custom"]["maxItems"] == 32
    assert spec["analysis"]["properties"]["queries"]["maxProperties"] == 32  # as the model's max_length
    assert spec["analysis"]["properties"]["profile"]["enum"] == ["conservative", "balanced", "aggressive"]
    assert spec["traffic"]["properties"]["router"]["enum"] == ["replicas", "gatewayAPI"]
    limits = spec["canary"]["properties"]["template"]["properties"]["resources"]["properties"]["limits"]
    assert limits["additionalProperties"] == {"type": "string"}
    assert spec["canary"]["properties"]["template"]["nullable"] is True
    significance = spec["analysis"]["properties"]["significance"]
    assert (significance["minimum"], significance["exclusiveMinimum"]) == (0.0, True)
    assert status["stepStartedAt"] == {"type": "string", "format": "date-time", "nullable": True}
    assert status["risk"]["properties"]["score"]["type"] == "number"
    template = status["stableRecord"]["properties"]["template"]
    assert template == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    evidence = status["history"]["items"]["properties"]["evidence"]
    assert evidence["x-kubernetes-preserve-unknown-fields"] is True and "properties" not in evidence


def test_status_schema_keeps_every_field_the_operator_writes(schema: Schema) -> None:
    """Strict schemas prune unknown status fields silently: every model field must be declared."""
    from modelrollout.api.models import ModelRolloutStatus

    status = schema["properties"]["status"]["properties"]
    expected = {f.alias or name for name, f in ModelRolloutStatus.model_fields.items()}
    assert expected == set(status)
    written = ModelRolloutStatus().model_dump(mode="json", by_alias=True)
    assert openapi_errors(written, schema["properties"]["status"], "status") == []


PATHS_EVER_WRITTEN = ["tick", "fastPath", "podWatch", "manual"]
HISTORY_KINDS_EVER_WRITTEN = ["step", "decision", "rollback", "promotion", "revision", "manual"]


def test_path_and_history_kind_enums_admit_every_value_ever_written(schema: Schema) -> None:
    """These status fields were plain strings: an enum must still admit (and parse) what older operators wrote."""
    from modelrollout.api.models import DecisionPath, HistoryKind, ModelRolloutStatus

    status = schema["properties"]["status"]["properties"]
    assert [p.value for p in DecisionPath] == PATHS_EVER_WRITTEN
    assert [k.value for k in HistoryKind] == HISTORY_KINDS_EVER_WRITTEN
    assert status["decision"]["properties"]["path"]["enum"] == PATHS_EVER_WRITTEN
    assert status["rollback"]["properties"]["path"]["enum"] == PATHS_EVER_WRITTEN
    assert status["history"]["items"]["properties"]["kind"]["enum"] == HISTORY_KINDS_EVER_WRITTEN
    at = "2024-05-01T12:00:00Z"
    written = {
        "phase": "RolledBack",
        "decision": {"action": "rollback", "reason": "aborted by user", "at": at, "path": "manual"},
        "rollback": {"reason": "critical: latency", "trigger": "latency", "path": "fastPath", "startedAt": at,
                     "completedPhase": 3},
        "history": [{"at": at, "kind": kind, "message": kind, "evidence": {"path": PATHS_EVER_WRITTEN[i % 4]}}
                    for i, kind in enumerate(HISTORY_KINDS_EVER_WRITTEN)],
    }
    assert openapi_errors(written, schema["properties"]["status"], "status") == []
    parsed = ModelRolloutStatus.model_validate(written)
    assert parsed.decision is not None and parsed.decision.path is DecisionPath.MANUAL
    assert [h.kind for h in parsed.history] == list(HistoryKind)
    dumped = parsed.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    assert dumped["decision"]["path"] == "manual" and dumped["rollback"]["path"] == "fastPath"
    assert [h["kind"] for h in dumped["history"]] == HISTORY_KINDS_EVER_WRITTEN


def test_names_scope_subresource_and_printer_columns(generated: dict[str, Any]) -> None:
    spec = generated["spec"]
    assert generated["metadata"]["name"] == f"modelrollouts.{API_GROUP}"
    assert spec["group"] == API_GROUP and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == KIND
    assert spec["names"]["shortNames"] == ["mro"]
    assert spec["names"]["categories"] == ["modelrollout"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (API_VERSION, True, True)
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: (c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Phase": ("string", ".status.phase"),
        "Step": ("string", ".status.stepProgress"),
        "Weight": ("integer", ".status.canaryWeight"),
        "Score": ("number", ".status.risk.score"),
        "Level": ("string", ".status.risk.level"),
        "Age": ("date", ".metadata.creationTimestamp"),
    }


def _rules(schema: Schema) -> dict[str, list[dict[str, str]]]:
    return {path: node["x-kubernetes-validations"] for path, node in _walk(schema) if "x-kubernetes-validations" in node}


def test_cel_rules_sit_on_the_right_nodes(schema: Schema) -> None:
    rules = _rules(schema)

    def rule_texts(path: str) -> str:
        return " ;; ".join(r["rule"] for r in rules.get(path, []))

    assert "self.stable.deployment != self.canary.deployment" in rule_texts("spec")
    assert "isSorted()" in rule_texts("spec.steps") and "exists_one" in rule_texts("spec.steps")
    assert "self[size(self) - 1].weight == 100" in rule_texts("spec.steps")
    assert "has(self[0].shadow)" in rule_texts("spec.steps")
    assert "has(self.shadow)" in rule_texts("spec.steps[]")
    assert "gatewayAPI" in rule_texts("spec") and "s.shadow" in rule_texts("spec")
    assert "'gatewayAPI'" in rule_texts("spec.traffic") and "has(self.httpRoute)" in rule_texts("spec.traffic")
    assert "duration(self)" in rule_texts("spec.analysis.interval")
    assert "self.critical < self.threshold" in rule_texts("spec.analysis.custom[]")
    assert "exists_one" in rule_texts("spec.analysis.custom")
    assert "self.criticalAccuracy < self.minAccuracy" in rule_texts("spec.analysis.conditions.accuracy")
    assert "self.criticalRelativeDrop > self.maxRelativeDrop" in rule_texts("spec.analysis.conditions.accuracy")
    assert "self.criticalStatistic > self.minStatistic" in rule_texts("spec.analysis.conditions.confidenceDrift")
    assert "self.baselineRate <= self.maxRate" in rule_texts("spec.analysis.conditions.errorRate")
    assert "self.criticalHitRate < self.minHitRate" in rule_texts("spec.analysis.conditions.cache")
    assert "self.criticalServiceRps < self.minServiceRps" in rule_texts("spec.analysis.conditions.throughput")
    assert "self.criticalShareDrop > self.maxShareDrop" in rule_texts("spec.analysis.conditions.throughput")


def test_cel_rules_name_the_field_and_are_costed(schema: Schema) -> None:
    for path, rules in _rules(schema).items():
        for rule in rules:
            assert rule["message"].startswith("spec."), f"{path}: message must name the field: {rule['message']!r}"
            assert rule.get("fieldPath", ".").startswith("."), f"{path}: fieldPath is relative to the node"
    # The apiserver estimates a rule's cost from maxItems/maxLength; unbounded ones are rejected.
    for path, node in _walk(schema):
        rules = " ".join(r["rule"] for r in node.get("x-kubernetes-validations", []))
        if node.get("type") == "array" and rules:
            assert "maxItems" in node, f"{path}: CEL over a list needs maxItems"
    custom_name = schema["properties"]["spec"]["properties"]["analysis"]["properties"]["custom"]["items"]["properties"]["name"]
    assert custom_name["maxLength"] == 63


def test_every_rule_points_at_existing_fields() -> None:
    """A model rename must not orphan a rule: its node and its fieldPath both exist."""
    root = crd.openapi_schema()
    for path, rules in crd.CEL_RULES.items():
        node = crd._node_at(root, path)
        for rule in rules:
            for segment in filter(None, rule.get("fieldPath", "").split(".")):
                assert segment in node.get("properties", {}), f"{'.'.join(path)}: fieldPath {rule['fieldPath']} is gone"
                node = node["properties"][segment]
            node = crd._node_at(root, path)
            for field in re.findall(r"self\.(\w+)\b(?!\()", rule["rule"]):
                assert field in node.get("properties", {}), f"{'.'.join(path)}: rule uses missing field {field!r}"


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_example_rollouts_are_valid(path: Path, schema: Schema) -> None:
    manifest = _load(path)
    rollout = ModelRollout.model_validate(manifest)
    assert rollout.spec.steps[-1].weight == 100
    assert openapi_errors(manifest, schema) == []


def test_the_examples_cover_the_brief() -> None:
    names = {p.name for p in VALID}
    assert {"fraud-scorer.yaml", "minimal.yaml", "gateway-api.yaml", "custom-conditions.yaml", "conservative.yaml"} <= names
    assert len(INVALID) >= 13


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_rollouts_are_rejected_naming_the_field(path: Path) -> None:
    expected = _expected_fragment(path)
    with pytest.raises(ValidationError) as caught:
        ModelRollout.model_validate(_load(path))
    report = _pydantic_report(caught.value)
    assert expected in report, f"{path.name}: the error should name {expected!r}, got:\n{report}"


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_rollouts_are_stopped_at_admission(path: Path, schema: Schema) -> None:
    """Either the OpenAPI schema rejects the manifest naming the field, or a CEL rule guards that field."""
    expected = _expected_fragment(path)
    errors = openapi_errors(_load(path), schema)
    if errors:
        assert any(expected in e for e in errors), f"{path.name}: schema errors do not name {expected!r}: {errors}"
        return
    wanted = re.sub(r"\[\d+\]", "[]", expected)
    guarded = [
        path_ + rule.get("fieldPath", "")
        for path_, rules in _rules(schema).items()
        for rule in rules
    ]
    assert any(wanted in g for g in guarded), f"{path.name}: neither the schema nor a CEL rule covers {expected!r}"
