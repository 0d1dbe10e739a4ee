"""Safety invariants sampled continuously while a rollout runs, not only at its end.

``ServingMonitor`` reads the two Deployments and the namespace's pods every
``interval`` seconds in a thread of its own and keeps what a test asserts on:

* the ready serving pods (stable + canary ``availableReplicas``) never below the
  bound the rollout promises (the stable's recorded replicas less
  ``spec.promotion.maxUnavailable``, never 0; docs/operator.md, "Promotion");
* the GPUs the namespace's live pods request, whose peak a quota must hold.

Every sample is kept (time, stable ready, canary ready, GPUs), so a failing
assertion prints the moments it happened.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.rest import ApiException

from e2e.harness.cluster import Cluster

GPU = "nvidia.com/gpu"


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    stable_ready: int
    canary_ready: int
    gpus: int

    @property
    def serving(self) -> int:
        return self.stable_ready + self.canary_ready


def _ready(cluster: Cluster, namespace: str, name: str) -> int:
    try:
        dep = cluster.apps.read_namespaced_deployment(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return 0
        raise
    return int((dep.status.available_replicas if dep.status else 0) or 0)


def _gpus(cluster: Cluster, namespace: str) -> int:
    """GPUs requested by the namespace's pods that hold them (what a quota counts)."""
    total = 0
    for pod in cluster.core.list_namespaced_pod(namespace).items:
        if pod.status and pod.status.phase in ("Succeeded", "Failed"):
            continue
        for c in pod.spec.containers:
            requests = (c.resources.requests if c.resources else None) or {}
            limits = (c.resources.limits if c.resources else None) or {}
            total += int(requests.get(GPU) or limits.get(GPU) or 0)
    return total


@dataclass
class ServingMonitor:
    cluster: Cluster
    namespace: str
    stable: str
    canary: str
    interval: float = 0.25
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> "ServingMonitor":
        self._thread = threading.Thread(target=self._run, name=f"monitor-{self.namespace}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.samples.append(Sample(
                    at=round(t0 - started, 2),
                    stable_ready=_ready(self.cluster, self.namespace, self.stable),
                    canary_ready=_ready(self.cluster, self.namespace, self.canary),
                    gpus=_gpus(self.cluster, self.namespace)))
            except Exception as exc:  # noqa: BLE001 - a failed read is reported, never a silent gap
                self.errors.append(f"{t0 - started:.2f}s: {type(exc).__name__}: {exc}")
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def since(self, at: float) -> list[Sample]:
        return [s for s in self.samples if s.at >= at]

    def now(self) -> float:
        return self.samples[-1].at if self.samples else 0.0

    def min_serving(self, samples: list[Sample] | None = None) -> Sample:
        return min(samples if samples is not None else self.samples, key=lambda s: s.serving)

    def peak_gpus(self) -> Sample:
        return max(self.samples, key=lambda s: s.gpus)

    def below(self, bound: int, samples: list[Sample] | None = None) -> list[Sample]:
        return [s for s in (samples if samples is not None else self.samples) if s.serving < bound or s.serving == 0]

    def assert_serving_at_least(self, bound: int, samples: list[Sample] | None = None) -> None:
        assert not self.errors, f"monitor reads failed: {self.errors[:5]}"
        checked = samples if samples is not None else self.samples
        assert len(checked) > 10, f"too few samples to judge: {len(checked)}"
        bad = self.below(bound, checked)
        assert not bad, (f"ready serving pods fell below {bound} in {len(bad)} of {len(checked)} samples; "
                         f"first: {bad[:5]}")


# ============================================================================= rollout invariants
#
# Added for the SIGKILL chaos run (e2e/chaos.py, docs/chaos.md); ServingMonitor above is
# unchanged. ``RolloutMonitor`` samples one ModelRollout and its two Deployments every
# ``interval`` seconds and checks, on every sample:
#
#   (a) serving   ready serving pods (stable + canary availableReplicas) >= the bound
#                 (status.stableRecord.replicas less spec.promotion.maxUnavailable,
#                 rounded down; never 0) while the record exists;
#   (b) promote   no phase Promoting while a condition of status.risk.conditions is critical;
#   (c) budget    no rollout neither terminal nor in a documented hold past its time budget
#                 (plus the time the operator was down meanwhile);
#   (d) restore   after RolledBack, the stable's pod template and replicas exactly the
#                 recorded ones and the ones captured before the rollout started.
#
# A violation is an *episode*: consecutive failing samples of one invariant count once,
# with the samples before and during it kept for the report.

