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
