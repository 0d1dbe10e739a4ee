"""`make chaos`: SIGKILL the operator at random moments while rollouts run, and watch
the safety invariants continuously (docs/chaos.md).

Several rollouts run side by side, each in a namespace of its own, all watched by one
operator process (``--namespace`` repeated). Each namespace runs rollout after rollout
("lifecycles"), cycling through four kinds:

* ``healthy``            a healthy challenger: promoted (Succeeded);
* ``degraded``           the simulator makes the canary slow, inaccurate or erroring,
                         from the start or at the 50 % step: rolled back (RolledBack);
* ``promotion-failure``  a ValidatingAdmissionPolicy refuses the stable's pods of the
                         challenger image: Failed (PromotionFailed); the policy is
                         deleted and a ``retry`` command promotes it;
* ``manual``             steps of an hour, driven by commands only: ``promote`` (next
                         step), ``abort`` (RolledBack), ``retry``, ``promote-full``.

Meanwhile the main thread SIGKILLs the operator — at random moments, or right after a
rollout enters ``Promoting`` or ``RollingBack`` — and restarts it at once or after a
random 0–2 s. The operator runs as ``python -m e2e.harness.slow_operator run
--action-delay …`` (the real operator with a pause before each phased action), which
widens the phased actions so those moments are hit. A
:class:`~e2e.harness.invariants.RolloutMonitor` per rollout samples every 250 ms and
flags (a) ready serving pods below the bound, (b) a promotion while a condition is
critical, (c) a rollout past its time budget, (d) a stable not restored exactly after
RolledBack.

The last line is for scripts::

    chaos: K kills, F faults, R rollouts, V invariant violations, worst recovery S s

Exit status: 0 when V is 0 and the run did what was asked; 1 when V > 0; 2 when the run
fell short (fewer kills than asked within the budget, a rollout left unfinished, or an
error of the runner itself).

    python -m e2e.chaos [--kills 200] [--budget-seconds 1500] [--seed N] [--rollouts 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from e2e.harness.admission import refuse_challenger_on_stable
from e2e.harness.cluster import Cluster, state_dir
from e2e.harness.invariants import TERMINAL_PHASES, Lifecycle, RolloutMonitor, Violation
from e2e.harness.manifests import GROUP, PLURAL, VERSION, rollout_manifest
from e2e.harness.operator_process import SLOW_OPERATOR, OperatorProcess, delete_rollouts, install_crds

KINDS = ("healthy", "degraded", "promotion-failure", "manual")
EXPECTED = {"healthy": "Succeeded", "degraded": "RolledBack", "promotion-failure": "Succeeded", "manual": "Succeeded"}
# The order in which a kill is attributed to a phase when several rollouts run: the
# rarest, most delicate moments first.
PHASE_PRIORITY = ("Promoting", "RollingBack", "Initializing", "Progressing", "Paused", "Failed", "RolledBack",
                  "Succeeded", "Pending", "-")
DEGRADATIONS = (
    ("latency", {"latency_ms": {"median": 8.0, "p95": 14.0}}),
    ("accuracy", {"accuracy": 0.55}),
    ("errorRate", {"error_rates": {"serialization": 0.05}}),
)
TARGETS = ("Promoting", "RollingBack")
COMMAND = "modelrollout.io/command"
STABLE = "model"
STARTUP_ALLOWANCE = 6.0
"""Seconds after a restart counted as operator downtime in the time budget (start-up, resume)."""


@dataclass
class ChaosConfig:
    kills: int = 200
    budget_seconds: float = 25 * 60
    seed: int | None = None
    rollouts: int = 3
    replicas: int = 8
    action_delay: float = 0.7
    kinds: tuple[str, ...] = KINDS
    drain_seconds: float = 150.0
    """Time kept at the end of the budget for the running lifecycles to finish (operator alive)."""
    random_kill_share: float = 0.4
    """Share of kills at a random moment; the others wait (up to 10 s) for Promoting or RollingBack."""
    wait_recovery_share: float = 0.5
    """Share of kills that first wait for the last restart to have written a status (so rollouts advance)."""
    interval: float = 0.25
    prometheus_stall_every: tuple[float, float] | None = (40.0, 90.0)
    """Seconds between two Prometheus stalls (drawn uniformly), None for none: Prometheus is
    SIGSTOPped, so the operator's queries hang until their timeout, then SIGCONTed."""
    prometheus_stall_seconds: tuple[float, float] = (3.0, 8.0)


@dataclass
class LifecycleResult:
    namespace: str
    index: int
    kind: str
    detail: str
    expected: str
    outcome: str
    seconds: float
    kills: int
    why: str = ""
    """For RolledBack (or Failed): the trigger, path and reason the operator recorded."""


