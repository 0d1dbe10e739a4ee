"""The ModelRollout resource: spec, status and enums — the single source of truth.

The CRD's OpenAPI schema (``crds/``) is generated from these classes by ``api/crd.py``,
the operator validates with them, and the core reads them. Cross-field rules that the
CRD also enforces with CEL (weights strictly increasing, last step 100, router fields)
are written here as validators with messages that name the field and the fix.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo, field_validator, model_validator

from .durations import Duration, format_duration
from .thresholds import (
    ApiModel,
    ConditionName,
    ConditionOverrides,
    Profile,
    resolve_conditions,
)

API_GROUP = "modelrollout.io"
API_VERSION = "v1alpha1"
KIND = "ModelRollout"
PLURAL = "modelrollouts"
SINGULAR = "modelrollout"
SHORT_NAMES = ["mro"]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DIGEST = r"^sha256:[a-f0-9]{64}$"
PINNED_IMAGE = re.compile(r"@sha256:[a-f0-9]{64}\Z")
"""An image reference pinned by digest (``spec.canary.requireImageDigest``)."""
MODEL_DIGEST_ANNOTATION = "modelrollout.io/model-digest"

HISTORY_LIMIT = 50
"""Entries kept in ``status.history``; older ones are dropped first (bounded audit trail)."""

BASELINE_WINDOW_MIN = timedelta(minutes=1)
"""The shortest ``analysis.baselineWindow``: below it the stable's side is rarely any evidence."""
FAST_PATH_INTERVAL_MIN = timedelta(milliseconds=100)
FAST_PATH_INTERVAL_MAX = timedelta(seconds=60)
LABEL_DELAY_MAX = timedelta(days=7)
"""Bounds of ``analysis.fastPathInterval`` (and of the deprecated ``fastPathSeconds``)."""

LEGACY_FAST_PATH_SECONDS = 1.0
"""The CRD's old default for ``fastPathSeconds``: the apiserver wrote it into every
ModelRollout created before ``fastPathInterval`` existed, so it may be no user's choice."""


# ------------------------------------------------------------------------------ enums


class RouterKind(StrEnum):
    REPLICAS = "replicas"
    GATEWAY_API = "gatewayAPI"


class Phase(StrEnum):
    PENDING = "Pending"
    INITIALIZING = "Initializing"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTING = "Promoting"
    SUCCEEDED = "Succeeded"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"

    @property
    def is_terminal(self) -> bool:
        """Nothing happens until the revision changes or someone says retry."""
        return self in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED)

    @property
    def is_analysing(self) -> bool:
        """Phases in which metrics are read and scored."""
        return self in (Phase.PROGRESSING, Phase.PAUSED)


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class DecisionAction(StrEnum):
    CONTINUE = "continue"   # healthy: advance when the step's duration has elapsed
    ADVANCE = "advance"     # the step advanced this tick
    PROMOTE = "promote"     # the last step passed: promote
    HOLD = "hold"
    REDUCE = "reduce"
    ROLLBACK = "rollback"

    @property
    def acts(self) -> bool:
        """Decisions that change the cluster (and therefore land in history and Events)."""
        return self in (DecisionAction.ADVANCE, DecisionAction.PROMOTE, DecisionAction.REDUCE, DecisionAction.ROLLBACK)


class DecisionPath(StrEnum):
    """Which of the operator's loops took a decision or started a rollback.

    The value of ``status.decision.path`` and ``status.rollback.path``, of the ``path``
    label of the operator's decision, rollback and Prometheus-query metrics, and of the
    ``path`` of a rollback's evidence (docs/design.md#rollback).
    """

    TICK = "tick"            # the regular analysis tick
    FAST_PATH = "fastPath"   # the critical fast path between ticks (docs/design.md#fast-path)
    POD_WATCH = "podWatch"   # the canary pod watch: OOMKilled or crash-looping pods
    MANUAL = "manual"        # a command annotation (promote, abort)

    @property
    def queries_prometheus(self) -> bool:
        """Paths that read metrics: the values of the query metrics' ``path`` label."""
        return self in (DecisionPath.TICK, DecisionPath.FAST_PATH)