TERMINAL_PHASES = frozenset({"Succeeded", "RolledBack", "Failed"})
# Holds docs/operator.md documents: spec.paused, and Ready=False for an invalid spec or an
# unreadable status (the operator touches nothing until a human acts).
HOLD_REASONS = frozenset({"InvalidSpec", "UnreadableStatus"})
INVARIANTS = {
    "a": "ready serving pods below the bound",
    "b": "promotion while a condition is critical",
    "c": "not terminal past its time budget",
    "d": "stable not restored exactly after RolledBack",
}


def serving_bound(recorded_replicas: int, max_unavailable: int | str = "25%") -> int:
    """The stable's recorded replicas less maxUnavailable (a percentage rounds down), never 0."""
    if recorded_replicas <= 0:
        return 0
    if isinstance(max_unavailable, str):
        text = max_unavailable.strip()
        if text.endswith("%"):
            unavailable = recorded_replicas * int(text[:-1]) // 100
        else:
            unavailable = int(text)
    else:
        unavailable = int(max_unavailable)
    return max(1, recorded_replicas - unavailable)


def hold_of(body: dict[str, Any]) -> str | None:
    """The documented hold a rollout is in (``Paused``, ``InvalidSpec``, ``UnreadableStatus``), or None."""
    status = body.get("status") or {}
    if status.get("phase") == "Paused" or (body.get("spec") or {}).get("paused") is True:
        return "Paused"
    for c in status.get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "False" and c.get("reason") in HOLD_REASONS:
            return str(c["reason"])
    return None


def critical_conditions(status: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(c.get("name")) for c in ((status.get("risk") or {}).get("conditions") or []) if c.get("critical"))


def operator_status(status: dict[str, Any] | None) -> dict[str, Any]:
    """The status as the operator writes it (kopf's own bookkeeping dropped)."""
    return {k: v for k, v in (status or {}).items() if k != "kopf"}


@dataclass(frozen=True, slots=True)
class RolloutSample:
    at: float                      # monotonic seconds (time.monotonic())
    phase: str | None
    revision: str | None
    step: int | None
    weight: int | None
    record_replicas: int | None
    bound: int | None
    stable_ready: int
    canary_ready: int
    stable_replicas: int | None
    canary_replicas: int | None
    critical: tuple[str, ...] = ()
    hold: str | None = None
    restore: str | None = None     # after RolledBack: what differs from the record, "" when exact

    @property
    def serving(self) -> int:
        return self.stable_ready + self.canary_ready

    def line(self, origin: float = 0.0) -> str:
        rec = f"record {self.record_replicas} bound {self.bound}" if self.record_replicas is not None else "no record"
        extra = f" critical={','.join(self.critical)}" if self.critical else ""
        extra += f" hold={self.hold}" if self.hold else ""
        extra += f" restore: {self.restore}" if self.restore else ""
        return (f"t={self.at - origin:8.2f}s {self.phase or '-':<12} step {self.step} w {self.weight}% "
                f"stable {self.stable_ready}/{self.stable_replicas} canary {self.canary_ready}/{self.canary_replicas} "
                f"serving {self.serving} ({rec}){extra}")


