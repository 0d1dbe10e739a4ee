"""Reading ModelRollout manifests and turning validation errors into field-named messages.

Shared by the CLI (``validate``, ``evaluate``, ``replay``) and the operator (which
reports the same messages in ``Ready=False, reason=InvalidSpec``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .models import KIND, ModelRollout, ModelRolloutSpec


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the field and the fix."""


def field_path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """``('spec', 'steps', 1, 'weight')`` -> ``spec.steps[1].weight``."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith(("function-", "tagged-union")):
            continue
        else:
            path += ("." if path else "") + str(part)
    return path


def describe_validation_error(exc: ValidationError, prefix: str = "") -> list[str]:
    """One line per problem: ``spec.steps[1].weight: must exceed the previous step …``."""
    lines = []
    for err in exc.errors(include_url=False):
        where = field_path(tuple(err["loc"]), prefix) or prefix or "(document)"
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; see the CRD for the allowed fields)"
        elif err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] == "enum" and err.get("ctx"):
            message = f"{err.get('input')!r} is not allowed; expected {err['ctx'].get('expected')}"
        lines.append(f"{where}: {message}")
    return lines


def parse_spec(spec: dict[str, Any] | None, default_profile: str | None = None) -> ModelRolloutSpec:
    """Validate a raw spec (as kopf hands it over); raises ManifestError naming the field.

    ``default_profile`` (the operator's ``--default-profile``) applies when the spec names
    no ``analysis.profile``; the CRD deliberately has no default for it.
    """
    raw = dict(spec or {})
    if default_profile is not None:
        analysis = raw.get("analysis")
        analysis = dict(analysis) if isinstance(analysis, dict) else ({} if analysis is None else analysis)
        if isinstance(analysis, dict) and analysis.get("profile") is None:
            analysis["profile"] = default_profile
            raw["analysis"] = analysis
    try:
        return ModelRolloutSpec.model_validate(raw)
    except ValidationError as exc:
        raise ManifestError("; ".join(describe_validation_error(exc, "spec"))) from None


@dataclass(frozen=True)
class LoadedDocument:
    index: int
    name: str
    rollout: ModelRollout | None
    errors: tuple[str, ...] = ()
    skipped: str | None = None


def iter_documents(path: Path) -> Iterator[LoadedDocument]:
    """Every document of a (multi-document) YAML file, validated when it is a ModelRollout."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from None
    for index, doc in enumerate(documents):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            yield LoadedDocument(index, f"document {index}", None, (f"document {index}: expected a mapping",))
            continue
        meta = doc.get("metadata") or {}
        name = f"{meta.get('namespace', 'default')}/{meta.get('name', f'document-{index}')}"
        if doc.get("kind") != KIND:
            yield LoadedDocument(index, name, None, skipped=f"kind {doc.get('kind')!r} is not {KIND}")
            continue
        try:
            yield LoadedDocument(index, name, ModelRollout.model_validate(doc))
        except ValidationError as exc:
            yield LoadedDocument(index, name, None, tuple(describe_validation_error(exc)))


def load_rollout(path: Path) -> ModelRollout:
    """The first ModelRollout in a file; ManifestError when there is none or it is invalid."""
    for doc in iter_documents(path):
        if doc.skipped:
            continue
        if doc.rollout is None:
            raise ManifestError(f"{path} ({doc.name}): " + "; ".join(doc.errors))
        return doc.rollout
    raise ManifestError(f"{path}: no {KIND} document found")
