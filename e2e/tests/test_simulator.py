"""Offline tests of the simulator (no cluster): the arithmetic the e2e tests
rely on — shares follow the router, counters follow the behaviour, the
exposition carries every contract series — checked against a fake apiserver.
"""

from __future__ import annotations

import json
import math
import threading
import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from e2e.harness.simulator_client import SimulatorClient, SimulatorError
from e2e.simulator.behaviour import Behaviour, BehaviourError
from e2e.simulator.collector import ContractCollector
from e2e.simulator.engine import Service, Simulator
from e2e.simulator.kube import DeploymentView, PodView, RouteView
from e2e.simulator.model import DURATION_BUCKETS
from e2e.simulator.server import make_server


class FakeReader:
    """Deployments with a fixed number of ready pods and one HTTPRoute."""

    def __init__(self, replicas: dict[str, int], images: dict[str, str] | None = None,
                 route: dict[str, int] | None = None, mirrors: dict[str, float] | None = None) -> None:
        self.replicas = replicas
        self.images = images or {}
        self.route = route
        self.mirrors = mirrors or {}

    def namespace_pods(self, namespace: str) -> list:
        return []

    def namespace_deployments(self, namespace: str) -> dict[str, str]:
        return {name: name for name in self.replicas}

    def deployment_view(self, d: str | None, pods: list) -> DeploymentView:
        if d is None:
            return DeploymentView(exists=False)
        n = self.replicas[d]
        img = self.images.get(d, f"{d}:v1")
        return DeploymentView(True, n, img, tuple(PodView(f"{d}-{i}", img) for i in range(n)), {"app": d})

    def http_route(self, namespace: str, name: str) -> RouteView:
        return RouteView(self.route is not None, dict(self.route or {}), dict(self.mirrors))


def fake_pod(name: str, labels: dict[str, str], image: str, ready: bool = True) -> SimpleNamespace:
    """The few fields of a V1Pod the simulator reads."""
    return SimpleNamespace(
        metadata=SimpleNamespace(name=name, labels=labels, deletion_timestamp=None, annotations=None),
        spec=SimpleNamespace(containers=[SimpleNamespace(image=image)]),
        status=SimpleNamespace(phase="Running",
                               conditions=[SimpleNamespace(type="Ready", status="True" if ready else "False")]),
    )


class FakeArgoReader(FakeReader):
    """No Deployments; one Argo Rollout whose ReplicaSets' pods carry the template hash."""

    def __init__(self, rollout: dict | None, pods: list) -> None:
        super().__init__({})
        self.rollout, self.pods = rollout, pods

    def namespace_pods(self, namespace: str) -> list:
        return self.pods

    def argo_rollout(self, namespace: str, name: str) -> dict | None:
        return self.rollout if self.rollout and self.rollout["metadata"]["name"] == name else None


def argo_rollout(stable_rs: str, current: str, image: str) -> dict:
    return {"metadata": {"name": "ro"},
            "spec": {"selector": {"matchLabels": {"app": "ro"}},
                     "template": {"spec": {"containers": [{"name": "server", "image": image}]}}},
            "status": {"stableRS": stable_rs, "currentPodHash": current}}


def run(sim: Simulator, seconds: float, step: float = 0.1) -> None:
    t = 1000.0
    sim._last_tick = t  # noqa: SLF001 - deterministic clock for the test
    for i in range(1, int(seconds / step) + 1):
        sim.tick(t + i * step)


def families(sim: Simulator) -> dict[str, object]:
    reg = CollectorRegistry()
    reg.register(ContractCollector(sim))
    return {f.name: f for f in text_string_to_metric_families(generate_latest(reg).decode())}


def total(fams: dict, name: str, sample: str, **labels: str) -> float:
    return sum(s.value for s in fams[name].samples
               if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()))


def test_replica_router_splits_by_ready_pods() -> None:
    sim = Simulator(FakeReader({"s": 3, "c": 1}), seed=1)
    sim.register_service(Service.from_json({"name": "svc", "namespace": "ns", "stable": "s", "canary": "c",
                                            "router": "replicas", "rps": 400}))
    sim.refresh()
    st = sim.state()["deployments"]
    assert st["ns/s"]["share"] == pytest.approx(0.75)
    assert st["ns/c"]["offeredRps"] == pytest.approx(100)
    run(sim, 100)
    fams = families(sim)
    s = total(fams, "model_requests", "model_requests_total", deployment="s")
    c = total(fams, "model_requests", "model_requests_total", deployment="c")
    assert s == pytest.approx(30000, rel=0.03)
    assert c == pytest.approx(10000, rel=0.05)