class HistoryKind(StrEnum):
    """What a ``status.history`` entry records (docs/design.md#status)."""

    STEP = "step"            # a step began, or its weight was restored after a reduce
    DECISION = "decision"    # an acting decision that is not a step: reduce, dry-run verdicts, a failed start
    ROLLBACK = "rollback"    # a rollback began (with its evidence) or completed
    PROMOTION = "promotion"  # a promotion began, completed or failed
    REVISION = "revision"    # a challenger revision started
    MANUAL = "manual"        # a command or a pause / resume


class NoDataPolicy(StrEnum):
    HOLD = "hold"
    ROLLBACK = "rollback"
    IGNORE = "ignore"


class ErrorPolicy(StrEnum):
    HOLD = "hold"
    ROLLBACK = "rollback"


class Direction(StrEnum):
    ABOVE = "above"   # higher is worse
    BELOW = "below"   # lower is worse


# ------------------------------------------------------------------------------- spec


class DeploymentRef(ApiModel):
    deployment: str = Field(pattern=DNS_SUBDOMAIN, max_length=253, description="Deployment name in the rollout's namespace")


class ResourceRequirements(ApiModel):
    limits: dict[str, str] | None = Field(default=None, description='e.g. {"nvidia.com/gpu": "2", "memory": "24Gi"}')
    requests: dict[str, str] | None = None


class CanaryTemplate(ApiModel):
    """What the challenger runs: overrides laid over the stable's pod template."""

    image: str | None = Field(default=None, min_length=1, description="image of the first container")
    container: str | None = Field(default=None, description="container to override (default: the first)")
    model_digest: str | None = Field(default=None, pattern=DIGEST, description="sha256:<64 hex>; the pod template must carry it")
    resources: ResourceRequirements | None = None
    env: dict[str, str] | None = Field(default=None, description="environment variables set on the container")


class CanarySpec(ApiModel):
    deployment: str = Field(pattern=DNS_SUBDOMAIN, max_length=253, description="challenger Deployment (created if absent)")
    template: CanaryTemplate | None = None
    require_image_digest: bool = Field(
        default=False,
        description="refuse a challenger image that is not pinned by digest (template.image must hold @sha256:)")

    @model_validator(mode="after")
    def _pinned_image(self) -> Self:
        # A tag can be moved under a running rollout; a digest names one image for good
        # (docs/integrity.md). Mirrored by a CEL rule in api/crd.py.
        if self.require_image_digest:
            image = self.template.image if self.template else None
            if not image or not PINNED_IMAGE.search(image):
                raise ValueError(
                    f"spec.canary.template.image must be pinned by digest (name@sha256:<64 hex>) when "
                    f"spec.canary.requireImageDigest is true; got {image!r}; pin the image or set "
                    "requireImageDigest: false")
        return self


class HTTPRouteRef(ApiModel):
    name: str = Field(pattern=DNS_SUBDOMAIN, max_length=253)
    namespace: str | None = Field(default=None, pattern=DNS_LABEL, max_length=63)


class TrafficSpec(ApiModel):
    router: RouterKind = RouterKind.REPLICAS
    http_route: HTTPRouteRef | None = Field(default=None, description="required when router is gatewayAPI")

    @model_validator(mode="after")
    def _router_fields(self) -> Self:
        if self.router == RouterKind.GATEWAY_API and self.http_route is None:
            raise ValueError("httpRoute is required when router is gatewayAPI; add httpRoute: {name: <HTTPRoute>}")
        return self


class ShadowStep(ApiModel):
    """Live requests copied to the canary while every user is served by the stable
    (docs/shadow.md): the canary is judged before anyone sees its answers."""

    percent: int = Field(default=100, ge=1, le=100,
                         description="share of the route's requests copied to the canary (RequestMirror percent)")
    duration: Duration = Field(description="how long the canary must stay healthy on mirrored requests before it "
                                           "gets real traffic")
    replicas: int | None = Field(
        default=None, ge=1, le=10_000,
        description="canary replicas while shadowing; default: the first weighted step's share of the stable's")


