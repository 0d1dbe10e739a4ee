"""Start-up decisions (operator/modelrollout/startup/) on a small fake apiserver.

No cluster and no kopf: the fake answers the three questions start-up asks (a CRD's
state, whether a peering object exists, what creating it gives), and a settable clock
stands in for time, so the grace period and the repeat rate are exact.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from modelrollout.clock import SettableClock
from modelrollout.startup import (
    INSTALL_GRACE,
    REPEAT,
    ROLLOUT_CRD,
    Answer,
    CrdState,
    Creation,
    KubeStartupApi,
    PeeringKind,
    PeeringObject,
    PeeringState,
    Presence,
    StartupWatch,
    check_startup,
    decide_peering,
    due,
    looks_half_installed,
    peering_objects,
    prepare,
)

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
CLUSTER_CRD = PeeringKind.CLUSTER.crd
NAMESPACED_CRD = PeeringKind.NAMESPACED.crd
CLUSTER_OBJ = PeeringObject(PeeringKind.CLUSTER, "modelrollout")
FORBIDDEN = ('403: clusterkopfpeerings.kopf.dev is forbidden: User "system:serviceaccount:ops:mro" cannot '
             'create resource "clusterkopfpeerings" in API group "kopf.dev" at the cluster scope')


@dataclass
class FakeApi:
    """The apiserver as start-up sees it: CRD states (optionally changing at a time),
    existing peering objects, and what a create answers."""

    clock: SettableClock
    crds: dict[str, CrdState] = field(default_factory=lambda: {ROLLOUT_CRD: CrdState.ESTABLISHED,
                                                               CLUSTER_CRD: CrdState.ESTABLISHED,
                                                               NAMESPACED_CRD: CrdState.ESTABLISHED})
    later: list[tuple[datetime, Callable[["FakeApi"], None]]] = field(default_factory=list)
    objects: set[PeeringObject] = field(default_factory=set)
    create_answer: Answer[Creation] | None = None   # None: allowed (201)
    list_answer: Answer[Presence] | None = None     # None: the truth
    calls: list[str] = field(default_factory=list)

    def _advance(self) -> None:
        for at, change in list(self.later):
            if self.clock.now() >= at:
                change(self)
                self.later.remove((at, change))

    def crd(self, name: str) -> Answer[CrdState]:
        self._advance()
        self.calls.append(f"crd {name}")
        state = self.crds.get(name, CrdState.ABSENT)
        return Answer(state, "403: forbidden" if state is CrdState.UNKNOWN else "")

    def find(self, obj: PeeringObject) -> Answer[Presence]:
        self._advance()
        self.calls.append(f"find {obj}")
        if self.list_answer is not None:
            return self.list_answer
        return Answer(Presence.PRESENT if obj in self.objects else Presence.ABSENT)

    def create(self, obj: PeeringObject) -> Answer[Creation]:
        self._advance()
        self.calls.append(f"create {obj}")
        if obj in self.objects:
            return Answer(Creation.EXISTS)
        if self.create_answer is not None:
            return self.create_answer
        self.objects.add(obj)
        return Answer(Creation.CREATED)


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def api(clock: SettableClock) -> FakeApi:
    return FakeApi(clock)


def sleeper(clock: SettableClock) -> Callable[[float], None]:
    """time.sleep on the settable clock: start-up's waits cost no real time here."""
    def sleep(seconds: float) -> None:
        clock.set(clock.now() + timedelta(seconds=seconds))
    return sleep


def start(api: FakeApi, clock: SettableClock, namespaces: tuple[str, ...] = (), standalone: bool = False):
    return prepare(api, peering_name="modelrollout", namespaces=namespaces, standalone=standalone, clock=clock,
                   sleep=sleeper(clock))


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "modelrollout.startup" and r.levelno == level]


# ----------------------------------------------------------------------------- what kopf waits for


def test_cluster_wide_waits_for_one_cluster_peering_and_namespaced_for_one_per_namespace() -> None:
    assert peering_objects("modelrollout", ()) == (CLUSTER_OBJ,)
    assert peering_objects("mro", ("ml", "risk", "ml")) == (
        PeeringObject(PeeringKind.NAMESPACED, "mro", "ml"), PeeringObject(PeeringKind.NAMESPACED, "mro", "risk"))
    # kopf's namespace patterns match namespaces unknown in advance: nothing to check for them.
    assert peering_objects("mro", ("ml-*", "!kube-system", "a,b", "ml")) == (
        PeeringObject(PeeringKind.NAMESPACED, "mro", "ml"),)