def test_gateway_router_uses_route_weights_and_backend_names() -> None:
    sim = Simulator(FakeReader({"s": 2, "c": 2}, route={"s-svc": 95, "c-svc": 5}), seed=2)
    sim.register_service(Service.from_json({
        "name": "svc", "namespace": "ns", "stable": "s", "canary": "c", "router": "gatewayAPI",
        "httpRoute": "r", "rps": 100, "stableBackend": "s-svc", "canaryBackend": "c-svc"}))
    sim.refresh()
    st = sim.state()["deployments"]
    assert st["ns/s"]["share"] == pytest.approx(0.95)
    assert st["ns/c"]["share"] == pytest.approx(0.05)


def test_a_route_mirror_copies_requests_to_the_canary_without_taking_any_from_the_stable() -> None:
    """A shadow step (docs/shadow.md): weights 100/0 and a RequestMirror of 50 % to the
    canary's Service. The stable serves every request; the canary answers copies of half."""
    sim = Simulator(FakeReader({"s": 2, "c": 1}, route={"s": 100, "c": 0}, mirrors={"c": 50.0}), seed=4)
    sim.register_service(Service.from_json({"name": "svc", "namespace": "ns", "stable": "s", "canary": "c",
                                            "router": "gatewayAPI", "httpRoute": "r", "rps": 200}))
    sim.refresh()
    st = sim.state()
    assert st["deployments"]["ns/s"]["offeredRps"] == pytest.approx(200)
    assert st["deployments"]["ns/c"]["offeredRps"] == pytest.approx(100)
    assert st["deployments"]["ns/c"]["share"] == pytest.approx(0.0)  # no user's request is the canary's
    assert st["routes"]["ns/r"]["mirrors"] == {"c": 50.0}
    run(sim, 10.0)
    fams = families(sim)
    canary = total(fams, "model_requests", "model_requests_total", deployment="c")
    stable = total(fams, "model_requests", "model_requests_total", deployment="s")
    assert 0.35 < canary / stable < 0.65


def test_the_reader_turns_request_mirror_filters_into_shares() -> None:
    from e2e.simulator.kube import mirror_share

    assert mirror_share({"backendRef": {"name": "c", "port": 80}, "percent": 30}) == ("c", 30.0)
    assert mirror_share({"backendRef": {"name": "c"}, "fraction": {"numerator": 1, "denominator": 8}}) == ("c", 12.5)
    assert mirror_share({"backendRef": {"name": "c"}, "fraction": {"numerator": 3}}) == ("c", 3.0)
    assert mirror_share({"backendRef": {"name": "c"}}) == ("c", 100.0)