@dataclass
class Violation:
    invariant: str                 # "a" | "b" | "c" | "d"
    rollout: str                   # namespace/name
    first_at: float
    last_at: float
    detail: str
    lifecycle: str = ""            # what the rollout was doing (the chaos runner's label)
    samples: int = 1
    context: list[RolloutSample] = field(default_factory=list)
    kills: list[tuple[float, str]] = field(default_factory=list)  # (when, phase) of kills shortly before

    def report(self, origin: float = 0.0) -> str:
        head = (f"VIOLATION ({self.invariant}) {INVARIANTS.get(self.invariant, '')}: {self.rollout} {self.lifecycle} "
                f"from t={self.first_at - origin:.2f}s to t={self.last_at - origin:.2f}s ({self.samples} samples): "
                f"{self.detail}")
        lines = [head]
        for when, phase in self.kills:
            lines.append(f"    kill at t={when - origin:.2f}s (phase seen before it: {phase})")
        lines += ["    " + s.line(origin) for s in self.context]
        return "\n".join(lines)


@dataclass
class Lifecycle:
    """What the driver of a rollout expects of its current run (for (c) and (d))."""

    label: str
    budget_seconds: float
    before_template: dict[str, Any] | None = None
    before_replicas: int | None = None


class RolloutMonitor:
    """Samples one ModelRollout, its stable and its canary every ``interval`` s in a thread.

    ``api_client`` should be this monitor's own (one per thread). ``downtime`` answers
    the seconds the operator was down (or restarting) between two monotonic instants,
    so the time budget (c) excludes them. ``mark_kill`` starts a recovery measurement:
    the time until the status the operator writes next differs from the one at the kill.
    """

    GROUP, VERSION, PLURAL = "modelrollout.io", "v1alpha1", "modelrollouts"
    CONTEXT = 12                   # samples kept before a violation's first one

    def __init__(self, api_client: Any, namespace: str, name: str, stable: str, *, interval: float = 0.25,
                 downtime: Any = None, on_violation: Any = None, keep_samples: int = 20000) -> None:
        from kubernetes import client as k8s

        self.namespace, self.name, self.stable = namespace, name, stable
        self.interval = interval
        self.origin = time.monotonic()   # t=0 of the times this monitor prints
        self._custom = k8s.CustomObjectsApi(api_client)
        self._apps = k8s.AppsV1Api(api_client)
        self._downtime = downtime or (lambda t0, t1: 0.0)
        self._on_violation = on_violation
        self.samples: list[RolloutSample] = []
        self._keep = keep_samples
        self.violations: list[Violation] = []
        self.errors: list[str] = []
        self.recoveries: list[tuple[float, float, str, str]] = []  # (kill time, seconds, phase before, lifecycle)
        self.interrupted = 0                              # kills followed by another before any write
        self._open: dict[str, Violation] = {}
        # What was checked, so a clean run shows it looked: samples per invariant, the
        # closest approach to the serving bound, the largest share of a time budget used.
        self.stats: dict[str, Any] = {"a_checked": 0, "a_checked_Promoting": 0, "a_checked_RollingBack": 0,
                                      "a_margin": None, "a_margin_at": "", "a_at_bound": 0, "b_checked": 0,
                                      "c_checked": 0, "c_worst_ratio": 0.0, "c_worst": "", "d_checked": 0}
        self._lifecycle: Lifecycle | None = None
        self._active_since: float | None = None
        self._hold_time = 0.0
        # A kill awaiting recovery: (when, phase before it, status after it, the Deployments'
        # generations at the first sample after it).
        self._pending: tuple[float, str, dict[str, Any], tuple[Any, Any] | None] | None = None
        self._kills: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    # -- driven by the runner
    def expect(self, lifecycle: Lifecycle) -> None:
        with self._lock:
            self._lifecycle = lifecycle
            self._active_since = None

    def mark_kill(self, at: float, phase_before: str, status_after: dict[str, Any] | None) -> None:
        """A SIGKILL at ``at``; ``status_after`` read once the process was gone."""
        with self._lock:
            self._kills.append((at, phase_before))
            if self._pending is not None:
                self.interrupted += 1
                self._pending = None
            phase = (status_after or {}).get("phase")
            if status_after is not None and phase not in TERMINAL_PHASES and hold_of({"status": status_after}) is None:
                self._pending = (at, phase_before, operator_status(status_after), None)

    @property
    def kills(self) -> list[tuple[float, str]]:
        """(when, phase seen before it) of every kill marked so far."""
        with self._lock:
            return list(self._kills)

    def pending_recovery(self) -> bool:
        return self._pending is not None

    def start(self) -> "RolloutMonitor":
        self._thread = threading.Thread(target=self._run, name=f"rollout-monitor-{self.key}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            self._open.clear()

    # -- sampling
    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.sample_once()
            except Exception as exc:  # noqa: BLE001 - reported, never a silent gap
                self.errors.append(f"{t0:.2f}: {type(exc).__name__}: {exc}")
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def _read(self) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
        import json as _json

        try:
            body = self._custom.get_namespaced_custom_object(self.GROUP, self.VERSION, self.namespace, self.PLURAL,
                                                            self.name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = None
        # One list: both Deployments from the same consistent read.
        raw = self._apps.list_namespaced_deployment(self.namespace, _preload_content=False, _request_timeout=10)
        deployments = {d["metadata"]["name"]: d for d in _json.loads(raw.data)["items"]}
        return body, deployments

    def sample_once(self) -> RolloutSample | None:
        body, deployments = self._read()
        at = time.monotonic()
        if body is None:
            return None
        return self.observe(body, deployments, at)

    def observe(self, body: dict[str, Any], deployments: dict[str, dict[str, Any]], at: float) -> RolloutSample:
        """Judge one observation (public so the checks can be driven without a cluster)."""
        status = body.get("status") or {}
        spec = body.get("spec") or {}
        phase = status.get("phase")
        canary_name = (spec.get("canary") or {}).get("deployment")
        stable = deployments.get(self.stable)
        canary = deployments.get(canary_name) if canary_name else None

        def ready(dep: dict[str, Any] | None) -> int:
            return int(((dep or {}).get("status") or {}).get("availableReplicas") or 0)

        def generation(dep: dict[str, Any] | None) -> Any:
            meta = (dep or {}).get("metadata") or {}
            return None if dep is None else (meta.get("generation"), meta.get("uid"))

        def replicas(dep: dict[str, Any] | None) -> int | None:
            return None if dep is None else int((dep.get("spec") or {}).get("replicas") or 0)

        record = status.get("stableRecord") or None
        record_replicas = int(record["replicas"]) if record and record.get("replicas") is not None else None
        max_unavailable = (spec.get("promotion") or {}).get("maxUnavailable", "25%")
        bound = serving_bound(record_replicas, max_unavailable) if record_replicas is not None else None
        with self._lock:
            lifecycle = self._lifecycle
        restore = None
        if phase == "RolledBack":
            restore = self._restore_problems(stable, record, lifecycle)
        sample = RolloutSample(
            at=at, phase=phase, revision=status.get("revision"), step=status.get("currentStep"),
            weight=status.get("canaryWeight"), record_replicas=record_replicas, bound=bound,
            stable_ready=ready(stable), canary_ready=ready(canary), stable_replicas=replicas(stable),
            canary_replicas=replicas(canary), critical=critical_conditions(status), hold=hold_of(body),
            restore=restore)
        with self._lock:
            self.samples.append(sample)
            if len(self.samples) > self._keep:
                del self.samples[: len(self.samples) - self._keep]
            self._recovery(status, (generation(stable), generation(canary)), at)
            self._judge(sample, lifecycle)
        return sample

    @staticmethod
    def _restore_problems(stable: dict[str, Any] | None, record: dict[str, Any] | None,
                          lifecycle: Lifecycle | None) -> str:
        if stable is None:
            return "the stable Deployment is gone"
        spec = stable.get("spec") or {}
        problems = []
        if record is None:
            problems.append("status.stableRecord is missing")
        else:
            if spec.get("template") != record.get("template"):
                problems.append("pod template != status.stableRecord.template")
            if int(spec.get("replicas") or 0) != int(record.get("replicas") or 0):
                problems.append(f"replicas {spec.get('replicas')} != recorded {record.get('replicas')}")
        if lifecycle is not None and lifecycle.before_template is not None:
            if spec.get("template") != lifecycle.before_template:
                problems.append("pod template != the template captured before the rollout")
            if lifecycle.before_replicas is not None and int(spec.get("replicas") or 0) != lifecycle.before_replicas:
                problems.append(f"replicas {spec.get('replicas')} != {lifecycle.before_replicas} before the rollout")
        return "; ".join(problems)

    def _recovery(self, status: dict[str, Any], generations: tuple[Any, Any], at: float) -> None:
        """Recovered: the restarted operator wrote the status, or changed a Deployment's spec
        (a new generation): "it made progress" when a phased action runs without a status write."""
        if self._pending is None:
            return
        killed_at, phase, before, gens = self._pending
        if operator_status(status) != before or (gens is not None and generations != gens):
            self.recoveries.append((killed_at, at - killed_at, phase,
                                    self._lifecycle.label if self._lifecycle else ""))
            self._pending = None
        elif gens is None:
            self._pending = (killed_at, phase, before, generations)

    def _judge(self, s: RolloutSample, lifecycle: Lifecycle | None) -> None:
        found: dict[str, str] = {}
        st = self.stats
        # (a)
        if s.bound is not None and s.phase is not None:
            st["a_checked"] += 1
            margin = s.serving - s.bound
            if st["a_margin"] is None or margin < st["a_margin"]:
                st["a_margin"], st["a_margin_at"] = margin, s.line(self.origin)
            if margin == 0:
                st["a_at_bound"] += 1
            if s.phase in ("Promoting", "RollingBack"):
                st["a_checked_" + s.phase] += 1
        if s.bound is not None and s.phase is not None and (s.serving < s.bound or s.serving == 0):
            found["a"] = f"{s.serving} ready serving pods < bound {s.bound} (record {s.record_replicas})"
        # (b)
        if s.phase == "Promoting":
            st["b_checked"] += 1
        if s.phase == "Promoting" and s.critical:
            found["b"] = f"phase Promoting with critical condition(s) {', '.join(s.critical)}"
        # (c)
        previous = self.samples[-2] if len(self.samples) >= 2 else None
        active = s.phase is not None and s.phase not in TERMINAL_PHASES
        if not active:
            self._active_since = None
        elif self._active_since is None or (previous is not None and previous.revision != s.revision):
            self._active_since = s.at
            self._hold_time = 0.0
        if active and s.hold and previous is not None:
            self._hold_time += s.at - previous.at
        if active and not s.hold and self._active_since is not None:
            budget = lifecycle.budget_seconds if lifecycle else 300.0
            allowed = budget + self._hold_time + self._downtime(self._active_since, s.at)
            elapsed = s.at - self._active_since
            st["c_checked"] += 1
            if elapsed / allowed > st["c_worst_ratio"]:
                st["c_worst_ratio"] = elapsed / allowed
                st["c_worst"] = f"{elapsed:.0f}s of {allowed:.0f}s allowed ({lifecycle.label if lifecycle else ''})"
            if elapsed > allowed:
                found["c"] = (f"{s.phase} for {elapsed:.0f}s, over its budget of {allowed:.0f}s "
                              f"({budget:.0f}s + operator downtime and holds)")
        # (d)
        if s.restore is not None:
            st["d_checked"] += 1
        if s.restore:
            found["d"] = s.restore
        for key in list(self._open):
            if key not in found:
                del self._open[key]          # the episode ended
        for key, detail in found.items():
            v = self._open.get(key)
            if v is not None:
                v.last_at = s.at
                v.samples += 1
                if len(v.context) < self.CONTEXT + 40:
                    v.context.append(s)
                continue
            v = Violation(invariant=key, rollout=self.key, first_at=s.at, last_at=s.at, detail=detail,
                          lifecycle=lifecycle.label if lifecycle else "",
                          context=list(self.samples[-self.CONTEXT:]),
                          kills=[k for k in self._kills if s.at - 30.0 <= k[0] <= s.at])
            self._open[key] = v
            self.violations.append(v)
            if self._on_violation is not None:
                try:
                    self._on_violation(v)
                except Exception:  # noqa: BLE001 - reporting must not stop sampling
                    pass