@dataclass
class ChaosResult:
    kills: int = 0
    kills_by_phase: Counter[str] = field(default_factory=Counter)
    kills_by_mode: Counter[str] = field(default_factory=Counter)
    kills_working: Counter[str] = field(default_factory=Counter)
    """By phase: kills of an operator that had recovered from the previous kill (written since its start)."""
    kills_starting: Counter[str] = field(default_factory=Counter)
    """By phase: kills of an operator still starting (nothing written since its start)."""
    uptimes: list[float] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    """What the monitors checked (RolloutMonitor.stats summed over the rollouts)."""
    kills_by_kind: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(phase attributed, kind of the lifecycle in that phase) -> kills."""
    episodes: dict[str, list[tuple[float, int, str]]] = field(default_factory=dict)
    """Phase -> (seconds spent in one stay, kills during it, where) from the monitor's samples."""
    rollout_phases_at_kills: Counter[str] = field(default_factory=Counter)
    faults: int = 0
    faults_by_kind: Counter[str] = field(default_factory=Counter)
    commands: Counter[str] = field(default_factory=Counter)
    lifecycles: list[LifecycleResult] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    recoveries: list[float] = field(default_factory=list)
    recoveries_by_phase: dict[str, list[float]] = field(default_factory=dict)
    recovery_details: list[tuple[float, str]] = field(default_factory=list)
    interrupted_recoveries: int = 0
    duration: float = 0.0
    problems: list[str] = field(default_factory=list)
    monitor_errors: int = 0
    samples: int = 0
    unexpected_exits: int = 0

    @property
    def rollouts(self) -> int:
        return len(self.lifecycles)

    @property
    def worst_recovery(self) -> float:
        return max(self.recoveries, default=0.0)

    def line(self) -> str:
        return (f"chaos: {self.kills} kills, {self.faults} faults, {self.rollouts} rollouts, "
                f"{len(self.violations)} invariant violations, worst recovery {self.worst_recovery:.1f} s")

    def exit_code(self, wanted_kills: int) -> int:
        if self.violations:
            return 1
        if self.problems or self.kills < wanted_kills:
            return 2
        return 0


class Log:
    def __init__(self, out: Callable[[str], None] | None = None) -> None:
        self.t0 = time.monotonic()
        self._out = out or (lambda s: print(s, flush=True))
        self._lock = threading.Lock()

    def __call__(self, message: str) -> None:
        with self._lock:
            self._out(f"[chaos {time.monotonic() - self.t0:7.1f}s] {message}")


# ----------------------------------------------------------------------------- the operator


class Operator:
    """One operator process for every namespace, and the record of when it was down."""

    def __init__(self, cluster: Cluster, namespaces: list[str], action_delay: float) -> None:
        extra: list[str] = []
        for ns in namespaces[1:]:
            extra += ["--namespace", ns]
        self.process = OperatorProcess(cluster, namespaces[0], *extra, "--action-delay", str(action_delay),
                                       name="chaos", module=SLOW_OPERATOR)
        self.action_delay = action_delay
        self.down: list[tuple[float, float]] = []   # (killed, restarted + allowance)
        self._lock = threading.Lock()

    def start(self) -> None:
        self.process.start()

    def kill(self) -> float:
        self.process.kill()
        return time.monotonic()

    def restarted(self, killed_at: float) -> None:
        with self._lock:
            self.down.append((killed_at, time.monotonic() + STARTUP_ALLOWANCE))

    def stalled(self, t0: float, t1: float) -> None:
        """Prometheus did not answer from t0 to t1: the rollouts held, as documented."""
        with self._lock:
            self.down.append((t0, t1 + STARTUP_ALLOWANCE))

    def downtime(self, t0: float, t1: float) -> float:
        with self._lock:
            intervals = list(self.down)
        return sum(max(0.0, min(b, t1) - max(a, t0)) for a, b in intervals)


# ----------------------------------------------------------------------------- one namespace