def test_argo_rollout_replicasets_are_exported_as_stable_and_canary() -> None:
    """An Argo canary (pods of ReplicaSets, told apart by their template hash) shows
    under fixed `deployment` names; an abort that scales the canary to 0 moves all
    traffic back to the stable without 'dropping' any."""
    pods = ([fake_pod(f"ro-aaa-{i}", {"app": "ro", "rollouts-pod-template-hash": "aaa"}, "m:v1") for i in range(15)]
            + [fake_pod(f"ro-bbb-{i}", {"app": "ro", "rollouts-pod-template-hash": "bbb"}, "m:v2") for i in range(5)]
            + [fake_pod("ro-bbb-x", {"app": "ro", "rollouts-pod-template-hash": "bbb"}, "m:v2", ready=False),
               fake_pod("other", {"app": "other", "rollouts-pod-template-hash": "bbb"}, "m:v2")])
    reader = FakeArgoReader(argo_rollout("aaa", "bbb", "m:v2"), pods)
    sim = Simulator(reader, seed=8)
    svc = Service.from_json({"name": "svc", "namespace": "ns", "stable": "ro-stable", "canary": "ro-canary",
                             "argoRollout": "ro", "rps": 200})
    assert svc.to_json()["argoRollout"] == "ro"
    sim.register_service(svc)
    sim.refresh()
    st = sim.state()["deployments"]
    assert st["ns/ro-stable"]["readyReplicas"] == 15 and st["ns/ro-canary"]["readyReplicas"] == 5
    assert st["ns/ro-canary"]["share"] == pytest.approx(0.25)
    assert st["ns/ro-canary"]["templateImage"] == "m:v2" and st["ns/ro-stable"]["templateImage"] == "m:v1"
    sim.set_behaviour("ns", "ro-canary", Behaviour.from_json({"latency_ms": {"median": 9, "p95": 16}}), None)
    run(sim, 5)
    fams = families(sim)
    assert total(fams, "model_requests", "model_requests_total", deployment="ro-canary") == pytest.approx(250, rel=0.2)
    assert {s.labels["pod"] for s in fams["model_requests"].samples
            if s.labels.get("deployment") == "ro-canary"} == {f"ro-bbb-{i}" for i in range(5)}
    # Abort: Argo scales the canary ReplicaSet to 0; currentPodHash stays the canary's.
    reader.pods = pods[:15]
    sim.refresh()
    st = sim.state()["deployments"]
    assert st["ns/ro-canary"]["exists"] and st["ns/ro-canary"]["readyReplicas"] == 0
    assert st["ns/ro-canary"]["droppedRps"] == 0 and st["ns/ro-stable"]["share"] == pytest.approx(1.0)
    # Promoted (stable == current) or Rollout gone.
    reader.rollout = argo_rollout("bbb", "bbb", "m:v2")
    reader.pods = pods[15:20]
    sim.refresh()
    st = sim.state()["deployments"]
    assert st["ns/ro-stable"]["readyReplicas"] == 5 and st["ns/ro-canary"]["readyReplicas"] == 0
    reader.rollout = None
    sim.refresh()
    assert not sim.state()["deployments"]["ns/ro-stable"]["exists"]
    with pytest.raises(BehaviourError, match="argoRollout"):
        Service.from_json({"name": "svc", "namespace": "ns", "stable": "a", "argoRollout": 3})


def test_no_ready_pods_means_dropped_not_served() -> None:
    sim = Simulator(FakeReader({"s": 2, "c": 0}, route={"s": 50, "c": 50}), seed=3)
    sim.register_service(Service.from_json({"name": "svc", "namespace": "ns", "stable": "s", "canary": "c",
                                            "router": "gatewayAPI", "httpRoute": "svc", "rps": 100}))
    sim.refresh()
    st = sim.state()["deployments"]
    assert st["ns/c"]["droppedRps"] == pytest.approx(50)
    assert st["ns/c"]["offeredRps"] == 0


def test_behaviour_shapes_errors_accuracy_cache_and_latency() -> None:
    sim = Simulator(FakeReader({"s": 1}), seed=4)
    sim.register_service(Service.from_json({"name": "svc", "namespace": "ns", "stable": "s", "rps": 2000}))
    sim.set_behaviour("ns", "s", Behaviour.from_json({
        "latency_ms": {"median": 2.0, "p95": 4.0},
        "error_rates": {"timeout": 0.05},
        "accuracy": 0.7, "label_fraction": 0.5, "cache_hit_rate": 0.9, "evictions_per_minute": 60,
    }), None)
    sim.refresh()
    run(sim, 60)
    f = families(sim)
    req = total(f, "model_requests", "model_requests_total")
    assert req == pytest.approx(120000, rel=0.02)
    assert total(f, "model_request_errors", "model_request_errors_total", category="timeout") / req \
        == pytest.approx(0.05, rel=0.05)
    assert total(f, "model_request_errors", "model_request_errors_total", category="cache") == 0
    ev = total(f, "model_predictions_evaluated", "model_predictions_evaluated_total")
    assert total(f, "model_predictions_correct", "model_predictions_correct_total") / ev == pytest.approx(0.7, abs=0.01)
    hits = total(f, "model_cache_requests", "model_cache_requests_total", result="hit")
    misses = total(f, "model_cache_requests", "model_cache_requests_total", result="miss")
    assert hits / (hits + misses) == pytest.approx(0.9, abs=0.01)
    assert total(f, "model_cache_evictions", "model_cache_evictions_total") == pytest.approx(60, abs=30)
    # p95 from the cumulative buckets, linearly interpolated as Prometheus does.
    buckets = sorted(((float(s.labels["le"]), s.value) for s in f["model_request_duration_seconds"].samples
                      if s.name.endswith("_bucket")), key=lambda x: x[0])
    n = buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= 0.95 * n:
            p95 = prev_le + (le - prev_le) * (0.95 * n - prev_c) / (c - prev_c)
            break
        prev_le, prev_c = le, c
    assert p95 == pytest.approx(0.004, abs=0.0003)
    mean = total(f, "model_request_duration_seconds", "model_request_duration_seconds_sum") / n
    assert mean == pytest.approx(Behaviour.from_json({"latency_ms": {"median": 2.0, "p95": 4.0}}).latency_mean_ms
                                 / 1000, rel=0.02)