class Step(ApiModel):
    """Either a weighted step (``weight`` and ``duration``) or a shadow step (``shadow``),
    which only the first step may be."""

    weight: int | None = Field(default=None, ge=1, le=100, description="canary traffic percent in (0, 100]")
    duration: Duration | None = Field(default=None, description="how long the step must stay healthy before advancing")
    shadow: ShadowStep | None = Field(
        default=None, description="mirror requests to the canary, no user traffic (gatewayAPI router only; "
                                  "first step only); excludes weight and duration")

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        if self.shadow is not None:
            if self.weight is not None or self.duration is not None:
                raise ValueError("a shadow step has no weight or duration of its own (it routes no user traffic); "
                                 "write {shadow: {percent: 100, duration: 10m}}")
        elif self.weight is None or self.duration is None:
            missing = " and ".join(f for f, v in (("weight", self.weight), ("duration", self.duration)) if v is None)
            raise ValueError(f"{missing} required: a step is {{weight: 5, duration: 15m}} or "
                             "{shadow: {percent: 100, duration: 10m}}")
        return self

    @property
    def traffic_weight(self) -> int:
        """The users' share routed to the canary during this step: 0 for a shadow step."""
        return 0 if self.shadow is not None else int(self.weight or 0)

    @property
    def hold_for(self) -> timedelta:
        """How long the step must stay healthy before the rollout moves on."""
        held = self.shadow.duration if self.shadow is not None else self.duration
        assert held is not None  # _one_form
        return held


DEFAULT_STEPS: tuple[Step, ...] = (
    Step(weight=5, duration=timedelta(minutes=15)),
    Step(weight=25, duration=timedelta(minutes=30)),
    Step(weight=100, duration=timedelta(hours=1)),
)


class PrometheusSpec(ApiModel):
    url: str = Field(pattern=r"^https?://", description="Prometheus base URL")


class NoDataSpec(ApiModel):
    policy: NoDataPolicy = NoDataPolicy.HOLD
    max_consecutive: int = Field(default=10, ge=1, le=10_000)


class PrometheusErrorsSpec(ApiModel):
    max_consecutive: int = Field(default=5, ge=1, le=10_000)
    then: ErrorPolicy = ErrorPolicy.ROLLBACK


class CustomCondition(ApiModel):
    """A user-defined PromQL condition (docs/design.md#custom-conditions), scored like the built-in ones."""

    name: str = Field(pattern=r"^[a-zA-Z][a-zA-Z0-9_-]{0,62}$")
    query: str = Field(min_length=1, description="PromQL returning one value for the canary")
    direction: Direction = Direction.ABOVE
    threshold: float
    critical: float
    weight: float = Field(default=0.1, ge=0.0, le=100.0)
    min_samples_query: str | None = Field(default=None, description="PromQL returning the sample count behind the value")
    min_samples: int = Field(default=1, ge=1)
    enabled: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.direction == Direction.ABOVE and self.critical <= self.threshold:
            raise ValueError(f"critical ({self.critical}) must exceed threshold ({self.threshold}) when direction is above")
        if self.direction == Direction.BELOW and self.critical >= self.threshold:
            raise ValueError(f"critical ({self.critical}) must be below threshold ({self.threshold}) when direction is below")
        return self