def stable_deployment(namespace: str, replicas: int) -> dict[str, Any]:
    """The champion: 1 GPU a pod, a small CPU request so chaos never starves other tests' pods."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": STABLE, "namespace": namespace, "labels": {"app": STABLE}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": STABLE}},
            "template": {
                "metadata": {"labels": {"app": STABLE}},
                "spec": {"containers": [{
                    "name": "server", "image": "registry.example/model:v1",
                    "resources": {"limits": {"nvidia.com/gpu": "1", "cpu": "100m", "memory": "256Mi"},
                                  "requests": {"nvidia.com/gpu": "1", "cpu": "100m", "memory": "256Mi"}},
                }]},
            },
        },
    }


class SlotStopped(Exception):
    pass


class Slot:
    """One namespace, one ModelRollout, its lifecycles run one after the other in a thread."""

    def __init__(self, runner: "ChaosRun", index: int, namespace: str) -> None:
        self.runner = runner
        self.index = index
        self.namespace = namespace
        self.cluster = runner.cluster
        self.api = k8s_config.new_client_from_config(config_file=runner.cluster.kubeconfig)
        self.custom = k8s.CustomObjectsApi(self.api)
        self.apps = k8s.AppsV1Api(self.api)
        self.core = k8s.CoreV1Api(self.api)
        self.rng = random.Random(runner.rng.random())
        self.monitor: RolloutMonitor | None = None
        self.thread: threading.Thread | None = None
        self.current = ""
        self.kind = ""
        self.policy: list[dict[str, Any]] = []
        self.old_canaries: list[str] = []
        self.old_revision: str | None = None

    # -- setup
    def setup(self) -> None:
        self.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(
            name=self.namespace, labels={"modelrollout.io/e2e": "true", "modelrollout.io/chaos": "true"})))
        self.cluster.wait_for(lambda: self.core.read_namespaced_service_account("default", self.namespace),
                              timeout=30, message=f"default ServiceAccount in {self.namespace}")
        self.cluster.apply(stable_deployment(self.namespace, self.runner.config.replicas))
        self.cluster.wait_for(lambda: self.cluster.deployment_available(self.namespace, STABLE,
                                                                        self.runner.config.replicas),
                              timeout=90, message=f"{self.namespace}/{STABLE} available")

    # -- reads and writes
    def body(self) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, STABLE)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def status(self) -> dict[str, Any]:
        return (self.body() or {}).get("status") or {}

    def stable_raw(self) -> dict[str, Any]:
        resp = self.apps.read_namespaced_deployment(STABLE, self.namespace, _preload_content=False)
        return json.loads(resp.data)

    def command(self, kind: str, lifecycle: int, seq: int) -> None:
        value = f"{kind}@chaos-{lifecycle}-{seq}"
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, STABLE,
                                                   {"metadata": {"annotations": {COMMAND: value}}})
        self.runner.count_command(kind)
        self.runner.log(f"{self.namespace} #{lifecycle}: command {value}")

    def wait(self, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str,
             stop_early: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        """Poll the status of the current lifecycle's revision (the previous one's terminal
        phase does not count); the timeout is stretched by the operator's downtime meanwhile."""
        start = time.monotonic()
        last: dict[str, Any] = {}
        while True:
            if self.runner.aborted.is_set():
                raise SlotStopped("run aborted")
            try:
                last = self.status()
                fresh = last.get("revision") is not None and last.get("revision") != self.old_revision
                if fresh and (predicate(last) or (stop_early is not None and stop_early(last))):
                    return last
            except ApiException as exc:
                self.runner.log(f"{self.namespace}: read failed ({exc.status}), retrying")
            now = time.monotonic()
            if now - start > timeout + self.runner.operator.downtime(start, now):
                raise TimeoutError(f"{self.namespace}: no {what} within {timeout:.0f}s (+ operator downtime); "
                                   f"phase {last.get('phase')}, message: {str(last.get('message'))[:200]}")
            time.sleep(0.2)

    def wait_terminal(self, timeout: float) -> dict[str, Any]:
        return self.wait(lambda s: s.get("phase") in TERMINAL_PHASES, timeout, "terminal phase")

    def settled(self) -> None:
        """The stable serves all its pods before a lifecycle starts (what "before" is captured from)."""
        total = self.runner.config.replicas

        def ok() -> bool:
            dep = self.stable_raw()
            st = dep.get("status") or {}
            return (int(dep["spec"].get("replicas") or 0) == total and int(st.get("availableReplicas") or 0) == total
                    and int(st.get("updatedReplicas") or 0) == total
                    and int(st.get("observedGeneration") or 0) >= int(dep["metadata"].get("generation") or 0))
        self.cluster.wait_for(ok, timeout=90, message=f"{self.namespace}/{STABLE} settled at {total} pods")

    # -- policy (promotion-failure)
    def probe_refused(self, image: str) -> bool:
        probe = {"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": "probe", "namespace": self.namespace, "labels": {"app": STABLE}},
                 "spec": {"containers": [{"name": "server", "image": image}]}}
        try:
            self.core.create_namespaced_pod(self.namespace, probe, dry_run="All")
        except ApiException as exc:
            return "cannot run" in str(exc.body or exc)
        return False

    def refuse(self, image: str) -> None:
        self.policy = refuse_challenger_on_stable(self.namespace, STABLE, image)
        self.cluster.apply(self.policy)
        self.cluster.wait_for(lambda: self.probe_refused(image), timeout=60,
                              message="the admission policy to refuse the challenger on the stable")

    def allow(self, image: str) -> None:
        for obj in self.policy:
            self.cluster.delete(obj["kind"], obj["metadata"]["name"])
        self.policy = []
        self.cluster.wait_for(lambda: not self.probe_refused(image), timeout=60,
                              message="the admission policy to be gone")

    # -- lifecycles
    def run(self) -> None:
        k = 0
        try:
            while not self.runner.stop_new.is_set() and not self.runner.aborted.is_set():
                kind = self.runner.config.kinds[(self.index + k) % len(self.runner.config.kinds)]
                self.lifecycle(kind, self.runner.next_lifecycle())
                k += 1
        except SlotStopped:
            pass
        except Exception as exc:  # noqa: BLE001 - reported as a problem of the run, the others go on
            self.runner.problem(f"{self.namespace} ({self.current}): {type(exc).__name__}: {exc}")

    def lifecycle(self, kind: str, n: int) -> None:
        canary = f"{STABLE}-c{n}"
        image = f"registry.example/model:v{n}"
        self.settled()
        before = self.stable_raw()
        steps = [{"weight": 25, "duration": "8s"}, {"weight": 50, "duration": "8s"}, {"weight": 100, "duration": "8s"}]
        analysis: dict[str, Any] = {"progressDeadlineSeconds": 30}
        detail = ""
        behaviour: dict[str, Any] | None = None
        degrade_at_step = False
        if kind == "degraded":
            steps = [{"weight": 25, "duration": "10s"}, {"weight": 50, "duration": "10s"},
                     {"weight": 100, "duration": "10s"}]
            name, behaviour = self.rng.choice(DEGRADATIONS)
            degrade_at_step = self.rng.random() < 0.5
            detail = f"{name} {'at 50%' if degrade_at_step else 'from the start'}"
        elif kind == "promotion-failure":
            analysis = {"progressDeadlineSeconds": 12}
            detail = "stable refuses the challenger, then retry"
        elif kind == "manual":
            steps = [{"weight": 25, "duration": "1h"}, {"weight": 50, "duration": "1h"},
                     {"weight": 100, "duration": "1h"}]
            detail = "promote, abort, retry, promote-full"
        budget = {"healthy": 150.0, "degraded": 120.0, "promotion-failure": 150.0, "manual": 150.0}[kind]
        label = f"#{n} {kind}" + (f" ({detail})" if detail else "")
        self.current = label
        self.kind = kind
        assert self.monitor is not None
        self.monitor.expect(Lifecycle(label=label, budget_seconds=budget, before_template=before["spec"]["template"],
                                      before_replicas=int(before["spec"]["replicas"])))
        self.cluster.simulator.register_service(STABLE, self.namespace, stable=STABLE, canary=canary,
                                                router="replicas", rps=4000.0)
        if behaviour is not None and not degrade_at_step:
            self.cluster.simulator.set_behaviour(self.namespace, canary, **behaviour)
            self.runner.count_fault(f"degraded:{detail.split()[0]}")
        if kind == "promotion-failure":
            self.refuse(image)
            self.runner.count_fault("admission-refusal")
        self.old_revision = self.status().get("revision")
        kills_before = self.runner.kills
        started = time.monotonic()
        self.runner.log(f"{self.namespace} {label}: start ({image}, canary {canary})")
        self.cluster.apply(rollout_manifest(STABLE, self.namespace, stable=STABLE, canary=canary, image=image, gpus=1,
                                            steps=steps, analysis=analysis))
        outcome = "?"
        try:
            if kind == "degraded":
                if degrade_at_step:
                    self.wait(lambda s: (s.get("canaryWeight") or 0) >= 50 and s.get("phase") == "Progressing"
                              and s.get("risk") is not None, 120, "the 50% step",
                              stop_early=lambda s: s.get("phase") in TERMINAL_PHASES)
                    self.cluster.simulator.set_behaviour(self.namespace, canary, **behaviour)
                    self.runner.count_fault(f"degraded:{detail.split()[0]}")
                    self.runner.log(f"{self.namespace} {label}: canary degraded")
                outcome = self.wait_terminal(180)["phase"]
            elif kind == "healthy":
                outcome = self.wait_terminal(180)["phase"]
            elif kind == "promotion-failure":
                outcome = self.wait_terminal(180)["phase"]
                self.runner.log(f"{self.namespace} {label}: {outcome} (expected Failed)")
                if outcome != "Failed":
                    self.runner.unexpected(f"{self.namespace} {label}: {outcome} with the refusal in place")
                self.allow(image)
                attempt = 0
                while outcome == "Failed" and attempt < 3:
                    attempt += 1
                    self.command("retry", n, attempt)
                    self.wait(lambda s: s.get("phase") not in TERMINAL_PHASES
                              or s.get("lastCommand") == f"retry@chaos-{n}-{attempt}", 90, "retry taken")
                    outcome = self.wait_terminal(180)["phase"]
            elif kind == "manual":
                self.wait(lambda s: s.get("phase") == "Progressing" and s.get("canaryWeight") == 25, 90,
                          "the first step")
                self.command("promote", n, 1)
                self.wait(lambda s: (s.get("currentStep") or 0) >= 1 or s.get("phase") != "Progressing", 90,
                          "the second step")
                self.command("abort", n, 2)
                aborted = self.wait_terminal(90)["phase"]
                self.runner.log(f"{self.namespace} {label}: {aborted} after abort (expected RolledBack)")
                if aborted != "RolledBack":
                    self.runner.unexpected(f"{self.namespace} {label}: {aborted} after abort")
                self.command("retry", n, 3)
                self.wait(lambda s: s.get("phase") == "Progressing" and s.get("lastCommand") == f"retry@chaos-{n}-3",
                          90, "Progressing after retry", stop_early=lambda s: s.get("lastCommand") ==
                          f"retry@chaos-{n}-3" and s.get("phase") in TERMINAL_PHASES)
                self.command("promote-full", n, 4)
                outcome = self.wait_terminal(180)["phase"]
        finally:
            if behaviour is not None:
                try:
                    self.cluster.simulator.clear_behaviour(self.namespace, canary)
                except Exception:  # noqa: BLE001 - the canary is not used again
                    pass
            if self.policy:
                try:
                    self.allow(image)
                except Exception:  # noqa: BLE001
                    pass
        seconds = time.monotonic() - started
        kills = self.runner.kills - kills_before
        why = ""
        if outcome in ("RolledBack", "Failed"):
            final = self.status()
            rollback = final.get("rollback") or {}
            why = (f"{rollback.get('trigger')} ({rollback.get('path')}): {rollback.get('reason')}"
                   if outcome == "RolledBack" else str(final.get("message")))[:240]
        result = LifecycleResult(self.namespace, n, kind, detail, EXPECTED[kind], outcome, seconds, kills, why)
        self.runner.finished(result)
        # The previous lifecycle's canary (0 pods, no longer named by the rollout) can go.
        for old in self.old_canaries:
            try:
                dep = self.apps.read_namespaced_deployment(old, self.namespace)
                if int(dep.spec.replicas or 0) == 0:
                    self.apps.delete_namespaced_deployment(old, self.namespace)
            except ApiException:
                pass
        self.old_canaries = [canary]