def test_labels_arrive_label_delay_s_after_their_predictions() -> None:
    sim = Simulator(FakeReader({"s": 1}), seed=5)
    sim.register_service(Service.from_json({"name": "svc", "namespace": "ns", "stable": "s", "rps": 1000}))
    sim.set_behaviour("ns", "s", Behaviour.from_json({"label_fraction": 0.5, "label_delay_s": 30}), None)
    sim.refresh()
    run(sim, 29)
    f = families(sim)
    assert total(f, "model_requests", "model_requests_total") > 20_000
    assert total(f, "model_predictions_evaluated", "model_predictions_evaluated_total") == 0
    run(sim, 31)  # 60 s in: the first 30 s of predictions are labelled
    ev = total(families(sim), "model_predictions_evaluated", "model_predictions_evaluated_total")
    assert ev == pytest.approx(0.5 * 1000 * 30, rel=0.1)
    with pytest.raises(BehaviourError, match="label_delay_s must be >= 0"):
        Behaviour.from_json({"label_delay_s": -1})


def test_confidence_histogram_buckets_cover_unit_interval() -> None:
    sim = Simulator(FakeReader({"s": 1}), seed=5)
    sim.register_service(Service.from_json({"name": "svc", "namespace": "ns", "stable": "s", "rps": 500}))
    sim.refresh()
    run(sim, 10)
    f = families(sim)
    les = [s.labels["le"] for s in f["model_prediction_confidence"].samples if s.name.endswith("_bucket")]
    assert les == ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1.0", "+Inf"]
    counts = [s.value for s in f["model_prediction_confidence"].samples if s.name.endswith("_bucket")]
    assert counts == sorted(counts) and counts[-2] == counts[-1]


def test_image_keyed_behaviour_follows_the_pod_template() -> None:
    """After promotion the stable runs the canary's image, so it behaves like v2."""
    reader = FakeReader({"s": 1, "c": 1}, images={"s": "m:v1", "c": "m:v2"})
    sim = Simulator(reader, seed=6)
    sim.register_service(Service.from_json({"name": "svc", "namespace": "ns", "stable": "s", "canary": "c"}))
    slow = Behaviour.from_json({"latency_ms": {"median": 9, "p95": 12}})
    sim.set_behaviour("ns", "*", slow, "m:v2")
    assert sim.behaviour_for("ns", "c", "m:v2")[0] is slow
    assert sim.behaviour_for("ns", "s", "m:v1")[1] == "default"
    reader.images["s"] = "m:v2"
    sim.refresh()
    assert sim.state()["deployments"]["ns/s"]["behaviourKey"] == "*@m:v2"
    # Deployment-specific beats namespace-wide.
    fast = Behaviour.from_json({"latency_ms": {"median": 1, "p95": 2}})
    sim.set_behaviour("ns", "s", fast, "m:v2")
    assert sim.behaviour_for("ns", "s", "m:v2")[0] is fast


@pytest.mark.parametrize("bad, field", [
    ({"accuracy": 1.5}, "accuracy"),
    ({"error_rates": {"bogus": 0.1}}, "bogus"),
    ({"latency_ms": {"median": 3, "p95": 2}}, "p95"),
    ({"latencyMs": 1}, "unknown"),
    ({"confidence_beta": {"a": 1}}, "confidence_beta"),
])
def test_behaviour_validation_names_the_field(bad: dict, field: str) -> None:
    with pytest.raises(BehaviourError, match=field):
        Behaviour.from_json(bad)