class MetricLabels(ApiModel):
    """Which Prometheus labels carry the namespace and the Deployment name."""

    namespace: str = Field(default="namespace", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    deployment: str = Field(default="deployment", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class AnalysisSpec(ApiModel):
    interval: Duration = Field(default=timedelta(seconds=30))
    profile: Profile = Field(
        default=Profile.BALANCED,
        description="threshold profile: conservative | balanced | aggressive (default: the operator's "
                    "--default-profile, balanced unless set)",
        # No default in the CRD: the apiserver would fill it in, and the operator's
        # --default-profile could never apply. pydantic keeps balanced for the CLI.
        json_schema_extra=lambda schema: schema.pop("default", None),
    )
    prometheus: PrometheusSpec | None = None
    conditions: ConditionOverrides = Field(default_factory=ConditionOverrides)
    custom: list[CustomCondition] = Field(default_factory=list, max_length=32)
    dry_run: bool = False
    sustained_high_seconds: int = Field(default=300, ge=0, le=86_400)
    significance: float = Field(default=0.05, gt=0.0, lt=0.5)
    baseline_window: Duration = Field(default=timedelta(hours=24))
    fast_path_interval: Duration = Field(
        default=timedelta(seconds=1),
        description="cadence of the critical fast path, 100ms to 60s (default 1s)",
        # No default in the CRD: the apiserver would fill it in next to a deprecated
        # fastPathSeconds, and the two would disagree. pydantic keeps 1s.
        json_schema_extra=lambda schema: schema.pop("default", None),
    )
    fast_path_seconds: float | None = Field(
        default=None, ge=FAST_PATH_INTERVAL_MIN.total_seconds(), le=FAST_PATH_INTERVAL_MAX.total_seconds(),
        description="deprecated: use fastPathInterval (a duration, e.g. 500ms); when set, fills fastPathInterval",
    )
    progress_deadline_seconds: int = Field(default=600, ge=1, le=86_400)
    label_delay: Duration = Field(
        default=timedelta(0),
        description="how long after its prediction a ground-truth label may arrive, up to 7d (default 0): no step "
                    "completes before accuracy was judged on the challenger's labels at least this long after it "
                    "first served users (docs/design.md#late-labels)",
    )
    labels: MetricLabels = Field(default_factory=MetricLabels)
    queries: dict[str, str] = Field(
        default_factory=dict, max_length=32,
        description="PromQL template overrides by name (docs/operator.md lists the names and placeholders)",
    )
    no_data: NoDataSpec = Field(default_factory=NoDataSpec)
    prometheus_errors: PrometheusErrorsSpec = Field(default_factory=PrometheusErrorsSpec)

    @field_validator("interval")
    @classmethod
    def _interval_positive(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("interval must be at least 1s")
        return value

    @field_validator("baseline_window")
    @classmethod
    def _baseline_window_long_enough(cls, value: timedelta) -> timedelta:
        # The stable's long window: drift always compares with it, and a side short of
        # samples falls back to it. 0 would make every such comparison "no data", a hold
        # that never ends (found by the spec fuzzer, docs/fuzz.md).
        if value < BASELINE_WINDOW_MIN:
            raise ValueError(f"baselineWindow must be at least 1m (e.g. 24h), not {format_duration(value)}")
        return value

    @field_validator("label_delay")
    @classmethod
    def _label_delay_bounded(cls, value: timedelta) -> timedelta:
        if not timedelta(0) <= value <= LABEL_DELAY_MAX:
            raise ValueError(f"labelDelay must be between 0s and 7d (e.g. 30m), not {format_duration(value)}")
        return value

    @field_validator("fast_path_interval")
    @classmethod
    def _fast_path_interval_bounded(cls, value: timedelta) -> timedelta:
        if not FAST_PATH_INTERVAL_MIN <= value <= FAST_PATH_INTERVAL_MAX:
            raise ValueError(f"fastPathInterval must be between 100ms and 60s, not {format_duration(value)}")
        return value

    @field_validator("custom")
    @classmethod
    def _unique_custom(cls, value: list[CustomCondition]) -> list[CustomCondition]:
        builtin = {c.value for c in ConditionName}
        seen: set[str] = set()
        for item in value:
            if item.name in builtin:
                raise ValueError(f"custom condition name {item.name!r} clashes with a built-in condition")
            if item.name in seen:
                raise ValueError(f"custom condition name {item.name!r} appears twice")
            seen.add(item.name)
        return value

    @model_validator(mode="after")
    def _fast_path_seconds_fills_interval(self) -> Self:
        """``fastPathSeconds`` is the deprecated spelling of ``fastPathInterval``; manifests that
        still use it keep working. Set both and they must agree — except for a
        ``fastPathSeconds`` of 1, the value the apiserver itself stored under the old CRD's
        default, where the explicit ``fastPathInterval`` wins: otherwise every rollout created
        before the rename would turn invalid the moment its manifest adopted the new field."""
        if self.fast_path_seconds is None:
            return self
        from_seconds = timedelta(seconds=self.fast_path_seconds)
        if "fast_path_interval" not in self.model_fields_set:
            self.__dict__["fast_path_interval"] = from_seconds  # frozen model: set while validating
        elif abs(self.fast_path_interval - from_seconds) >= timedelta(milliseconds=1) \
                and self.fast_path_seconds != LEGACY_FAST_PATH_SECONDS:
            raise ValueError(
                f"fastPathSeconds ({self.fast_path_seconds:g}) and fastPathInterval "
                f"({format_duration(self.fast_path_interval)}) disagree; fastPathSeconds is deprecated: "
                "remove it and keep fastPathInterval")
        return self

    @model_validator(mode="after")
    def _thresholds_consistent(self) -> Self:
        # Overrides are checked pairwise on their own; this checks them against the profile.
        try:
            resolve_conditions(self.profile, self.conditions)
        except ValidationError as exc:
            first = exc.errors()[0]
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ValueError(f"conditions: {message} (after applying profile {self.profile.value})") from None
        return self

    def resolved_conditions(self) -> ConditionOverrides:
        """Every built-in condition's thresholds: profile defaults with the overrides applied."""
        return resolve_conditions(self.profile, self.conditions)


INT_OR_PERCENT = r"^(100|[1-9]?[0-9])%$"


def _int_or_percent(value: Any) -> int | str:
    """A count (``5``) or a percentage of the stable's replicas (``"25%"``), as Deployments take them."""
    if isinstance(value, bool):
        raise ValueError("must be a count (e.g. 5) or a percentage (e.g. \"25%\")")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} must be >= 0")
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        if re.fullmatch(INT_OR_PERCENT, text):
            return text
    raise ValueError(f"{value!r} must be a count (e.g. 5) or a percentage from 0% to 100% (e.g. \"25%\")")


IntOrPercent = Annotated[
    int | str,
    BeforeValidator(_int_or_percent),
    Field(json_schema_extra={"x-kubernetes-int-or-string": True}),
]


def resolve_int_or_percent(value: int | str, total: int, *, round_up: bool) -> int:
    """``value`` as a number of pods out of ``total`` (percentages round like Kubernetes': surge up, unavailable down)."""
    if isinstance(value, int):
        return value
    share = total * int(value.rstrip("%")) / 100
    return math.ceil(share) if round_up else math.floor(share)


class PromotionSpec(ApiModel):
    """How the stable takes over from the canary when the last step passes (docs/operator.md, "Promotion")."""

    max_surge: IntOrPercent = Field(
        default="25%",
        description="pods the stable gains per handover batch (a count, or a percentage of the stable's recorded "
                    "replicas, rounded up; at least 1): a promotion never needs more than the larger side plus this")
    max_unavailable: IntOrPercent = Field(
        default="25%",
        description="how far the ready serving pods (stable + canary) may drop below the stable's recorded replicas "
                    "while traffic moves (a count, or a percentage rounded down); never to 0")


class ModelRolloutSpec(ApiModel):
    stable: DeploymentRef
    canary: CanarySpec
    traffic: TrafficSpec = Field(default_factory=TrafficSpec)
    steps: list[Step] = Field(default_factory=lambda: list(DEFAULT_STEPS), min_length=1, max_length=20)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    promotion: PromotionSpec = Field(default_factory=PromotionSpec)
    paused: bool = False

    @field_validator("steps")
    @classmethod
    def _steps_increase_to_100(cls, steps: list[Step], info: ValidationInfo) -> list[Step]:
        traffic = info.data.get("traffic")  # validated before steps (field order); absent when invalid
        if steps and steps[0].shadow is not None and isinstance(traffic, TrafficSpec) \
                and traffic.router != RouterKind.GATEWAY_API:
            raise ValueError(
                f"steps[0].shadow: a shadow step needs traffic.router gatewayAPI, not {traffic.router.value}: "
                "only an HTTPRoute can copy requests to the canary (RequestMirror) while users stay on the stable; "
                "the replicas router sends users to every canary pod it scales up. Use gatewayAPI or remove the step")
        for i, shadowed in enumerate(steps):
            if i > 0 and shadowed.shadow is not None:
                raise ValueError(f"steps[{i}].shadow: only the first step may be a shadow step (mirroring after users "
                                 "were served judges nothing new); move it first or remove it")
        weighted = [(i, s) for i, s in enumerate(steps) if s.shadow is None]
        for (_, before), (i, after) in zip(weighted, weighted[1:]):
            if after.traffic_weight <= before.traffic_weight:
                raise ValueError(
                    f"steps[{i}].weight: {after.traffic_weight} must exceed the previous step ({before.traffic_weight}); "
                    "weights increase strictly and end at 100"
                )
        if steps[-1].shadow is not None or steps[-1].traffic_weight != 100:
            last = "a shadow step" if steps[-1].shadow is not None else str(steps[-1].traffic_weight)
            raise ValueError(f"steps[{len(steps) - 1}].weight: the last step must be 100, not {last}")
        return steps

    @property
    def first_weight(self) -> int:
        """The first step that routes users to the canary: its weight (the floor of a reduce)."""
        return next(s.traffic_weight for s in self.steps if s.shadow is None)

    @model_validator(mode="after")
    def _distinct_deployments(self) -> Self:
        if self.stable.deployment == self.canary.deployment:
            raise ValueError(
                f"canary.deployment: {self.canary.deployment!r} is the stable deployment; name a separate challenger"
            )
        return self


# ----------------------------------------------------------------------------- status

Observed = dict[str, float | int | str | bool | None]


class ConditionStatus(ApiModel):
    """One condition's latest evaluation, as shown by ``kubectl describe``."""

    name: str
    severity: float = Field(ge=0.0, le=1.0)
    triggered: bool = False
    critical: bool = False
    inconclusive: bool = False
    no_data: bool = False
    triggered_since: datetime | None = None
    window_seconds: float | None = Field(default=None, description="window the condition's counts covered")
    samples: float | None = Field(default=None, description="samples behind the verdict (requests, labels, lookups)")
    min_samples: float | None = None
    observed: Observed = Field(default_factory=dict)
    threshold: Observed = Field(default_factory=dict)
    message: str = ""


class RiskStatus(ApiModel):
    score: float = Field(ge=0.0, le=1.0)
    level: RiskLevel
    evaluated_at: datetime
    conditions: list[ConditionStatus] = Field(default_factory=list)


class DispersionStatus(ApiModel):
    """How much wider than binomial the stable's rates wander (docs/decisions.md#overdispersion).

    Measured by the tick from the stable's counts per interval, and read by the fast path,
    which has no interval counts of its own. Zeros: binomial noise (i.i.d. requests)."""

    accuracy: float = Field(default=0.0, ge=0.0, le=1.0, description="intra-class correlation of correct predictions")
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="intra-class correlation of errors")
    cache: float = Field(default=0.0, ge=0.0, le=1.0, description="intra-class correlation of cache hits")
    rate: float = Field(default=0.0, ge=0.0, description="an interval's request-rate variance beyond Poisson (CV²)")
    intervals: int = Field(default=0, ge=0, description="intervals the estimates rest on")
    interval_seconds: float | None = Field(default=None, gt=0, description="each interval's length")


class DecisionStatus(ApiModel):
    action: DecisionAction
    reason: str
    at: datetime
    path: DecisionPath = Field(default=DecisionPath.TICK, description="the loop that decided")


class StableRecord(ApiModel):
    """The stable Deployment exactly as it was before the rollout touched it."""

    replicas: int = Field(ge=0)
    template: dict[str, Any] = Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    recorded_at: datetime


class PromotionStatus(ApiModel):
    """Progress of the batched handover: how many of the stable's pods run the challenger and are ready."""

    started_at: datetime
    batch: int = Field(default=0, ge=0, description="handover batches completed")
    stable_ready: int = Field(default=0, ge=0, description="stable pods ready with the challenger's template")
    canary_replicas: int = Field(default=0, ge=0)
    total: int = Field(default=0, ge=0, description="the stable's recorded replicas: the handover's end point")
    batch_started_at: datetime | None = Field(
        default=None,
        description="when the batch being waited for began: its progressDeadlineSeconds counts from here, "
                    "also across operator restarts",
    )


class RollbackStatus(ApiModel):
    """Progress of a rollback through the three idempotent phases of docs/design.md#rollback."""

    reason: str
    trigger: str = Field(description="condition or signal that caused it")
    path: DecisionPath = Field(default=DecisionPath.TICK, description="the loop that caught it")
    started_at: datetime
    completed_phase: int = Field(default=0, ge=0, le=3, description="last phase whose actions were applied")


class KubeCondition(ApiModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: datetime


class HistoryEntry(ApiModel):
    at: datetime
    kind: HistoryKind = Field(description="what the entry records")
    message: str
    step: int | None = None
    weight: int | None = None
    score: float | None = None
    evidence: dict[str, Any] | None = Field(default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})


class ModelRolloutStatus(ApiModel):
    phase: Phase = Phase.PENDING
    observed_generation: int | None = None
    revision: str | None = None
    current_step: int = Field(default=0, ge=0)
    step_progress: str | None = Field(
        default=None, description="the current step as 'N/M', counted from 1 (kubectl's STEP column)")
    canary_weight: int = Field(default=0, ge=0, le=100)
    mirror_percent: int | None = Field(
        default=None, ge=1, le=100,
        description="share of the route's requests copied to the canary during a shadow step (docs/shadow.md)")
    step_started_at: datetime | None = None
    risk: RiskStatus | None = None
    dispersion: DispersionStatus | None = None
    decision: DecisionStatus | None = None
    high_risk_since: datetime | None = None
    short_of_size_since: datetime | None = Field(
        default=None, description="since when the canary has been short of its step's size (docs/design.md#kubernetes-health)")
    model_unconfirmed_since: datetime | None = Field(
        default=None, description="since when the declared model has been unconfirmed on the canary's ready pods "
                                  "(docs/integrity.md)")
    serving_since: datetime | None = Field(
        default=None, description="when the challenger first served users (its first weighted step began)")
    labels_judged_at: datetime | None = Field(
        default=None, description="when accuracy was first judged on the challenger's own labels, labelDelay or more "
                                  "after servingSince; no step completes before (docs/design.md#late-labels)")
    consecutive_no_data: int = Field(default=0, ge=0)
    consecutive_prometheus_errors: int = Field(default=0, ge=0)
    next_evaluation_at: datetime | None = None
    stable_record: StableRecord | None = None
    rollback: RollbackStatus | None = None
    promotion: PromotionStatus | None = None
    promoted_at: datetime | None = None
    last_command: str | None = Field(default=None, description="id of the last manual command applied (idempotency)")
    message: str = ""
    conditions: list[KubeCondition] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list, max_length=HISTORY_LIMIT)


class ModelRollout(ApiModel):
    """A whole resource as read from the API (metadata kept loose: the apiserver owns it)."""

    api_version: Literal["modelrollout.io/v1alpha1"] = "modelrollout.io/v1alpha1"
    kind: Literal["ModelRollout"] = "ModelRollout"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ModelRolloutSpec
    status: ModelRolloutStatus | None = None