def test_the_create_command_creates_exactly_the_object_kopf_waits_for() -> None:
    obj = PeeringObject(PeeringKind.NAMESPACED, "modelrollout", "ml")
    command = obj.create_command()
    assert command.startswith("echo '") and command.endswith("' | kubectl apply -f -")
    assert json.loads(command.split("'")[1]) == {
        "apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "modelrollout", "namespace": "ml"}}
    assert str(obj) == "KopfPeering ml/modelrollout" and str(CLUSTER_OBJ) == "ClusterKopfPeering modelrollout"


# ----------------------------------------------------------------------------- the four outcomes


def test_an_existing_peering_object_is_used_and_nothing_is_created(api: FakeApi, clock: SettableClock,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    api.objects.add(CLUSTER_OBJ)
    caplog.set_level(logging.INFO, "modelrollout.startup")
    report = start(api, clock)
    assert report.peering.state is PeeringState.PEERING and not report.peering.standalone
    assert not any(c.startswith("create") for c in api.calls)
    assert report.probe() == {"peering": "ok: peering through ClusterKopfPeering modelrollout (found)",
                              "crd": f"ok: {ROLLOUT_CRD} is Established"}
    assert not messages(caplog, logging.WARNING)


def test_a_missing_peering_object_is_created_when_allowed(api: FakeApi, clock: SettableClock,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "modelrollout.startup")
    report = start(api, clock)
    assert CLUSTER_OBJ in api.objects
    assert report.peering.state is PeeringState.PEERING and report.peering.created == (CLUSTER_OBJ,)
    assert any(m.startswith("created ClusterKopfPeering modelrollout") for m in messages(caplog, logging.INFO))
    assert clock.now() == T0, "nothing half-installed: no waiting"


def test_without_the_peering_crd_it_runs_standalone_and_says_why_and_how_to_enable_peering(
        api: FakeApi, clock: SettableClock, caplog: pytest.LogCaptureFixture) -> None:
    del api.crds[CLUSTER_CRD]
    caplog.set_level(logging.INFO, "modelrollout.startup")
    report = start(api, clock)
    assert report.peering.standalone and report.peering.state is PeeringState.STANDALONE
    [warning] = messages(caplog, logging.WARNING)
    assert f"the peering CRD {CLUSTER_CRD} is not installed" in warning
    assert "running standalone" in warning
    assert "kubectl apply --server-side -f crds/kopf-peering.yaml" in warning
    assert "charts/modelrollout/crds/kopf-peering.yaml" in warning
    assert not any(c.startswith(("find", "create")) for c in api.calls), "no object of an absent CRD to look for"
    assert clock.now() == T0, "the ModelRollout CRD is Established: an absent peering CRD is a decision, not a race"
    assert report.probe()["peering"].startswith("standalone: the peering CRD")


def test_not_allowed_to_create_it_names_what_it_waits_for_and_the_command(api: FakeApi, clock: SettableClock,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    api.create_answer = Answer(Creation.FORBIDDEN, FORBIDDEN)
    caplog.set_level(logging.INFO, "modelrollout.startup")
    report = start(api, clock)
    assert report.peering.state is PeeringState.WAITING and not report.peering.standalone
    [warning] = messages(caplog, logging.WARNING)
    assert warning.startswith("waiting for ClusterKopfPeering modelrollout: it does not exist and this "
                              "operator may not create it (403: ")
    assert "kopf holds every rollout until it exists" in warning
    assert CLUSTER_OBJ.create_command() in warning
    assert warning.endswith("| kubectl apply -f - — or grant the operator's identity create on clusterkopfpeerings.kopf.dev")
    assert report.probe()["peering"] == warning


def test_a_missing_namespace_is_named_as_the_reason(api: FakeApi, clock: SettableClock) -> None:
    api.create_answer = Answer(Creation.NOT_SERVED, '404: namespaces "ml" not found')
    report = start(api, clock, namespaces=("ml",))
    [missing] = report.peering.missing
    assert missing.obj == PeeringObject(PeeringKind.NAMESPACED, "modelrollout", "ml")
    assert 'namespaces "ml" not found' in missing.message()


def test_one_namespace_missing_is_enough_to_wait_and_only_it_is_named(api: FakeApi, clock: SettableClock) -> None:
    api.objects.add(PeeringObject(PeeringKind.NAMESPACED, "modelrollout", "ml"))
    api.create_answer = Answer(Creation.FORBIDDEN, "403: forbidden")
    report = start(api, clock, namespaces=("ml", "risk"))
    assert report.peering.state is PeeringState.WAITING
    assert [str(m.obj) for m in report.peering.missing] == ["KopfPeering risk/modelrollout"]


def test_created_by_someone_else_meanwhile_counts_as_there(api: FakeApi, clock: SettableClock) -> None:
    api.list_answer = Answer(Presence.ABSENT)
    api.objects.add(CLUSTER_OBJ)   # listed absent, then the create answers 409
    report = start(api, clock)
    assert report.peering.state is PeeringState.PEERING and report.peering.created == ()


def test_a_crd_it_cannot_see_never_means_standalone(api: FakeApi, clock: SettableClock) -> None:
    """403 on listing CRDs: two replicas switched to standalone on an error would both act."""
    api.crds[CLUSTER_CRD] = CrdState.UNKNOWN
    report = start(api, clock)
    assert not report.peering.standalone
    assert clock.now() - T0 >= INSTALL_GRACE  # retried for the grace, then decided


def test_standalone_requested_checks_only_the_rollout_crd(api: FakeApi, clock: SettableClock) -> None:
    report = start(api, clock, standalone=True)
    assert report.peering.standalone and api.calls == [f"crd {ROLLOUT_CRD}"]
    assert report.probe()["peering"].startswith("standalone: --standalone")


# ----------------------------------------------------------------------------- CRDs being installed


def test_started_with_its_crds_it_waits_for_them_then_creates_the_peering(
        api: FakeApi, clock: SettableClock, caplog: pytest.LogCaptureFixture) -> None:
    api.crds = {}

    def installed(a: FakeApi) -> None:
        a.crds.update({ROLLOUT_CRD: CrdState.PENDING, CLUSTER_CRD: CrdState.PENDING})

    def established(a: FakeApi) -> None:
        a.crds.update({ROLLOUT_CRD: CrdState.ESTABLISHED, CLUSTER_CRD: CrdState.ESTABLISHED})
    api.later = [(T0 + timedelta(seconds=1), installed), (T0 + timedelta(seconds=2), established)]
    caplog.set_level(logging.INFO, "modelrollout.startup")
    report = start(api, clock)
    assert report.peering.state is PeeringState.PEERING and report.peering.created == (CLUSTER_OBJ,)
    assert report.rollout_crd.state is CrdState.ESTABLISHED
    assert timedelta(seconds=2) <= clock.now() - T0 < INSTALL_GRACE
    [said] = [m for m in messages(caplog, logging.INFO) if m.startswith("CRDs not ready")]
    assert f"{ROLLOUT_CRD} absent" in said and f"{CLUSTER_CRD} absent" in said
    assert not messages(caplog, logging.WARNING)


def test_crds_that_never_come_are_decided_after_the_grace(api: FakeApi, clock: SettableClock,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    api.crds = {}
    caplog.set_level(logging.INFO, "modelrollout.startup")
    report = start(api, clock)
    assert INSTALL_GRACE <= clock.now() - T0 <= INSTALL_GRACE + timedelta(seconds=1)
    assert report.peering.standalone
    warnings = messages(caplog, logging.WARNING)
    assert any(w.startswith(f"the ModelRollout CRD {ROLLOUT_CRD} is not installed") and
               "kubectl apply --server-side -f crds/modelrollout.io_modelrollouts.yaml" in w for w in warnings)
    assert report.probe()["crd"].startswith("waiting: the ModelRollout CRD")


def test_half_installed_means_a_crd_pending_or_the_rollout_crd_not_established() -> None:
    est, absent, pending = (Answer(s) for s in (CrdState.ESTABLISHED, CrdState.ABSENT, CrdState.PENDING))
    assert not looks_half_installed(est, est)
    assert not looks_half_installed(absent, est)         # peering ready: the rollout CRD is reported, not waited on
    assert not looks_half_installed(est, absent)         # only one installed: a decision
    assert looks_half_installed(absent, absent)
    assert looks_half_installed(est, pending)
    assert looks_half_installed(pending, absent)


def test_decide_peering_absent_crd_is_standalone_even_with_only_patterns() -> None:
    decision = decide_peering(PeeringKind.NAMESPACED, (), Answer(CrdState.ABSENT), ())
    assert decision.standalone and NAMESPACED_CRD in decision.reason


# ----------------------------------------------------------------------------- while kopf runs


def test_the_watch_repeats_at_a_bounded_rate_and_says_when_it_is_resolved(
        api: FakeApi, clock: SettableClock, caplog: pytest.LogCaptureFixture) -> None:
    api.create_answer = Answer(Creation.FORBIDDEN, FORBIDDEN)
    caplog.set_level(logging.INFO, "modelrollout.startup")
    watch = StartupWatch(api, start(api, clock), clock)
    assert len(messages(caplog, logging.WARNING)) == 1     # start-up said it once
    for _ in range(14):                                    # 28 s of 2-s checks: not due again yet
        clock.set(clock.now() + timedelta(seconds=2))
        watch.check()
    assert len(messages(caplog, logging.WARNING)) == 1
    clock.set(clock.now() + timedelta(seconds=2))          # 30 s after the first
    watch.check()
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 2 and warnings[1] == warnings[0]
    assert watch.pending() and watch.probe()["peering"].startswith("waiting for ClusterKopfPeering modelrollout")

    api.objects.add(CLUSTER_OBJ)                           # an admin ran the command
    clock.set(clock.now() + timedelta(seconds=2))
    watch.check()
    assert "ClusterKopfPeering modelrollout exists now: kopf resumes and serves rollouts" in messages(caplog, logging.INFO)
    assert not watch.pending()
    assert watch.probe()["peering"] == "ok: peering through ClusterKopfPeering modelrollout"


def test_the_watch_creates_the_object_once_rbac_allows_it(api: FakeApi, clock: SettableClock,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    api.create_answer = Answer(Creation.FORBIDDEN, FORBIDDEN)
    watch = StartupWatch(api, start(api, clock), clock)
    api.create_answer = None                               # create granted
    caplog.set_level(logging.INFO, "modelrollout.startup")
    clock.set(clock.now() + timedelta(seconds=2))
    watch.check()
    assert CLUSTER_OBJ in api.objects and not watch.pending()
    assert any(m.startswith("created ClusterKopfPeering modelrollout") for m in messages(caplog, logging.INFO))


def test_the_watch_reports_the_rollout_crd_until_it_is_established(api: FakeApi, clock: SettableClock,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    api.objects.add(CLUSTER_OBJ)
    api.crds[ROLLOUT_CRD] = CrdState.PENDING
    caplog.set_level(logging.INFO, "modelrollout.startup")
    watch = StartupWatch(api, start(api, clock), clock)
    assert watch.probe()["crd"].startswith(f"waiting: the ModelRollout CRD {ROLLOUT_CRD} is not Established yet")
    api.crds[ROLLOUT_CRD] = CrdState.ESTABLISHED
    clock.set(clock.now() + timedelta(seconds=2))
    watch.check()
    assert f"the ModelRollout CRD {ROLLOUT_CRD} is Established: rollouts are served" in messages(caplog, logging.INFO)
    assert not watch.pending() and watch.probe()["crd"].startswith("ok:")


def test_the_watch_thread_stops_by_itself_once_resolved(api: FakeApi, clock: SettableClock) -> None:
    api.create_answer = Answer(Creation.FORBIDDEN, FORBIDDEN)
    watch = StartupWatch(api, start(api, clock), clock, poll=timedelta(milliseconds=10))
    watch.start()
    api.objects.add(CLUSTER_OBJ)
    assert watch._thread is not None
    watch._thread.join(timeout=5)
    assert not watch._thread.is_alive() and not watch.pending()
    watch.stop()


def test_the_watch_survives_a_failing_check(clock: SettableClock, caplog: pytest.LogCaptureFixture) -> None:
    api = FakeApi(clock, create_answer=Answer(Creation.FORBIDDEN, FORBIDDEN))
    watch = StartupWatch(api, start(api, clock), clock, poll=timedelta(milliseconds=5))
    broke = threading.Event()

    def boom(obj: PeeringObject) -> Answer[Presence]:
        broke.set()
        raise RuntimeError("bug")
    api.find = boom  # type: ignore[method-assign]
    watch.start()
    assert broke.wait(5)
    watch.stop()
    assert watch._thread is not None and not watch._thread.is_alive()
    assert any("start-up watch: checking again failed" in r.getMessage() for r in caplog.records)


def test_due_is_first_time_then_once_per_period() -> None:
    assert due(None, T0)
    assert not due(T0, T0 + REPEAT - timedelta(seconds=1))
    assert due(T0, T0 + REPEAT)


# ----------------------------------------------------------------------------- the real client's answers


class FakeResponse:
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self._body = json.dumps(body).encode()

    def read(self) -> bytes:
        return self._body


class FakeApiClient:
    """The two kubernetes ApiClient methods KubeStartupApi calls; answers by (method, path)."""

    def __init__(self, answers: dict[tuple[str, str], tuple[int, Any]]) -> None:
        self.answers = answers
        self.requests: list[tuple[str, str, Any, Any]] = []

    def param_serialize(self, method: str, resource_path: str, query_params: Any, header_params: Any, body: Any,
                        auth_settings: Any) -> tuple[str, str, Any, Any]:
        return method, resource_path, query_params, body

    def call_api(self, method: str, path: str, query: Any, body: Any, _request_timeout: float) -> FakeResponse:
        self.requests.append((method, path, query, body))
        if (method, path) not in self.answers:
            raise ConnectionRefusedError("connection refused")
        return FakeResponse(*self.answers[(method, path)])


CRDS_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def test_kube_api_reads_established_from_a_field_selected_list() -> None:
    established = {"items": [{"status": {"conditions": [{"type": "Established", "status": "True"}]}}]}
    client = FakeApiClient({("GET", CRDS_PATH): (200, established)})
    api = KubeStartupApi(client)
    assert api.crd(ROLLOUT_CRD).state is CrdState.ESTABLISHED
    assert client.requests[0][2] == [("fieldSelector", f"metadata.name={ROLLOUT_CRD}")]
    client.answers[("GET", CRDS_PATH)] = (200, {"items": [{"status": {"conditions": []}}]})
    assert api.crd(ROLLOUT_CRD).state is CrdState.PENDING
    client.answers[("GET", CRDS_PATH)] = (200, {"items": []})
    assert api.crd(ROLLOUT_CRD).state is CrdState.ABSENT
    client.answers[("GET", CRDS_PATH)] = (403, {"message": "customresourcedefinitions is forbidden"})
    assert api.crd(ROLLOUT_CRD) == Answer(CrdState.UNKNOWN, "listing CRDs: 403: customresourcedefinitions is forbidden")
    del client.answers[("GET", CRDS_PATH)]
    unreachable = api.crd(ROLLOUT_CRD)
    assert unreachable.state is CrdState.UNKNOWN and "apiserver unreachable" in unreachable.detail


@pytest.mark.parametrize(("status", "state"), [(201, Creation.CREATED), (409, Creation.EXISTS),
                                               (403, Creation.FORBIDDEN), (404, Creation.NOT_SERVED),
                                               (500, Creation.FAILED)])
def test_kube_api_create_answers(status: int, state: Creation) -> None:
    obj = PeeringObject(PeeringKind.NAMESPACED, "modelrollout", "ml")
    path = "/apis/kopf.dev/v1/namespaces/ml/kopfpeerings"
    client = FakeApiClient({("POST", path): (status, {"message": "the apiserver's words"})})
    answer = KubeStartupApi(client).create(obj)
    assert answer.state is state
    assert client.requests[0][3] == obj.manifest()
    assert answer.detail == ("" if state.is_there() else f"{status}: the apiserver's words")


def test_kube_api_finds_by_a_field_selected_list_which_the_charts_rbac_allows() -> None:
    path = "/apis/kopf.dev/v1/clusterkopfpeerings"
    client = FakeApiClient({("GET", path): (200, {"items": [{"metadata": {"name": "modelrollout"}}]})})
    api = KubeStartupApi(client)
    assert api.find(CLUSTER_OBJ).state is Presence.PRESENT
    assert client.requests[0][:3] == ("GET", path, [("fieldSelector", "metadata.name=modelrollout")])
    client.answers[("GET", path)] = (200, {"items": []})
    assert api.find(CLUSTER_OBJ).state is Presence.ABSENT


def test_check_startup_is_bounded_when_everything_fails(clock: SettableClock) -> None:
    api = FakeApi(clock, crds={ROLLOUT_CRD: CrdState.UNKNOWN, CLUSTER_CRD: CrdState.UNKNOWN},
                  list_answer=Answer(Presence.UNKNOWN, "apiserver unreachable"),
                  create_answer=Answer(Creation.FAILED, "apiserver unreachable"))
    report = check_startup(api, PeeringKind.CLUSTER, (CLUSTER_OBJ,), clock, sleeper(clock))
    assert clock.now() - T0 <= INSTALL_GRACE + timedelta(seconds=1)
    [missing] = report.peering.missing
    assert "listing clusterkopfpeerings failed: apiserver unreachable" in missing.message()
    assert "creating it failed: apiserver unreachable" in missing.message()