def test_mean_sigma_latency_form() -> None:
    b = Behaviour.from_json({"latency_ms": {"mean": 2.0, "sigma": 0.3}})
    assert b.latency_mean_ms == pytest.approx(2.0)
    assert b.latency_sigma == pytest.approx(0.3)


def test_behaviour_json_round_trips() -> None:
    b = Behaviour.from_json({"latency_ms": {"median": 1.5, "p95": 2.5}, "accuracy": 0.8,
                             "confidence_beta": {"a": 3, "b": 3}, "cache_lookup_ms": 2})
    assert Behaviour.from_json(b.to_json()) == b


def test_control_api_over_http() -> None:
    sim = Simulator(FakeReader({"s": 2, "c": 1}), seed=7)
    httpd = make_server(sim, "127.0.0.1", 0)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        client = SimulatorClient(f"http://127.0.0.1:{httpd.server_address[1]}")
        assert client.healthy()
        svc = client.register_service("svc", "ns", stable="s", canary="c", rps=30)
        assert svc["router"] == "replicas" and svc["canaryBackend"] == "c"
        out = client.set_behaviour("ns", "c", image="c:v1", accuracy=0.5)
        assert out["behaviour"]["accuracy"] == 0.5 and out["image"] == "c:v1"
        with pytest.raises(SimulatorError, match="accuracy"):
            client.set_behaviour("ns", "c", accuracy=2)
        sim.refresh()
        run(sim, 2)
        body = urllib.request.urlopen(client.base_url + "/metrics", timeout=5).read().decode()
        assert 'model_requests_total{deployment="c",namespace="ns",pod="c-0"}' in body
        state = client.state()
        assert state["deployments"]["ns/c"]["behaviourKey"] == "c@c:v1"
        assert json.dumps(state)  # serialisable
        client.forget_namespace("ns")
        assert client.state()["services"] == []
        after = urllib.request.urlopen(client.base_url + "/metrics", timeout=5).read().decode()
        assert "model_requests_total{" not in after
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_duration_buckets_are_sorted_and_fine_around_thresholds() -> None:
    b = np.array(DURATION_BUCKETS)
    assert np.all(np.diff(b) > 0)
    # At most 0.5 ms between bounds up to 5 ms, where the default latency thresholds sit.
    small = b[b <= 0.005]
    assert math.isclose(small.max(), 0.005) and np.all(np.diff(small) <= 0.0005 + 1e-12)


def test_model_info_reports_each_pods_declared_digest_unless_a_behaviour_overrides_it() -> None:
    """model_info: the pod's annotation, else a digest of its image; a behaviour's
    model_digest is a server that loaded another model than its pod declares."""
    from e2e.simulator.kube import KubeReader, image_digest

    declared, loaded = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    pod = fake_pod("c-0", {"app": "c"}, "m:v2")
    pod.metadata.annotations = {"modelrollout.io/model-digest": declared}
    pod.metadata.owner_references = None
    assert KubeReader.deployment_view(SimpleNamespace(
        metadata=SimpleNamespace(name="c"), spec=SimpleNamespace(
            selector=SimpleNamespace(match_labels={"app": "c"}),
            template=SimpleNamespace(spec=SimpleNamespace(containers=[SimpleNamespace(image="m:v2")]))),
        status=SimpleNamespace(ready_replicas=1)), [pod]).ready_pods[0].model_digest == declared

    sim = Simulator(FakeReader({"s": 2, "c": 1}), seed=1)
    sim.register_service(Service.from_json({"name": "svc", "namespace": "ns", "stable": "s", "canary": "c",
                                            "router": "replicas", "rps": 100}))
    sim.refresh()
    info = {s.labels["pod"]: s.labels["digest"] for s in families(sim)["model_info"].samples}
    assert info == {"s-0": image_digest("s:v1"), "s-1": image_digest("s:v1"), "c-0": image_digest("c:v1")}
    sim.set_behaviour("ns", "c", Behaviour.from_json({"model_digest": loaded}), None)
    info = {s.labels["pod"]: s.labels["digest"] for s in families(sim)["model_info"].samples}
    assert info["c-0"] == loaded and info["s-0"] == image_digest("s:v1")
    with pytest.raises(BehaviourError, match="model_digest"):
        Behaviour.from_json({"model_digest": "md5:abc"})