# ----------------------------------------------------------------------------- the run


class ChaosRun:
    def __init__(self, cluster: Cluster, config: ChaosConfig, out: Callable[[str], None] | None = None) -> None:
        self.cluster = cluster
        self.config = config
        self.seed = config.seed if config.seed is not None else random.SystemRandom().randrange(1 << 31)
        self.rng = random.Random(self.seed)
        self.log = Log(out)
        self.result = ChaosResult()
        self.stop_new = threading.Event()
        self.aborted = threading.Event()
        self._lock = threading.Lock()
        self._lifecycle = 1
        self.kills = 0
        self.started_at = time.monotonic()
        run_id = uuid.uuid4().hex[:5]
        self.namespaces = [f"chaos-{run_id}-{i}" for i in range(config.rollouts)]
        self.slots: list[Slot] = []
        self.operator = Operator(cluster, self.namespaces, config.action_delay)
        self.api = k8s_config.new_client_from_config(config_file=cluster.kubeconfig)
        self.custom = k8s.CustomObjectsApi(self.api)

    # -- bookkeeping used by the slots
    def next_lifecycle(self) -> int:
        with self._lock:
            self._lifecycle += 1
            return self._lifecycle

    def count_fault(self, kind: str) -> None:
        with self._lock:
            self.result.faults += 1
            self.result.faults_by_kind[kind] += 1

    def count_command(self, kind: str) -> None:
        with self._lock:
            self.result.commands[kind] += 1

    def problem(self, text: str) -> None:
        with self._lock:
            self.result.problems.append(text)
        self.log(f"PROBLEM {text}")

    def unexpected(self, text: str) -> None:
        self.log(f"unexpected outcome (not an invariant): {text}")

    def finished(self, r: LifecycleResult) -> None:
        with self._lock:
            self.result.lifecycles.append(r)
        mark = "ok" if r.outcome == r.expected else "UNEXPECTED"
        why = f" [{r.why}]" if r.why and r.outcome != r.expected else ""
        self.log(f"{r.namespace} #{r.index} {r.kind}: {r.outcome} in {r.seconds:.0f}s with {r.kills} kills "
                 f"(expected {r.expected}: {mark}){why}; {len(self.result.lifecycles)} rollouts done")

    def on_violation(self, v: Violation) -> None:
        self.log(v.report(self.log.t0))

    # -- the run
    def run(self) -> ChaosResult:
        cfg = self.config
        t0 = time.monotonic()
        deadline = t0 + cfg.budget_seconds
        self.log(f"seed {self.seed}; {cfg.rollouts} rollouts in {', '.join(self.namespaces)}; {cfg.kills} kills; "
                 f"budget {cfg.budget_seconds:.0f}s; action delay {cfg.action_delay}s; "
                 f"operator log {self.operator.process.log_path}")
        try:
            install_crds(self.cluster)
            for i, ns in enumerate(self.namespaces):
                slot = Slot(self, i, ns)
                self.slots.append(slot)
                slot.setup()
            self.operator.start()
            self.started_at = time.monotonic()
            for slot in self.slots:
                slot.monitor = RolloutMonitor(k8s_config.new_client_from_config(config_file=self.cluster.kubeconfig),
                                              slot.namespace, STABLE, STABLE, interval=cfg.interval,
                                              downtime=self.operator.downtime, on_violation=self.on_violation)
                slot.monitor.origin = self.log.t0
                slot.monitor.start()
                slot.thread = threading.Thread(target=slot.run, name=f"slot-{slot.namespace}", daemon=True)
                slot.thread.start()
            stalls = threading.Thread(target=self.prometheus_stalls, args=(deadline - cfg.drain_seconds,),
                                      name="prometheus-stalls", daemon=True)
            stalls.start()
            self.kill_loop(min(deadline - cfg.drain_seconds, deadline))
            self.stop_new.set()
            stalls.join(timeout=15)
            self.drain(deadline)
        except KeyboardInterrupt:
            self.problem("interrupted")
            self.aborted.set()
        except Exception as exc:  # noqa: BLE001 - the run ends with what it has, and cleans up
            self.problem(f"runner: {type(exc).__name__}: {exc}")
            self.aborted.set()
        finally:
            self.stop_new.set()
            self.finish()
            self.cleanup()
            self.result.duration = time.monotonic() - t0
        return self.result

    def phases(self) -> dict[str, dict[str, Any]]:
        """Each namespace's rollout status, read now (an empty dict when absent)."""
        out = {}
        for ns in self.namespaces:
            try:
                body = self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, STABLE)
                out[ns] = body.get("status") or {}
            except ApiException:
                out[ns] = {}
        return out

    def kill_loop(self, kill_deadline: float) -> None:
        cfg = self.config
        rng = self.rng
        while self.kills < cfg.kills and time.monotonic() < kill_deadline and not self.aborted.is_set():
            if not any(s.thread and s.thread.is_alive() for s in self.slots):
                self.problem("every rollout driver stopped: no more kills")
                return
            if not self.operator.process.alive():
                self.result.unexpected_exits += 1
                self.problem(f"the operator exited by itself (exit {self.operator.process.proc.returncode}); "
                             "restarted")
                self.operator.start()
            mode = "random" if rng.random() < cfg.random_kill_share else "targeted"
            # Let the last restart recover first (it has written a status or moved a Deployment):
            # always before a targeted kill — a process still importing is not "in the
            # handover" — and most of the time before a random one, so rollouts move on.
            if mode == "targeted" or rng.random() < cfg.wait_recovery_share:
                self.wait_until(self.recovered, 20.0, kill_deadline)
            if mode == "random":
                self.sleep_until(time.monotonic() + rng.uniform(0.3, 4.0), kill_deadline)
            else:
                # Right after a rollout enters the promotion handover or a rollback phase; the
                # rarer rollback phases alone while they trail the handover by half.
                targets = TARGETS
                if self.result.kills_by_phase["RollingBack"] * 2 < self.result.kills_by_phase["Promoting"]:
                    targets = ("RollingBack",)

                def in_target() -> bool:
                    return any(s.monitor is not None and s.monitor.samples and s.monitor.samples[-1].phase in targets
                               for s in self.slots)
                hit = self.wait_until(in_target, 10.0, kill_deadline, poll=0.05)
                if not hit and targets != TARGETS:
                    targets = TARGETS
                    hit = self.wait_until(in_target, 5.0, kill_deadline, poll=0.05)
                if hit:
                    time.sleep(rng.uniform(0.0, 0.5))
                else:
                    mode = "targeted-timeout"
            if time.monotonic() >= kill_deadline or self.aborted.is_set():
                return
            working = self.recovered()
            uptime = time.monotonic() - self.started_at
            before = self.phases()
            per_rollout = {ns: before[ns].get("phase") or "-" for ns in self.namespaces}
            attributed = min(per_rollout.values(), key=lambda p: PHASE_PRIORITY.index(p)
                             if p in PHASE_PRIORITY else len(PHASE_PRIORITY))
            kinds_there = sorted({s.kind for s in self.slots if per_rollout[s.namespace] == attributed})
            killed_at = self.operator.kill()
            self.kills += 1
            after = self.phases()
            for slot in self.slots:
                if slot.monitor is not None:
                    slot.monitor.mark_kill(killed_at, per_rollout[slot.namespace], after.get(slot.namespace))
            with self._lock:
                self.result.kills = self.kills
                self.result.kills_by_phase[attributed] += 1
                self.result.kills_by_mode[mode] += 1
                for kind in kinds_there:
                    self.result.kills_by_kind[(attributed, kind)] += 1
                (self.result.kills_working if working else self.result.kills_starting)[attributed] += 1
                self.result.uptimes.append(uptime)
                for p in per_rollout.values():
                    self.result.rollout_phases_at_kills[p] += 1
            delay = 0.0 if rng.random() < 0.5 else rng.uniform(0.0, 2.0)
            if delay:
                time.sleep(delay)
            self.operator.start()
            self.started_at = time.monotonic()
            self.operator.restarted(killed_at)
            detail = ", ".join(f"{ns.rsplit('-', 1)[1]}:{p}"
                               + (f"/{before[ns].get('canaryWeight')}%" if p == "Progressing" else "")
                               + (f"/phase{(before[ns].get('rollback') or {}).get('completedPhase')}"
                                  if p == "RollingBack" else "")
                               + (f"/batch{(before[ns].get('promotion') or {}).get('batch')}"
                                  if p == "Promoting" else "")
                               for ns, p in per_rollout.items())
            state = "working" if working else "starting"
            self.log(f"kill {self.kills}/{cfg.kills} in {attributed} ({mode}; operator up {uptime:.1f}s, {state}; "
                     f"{detail}); restart after {delay:.1f}s")
        if self.kills < cfg.kills:
            self.problem(f"only {self.kills} of {cfg.kills} kills fitted in the budget")

    def prometheus_stalls(self, until: float) -> None:
        """Now and then Prometheus stops answering for a few seconds (SIGSTOP, then SIGCONT):
        a slow or unreachable metrics source, at random moments relative to the kills. The
        rollout must hold (never advance or promote on no answer) and its budget is stretched
        by the stall like by the operator's downtime."""
        cfg = self.config
        if cfg.prometheus_stall_every is None:
            return
        pid_file = self.cluster.state / "pids" / "prometheus.pid"
        rng = random.Random(self.seed + 1)  # its own stream: the kills' draws stay as they were
        while not self.aborted.is_set() and not self.stop_new.is_set():
            at = time.monotonic() + rng.uniform(*cfg.prometheus_stall_every)
            while time.monotonic() < min(at, until) and not (self.aborted.is_set() or self.stop_new.is_set()):
                time.sleep(0.25)
            if time.monotonic() >= until or self.aborted.is_set() or self.stop_new.is_set():
                return
            seconds = rng.uniform(*cfg.prometheus_stall_seconds)
            try:
                pid = int(pid_file.read_text().strip())
            except (OSError, ValueError) as exc:
                self.problem(f"prometheus stall: no pid ({exc})")
                return
            stalled_at = time.monotonic()
            os.kill(pid, signal.SIGSTOP)
            try:
                self.count_fault("prometheus-stall")
                time.sleep(seconds)
            finally:
                os.kill(pid, signal.SIGCONT)
            self.operator.stalled(stalled_at, time.monotonic())
            self.log(f"prometheus stalled for {seconds:.1f}s")

    def recovered(self) -> bool:
        """The operator started last has shown it works: no rollout still awaits its recovery."""
        return not any(s.monitor is not None and s.monitor.pending_recovery() for s in self.slots)

    def wait_until(self, predicate: Callable[[], bool], timeout: float, hard_deadline: float,
                   poll: float = 0.25) -> bool:
        end = min(time.monotonic() + timeout, hard_deadline)
        while time.monotonic() < end and not self.aborted.is_set():
            try:
                if predicate():
                    return True
            except Exception:  # noqa: BLE001 - a failed read is "not yet"
                pass
            time.sleep(poll)
        return False

    def sleep_until(self, when: float, hard_deadline: float) -> None:
        time.sleep(max(0.0, min(when, hard_deadline) - time.monotonic()))

    def drain(self, deadline: float) -> None:
        if not self.operator.process.alive():
            self.operator.start()
        self.log(f"{self.kills} kills done: letting the running rollouts finish (up to "
                 f"{max(0.0, deadline - time.monotonic()):.0f}s)")
        for slot in self.slots:
            if slot.thread is not None:
                slot.thread.join(timeout=max(1.0, deadline - time.monotonic()))
                if slot.thread.is_alive():
                    self.problem(f"{slot.namespace} ({slot.current}) did not finish within the budget")

    def finish(self) -> None:
        self.aborted.set()  # any slot still waiting gives up now
        for slot in self.slots:
            if slot.thread is not None:
                slot.thread.join(timeout=15)
        for slot in self.slots:
            m = slot.monitor
            if m is None:
                continue
            m.stop()
            self.result.violations.extend(m.violations)
            self.result.recoveries.extend(seconds for _, seconds, _, _ in m.recoveries)
            for killed_at, seconds, phase, label in m.recoveries:
                self.result.recoveries_by_phase.setdefault(phase, []).append(seconds)
                self.result.recovery_details.append(
                    (seconds, f"{slot.namespace} {label}: killed at t={killed_at - self.log.t0:.1f}s in {phase}"))
            self.result.interrupted_recoveries += m.interrupted
            self.result.monitor_errors += len(m.errors)
            self.result.samples += len(m.samples)
            if m.errors:
                self.log(f"{slot.namespace}: {len(m.errors)} monitor reads failed, first: {m.errors[0]}")
            for key, value in m.stats.items():
                agg = self.result.checks
                if key.endswith("_margin"):
                    if value is not None and (agg.get(key) is None or value < agg[key]):
                        agg[key], agg[key + "_at"] = value, f"{slot.namespace} {m.stats[key + '_at']}"
                elif key == "c_worst_ratio":
                    if value > agg.get(key, 0.0):
                        agg[key], agg["c_worst"] = value, f"{slot.namespace} {m.stats['c_worst']}"
                elif isinstance(value, int):
                    agg[key] = agg.get(key, 0) + value
            kills = [at for at, _ in m.kills]
            for phase, first, last in phase_episodes(m.samples):
                n = sum(1 for at in kills if first <= at <= last)
                self.result.episodes.setdefault(phase, []).append(
                    (last - first, n, f"{slot.namespace} t={first - self.log.t0:.0f}s"))

    def cleanup(self) -> None:
        try:  # a stall interrupted half-way must not leave Prometheus stopped for the next user
            os.kill(int((self.cluster.state / "pids" / "prometheus.pid").read_text().strip()), signal.SIGCONT)
        except (OSError, ValueError):
            pass
        try:
            if self.slots and not self.operator.process.alive():
                self.operator.start()
            for slot in self.slots:
                try:
                    delete_rollouts(self.cluster, slot.namespace)
                except Exception:  # noqa: BLE001
                    pass
        finally:
            self.operator.process.stop()
            for slot in self.slots:
                for obj in slot.policy:
                    try:
                        self.cluster.delete(obj["kind"], obj["metadata"]["name"])
                    except Exception:  # noqa: BLE001
                        pass
                try:
                    self.cluster.simulator.forget_namespace(slot.namespace)
                except Exception:  # noqa: BLE001
                    pass
                try:
                    self.cluster.core.delete_namespace(slot.namespace)
                except ApiException:
                    pass


def phase_episodes(samples: list[Any], phases: tuple[str, ...] = ("Initializing", "Promoting", "RollingBack")
                   ) -> list[tuple[str, float, float]]:
    """(phase, first, last sample time) of each uninterrupted stay in one of ``phases``."""
    out: list[tuple[str, float, float]] = []
    current: tuple[str, float, float] | None = None
    for s in samples:
        if current is not None and s.phase == current[0]:
            current = (current[0], current[1], s.at)
            continue
        if current is not None:
            out.append(current)
        current = (s.phase, s.at, s.at) if s.phase in phases else None
    if current is not None:
        out.append(current)
    return out


def summary(result: ChaosResult, config: ChaosConfig, seed: int, origin: float = 0.0) -> list[str]:
    lines = [f"seed {seed}, {config.rollouts} rollouts side by side, {result.duration:.0f}s"]
    order = [p for p in PHASE_PRIORITY if result.kills_by_phase.get(p)]
    lines.append("kills by phase (the most delicate phase any rollout was in just before): "
                 + ", ".join(f"{p} {result.kills_by_phase[p]}" for p in order))
    lines.append("  of which the operator was working (had recovered from the previous kill): "
                 + ", ".join(f"{p} {result.kills_working[p]}" for p in order)
                 + "; still starting: " + ", ".join(f"{p} {result.kills_starting[p]}" for p in order
                                                     if result.kills_starting[p]))
    if result.uptimes:
        up = sorted(result.uptimes)
        lines.append(f"operator uptime at the kill: median {up[len(up) // 2]:.1f}s, min {up[0]:.1f}s, "
                     f"max {up[-1]:.1f}s")
    lines.append("kills by phase and the kind of rollout in it: " + ", ".join(
        f"{p}/{k} {n}" for (p, k), n in sorted(result.kills_by_kind.items(),
                                               key=lambda kv: (PHASE_PRIORITY.index(kv[0][0])
                                                               if kv[0][0] in PHASE_PRIORITY else 99, -kv[1]))))
    lines.append("rollout-phases at kills (every rollout counted): "
                 + ", ".join(f"{p} {n}" for p, n in result.rollout_phases_at_kills.most_common()))
    lines.append("kill moments: " + ", ".join(f"{m} {n}" for m, n in result.kills_by_mode.most_common()))
    lines.append("faults: " + (", ".join(f"{k} {n}" for k, n in sorted(result.faults_by_kind.items())) or "none")
                 + "; commands: " + (", ".join(f"{k} {n}" for k, n in sorted(result.commands.items())) or "none"))
    outcomes = Counter((r.kind, r.outcome) for r in result.lifecycles)
    lines.append("rollouts: " + ", ".join(f"{k} -> {o} x{n}" for (k, o), n in sorted(outcomes.items())))
    unexpected = [r for r in result.lifecycles if r.outcome != r.expected]
    if unexpected:
        lines.append(f"unexpected outcomes (not invariants): {len(unexpected)}")
        for r in unexpected:
            lines.append(f"  {r.namespace} #{r.index} {r.kind} -> {r.outcome} after {r.seconds:.0f}s, "
                         f"{r.kills} kills: {r.why}")
    triggers = Counter((r.kind, r.why.split(":", 1)[0]) for r in result.lifecycles if r.outcome == "RolledBack")
    if triggers:
        lines.append("rollback triggers: " + ", ".join(f"{k}: {t} x{n}" for (k, t), n in sorted(triggers.items())))
    rec = sorted(result.recoveries)
    if rec:
        median = rec[len(rec) // 2]
        p95 = rec[min(len(rec) - 1, int(len(rec) * 0.95))]
        lines.append(f"recovery (kill -> next status write): {len(rec)} measured, median {median:.1f}s, "
                     f"p95 {p95:.1f}s, worst {rec[-1]:.1f}s; {result.interrupted_recoveries} interrupted by the "
                     "next kill")
        lines.append("recovery by the rollout's phase at the kill: " + ", ".join(
            f"{p} {len(v)}x median {sorted(v)[len(v) // 2]:.1f}s worst {max(v):.1f}s"
            for p, v in sorted(result.recoveries_by_phase.items(), key=lambda kv: -max(kv[1]))))
        for seconds, what in sorted(result.recovery_details, reverse=True)[:3]:
            lines.append(f"  slowest: {seconds:.1f}s  {what}")
    for phase, stays in sorted(result.episodes.items()):
        longest = max(stays)
        killed = [x for x in stays if x[1]]
        lines.append(f"time in {phase}: {len(stays)} stays, {len(killed)} with kills, median "
                     f"{sorted(x[0] for x in stays)[len(stays) // 2]:.1f}s, longest {longest[0]:.1f}s "
                     f"({longest[1]} kills during it, {longest[2]})")
    c = result.checks
    if c:
        lines.append(f"checked (a) on {c.get('a_checked', 0)} samples ({c.get('a_checked_Promoting', 0)} in Promoting, "
                     f"{c.get('a_checked_RollingBack', 0)} in RollingBack); closest approach: serving - bound = "
                     f"{c.get('a_margin')} ({c.get('a_at_bound', 0)} samples exactly at the bound), first at "
                     f"{c.get('a_margin_at', '')}")
        lines.append(f"checked (b) on {c.get('b_checked', 0)} Promoting samples; (c) on {c.get('c_checked', 0)} "
                     f"samples, most of a budget used: {c.get('c_worst_ratio', 0.0):.0%} ({c.get('c_worst', '')}); "
                     f"(d) on {c.get('d_checked', 0)} RolledBack samples")
    lines.append(f"monitor: {result.samples} samples, {result.monitor_errors} failed reads")
    for v in result.violations:
        lines.append(v.report(origin))
    for p in result.problems:
        lines.append(f"problem: {p}")
    return lines


def run_chaos(cluster: Cluster, config: ChaosConfig, out: Callable[[str], None] | None = None) -> ChaosResult:
    """Run once and print the summary and the final line through ``out`` (print by default)."""
    run = ChaosRun(cluster, config, out)
    result = run.run()
    for line in summary(result, config, run.seed, run.log.t0):
        run.log(line)
    (out or (lambda s: print(s, flush=True)))(result.line())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200, help="SIGKILLs of the operator (default 200)")
    parser.add_argument("--budget-seconds", type=float, default=25 * 60,
                        help="whole-run budget, setup and the final drain included (default 1500)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    parser.add_argument("--rollouts", type=int, default=3, help="rollouts side by side, one namespace each (default 3)")
    parser.add_argument("--replicas", type=int, default=8, help="the stable's replicas (default 8)")
    parser.add_argument("--action-delay", type=float, default=0.7,
                        help="the operator's pause before each phased action, in seconds (default 0.7)")
    parser.add_argument("--no-prometheus-stalls", action="store_true",
                        help="no Prometheus stalls (by default Prometheus is SIGSTOPped for 3-8 s every 40-90 s)")
    args = parser.parse_args(argv)
    if args.kills < 1 or args.rollouts < 1 or args.replicas < 2:
        parser.error("--kills and --rollouts must be >= 1, --replicas >= 2")
    try:
        cluster = Cluster.from_state()
        cluster.core.list_namespace(limit=1, _request_timeout=10)
    except Exception as exc:  # noqa: BLE001
        print(f"chaos: no running cluster ({exc}); start it with `make cluster-up`", file=sys.stderr)
        return 2
    # Hold a lease like a pytest session does (e2e/conftest.py), so a test session that
    # started the cluster does not stop it under this run.
    sessions = state_dir() / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    lease = sessions / str(os.getpid())
    lease.touch()
    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGTERM (and SIGINT, even when started in the background) stop the run *with* its
    # cleanup: rollouts deleted, the operator stopped, namespaces and policies removed.
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    drain = min(150.0, max(60.0, args.budget_seconds * 0.2))
    config = ChaosConfig(kills=args.kills, budget_seconds=args.budget_seconds, seed=args.seed, rollouts=args.rollouts,
                         replicas=args.replicas, action_delay=args.action_delay, drain_seconds=drain,
                         prometheus_stall_every=None if args.no_prometheus_stalls else ChaosConfig.prometheus_stall_every)
    try:
        result = run_chaos(cluster, config)
    finally:
        lease.unlink(missing_ok=True)
    return result.exit_code(args.kills)


if __name__ == "__main__":
    sys.exit(main())
