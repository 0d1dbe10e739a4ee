"""Start-up checks, so that the operator never waits silently.

Why this module exists: with a peering name (our default, so that two replicas never
both act) kopf holds every resource until its peering object exists, and says nothing
about it — a rollout applied then gets no status at all, and the log ends at
"Initial authentication has finished". kopf cannot tell "nobody created the object"
from "another replica will", so the operator decides before ``kopf.run``:

* the peering object is there: peer through it;
* it is missing and may be created: create it (an INFO line says so);
* its CRD is not installed at all: no other replica can peer either, so there is
  nothing to coordinate with — run standalone, with a WARNING that says why and how
  to enable peering;
* it is missing and cannot be created (403, its namespace is missing, the apiserver
  failed): peer anyway — kopf resumes by itself once the object appears — but say,
  at start and then at a bounded rate, exactly what is waited for and the command that
  creates it; the health endpoint reports the same sentence (``StartupWatch``).

The ModelRollout CRD is checked too: when the operator starts in the same second as
its CRDs (``helm install``, ``kubectl apply -f crds/ -f operator.yaml``), they may be
absent or not yet Established. kopf serves a CRD as soon as it appears (and retries
the apiserver's 429 "storage is (re)initializing" on its own), so nothing blocks on it
here: start-up waits a few seconds for CRDs that look half-installed before deciding
on peering, and the CRD's state is logged and reported until it is Established.

The cluster is reached through ``StartupApi`` — three synchronous calls whose answers
are values, never exceptions — so every decision here is tested with a small fake
(tests/test_startup.py), and ``KubeStartupApi`` is the only code that knows the
kubernetes client. It lists with a field selector rather than GETting one object: the
chart grants list/watch/patch on peering objects and list/watch on CRDs (what kopf
itself needs), and no get. See docs/operator.md (``run``, High availability) and
docs/troubleshooting.md.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

from .api.models import API_GROUP, PLURAL
from .clock import Clock

log = logging.getLogger("modelrollout.startup")

PEERING_GROUP = "kopf.dev"
PEERING_VERSION = "v1"
ROLLOUT_CRD = f"{PLURAL}.{API_GROUP}"
ROLLOUT_CRD_FILE = "crds/modelrollout.io_modelrollouts.yaml"
PEERING_CRD_FILE = "crds/kopf-peering.yaml"

INSTALL_GRACE = timedelta(seconds=5)
"""How long start-up waits for CRDs that look half-installed (the peering CRD not yet
Established, or absent while the ModelRollout CRD is not Established either) before
deciding on peering. Short, so that the decision and its log line come within 10 s of the start."""

POLL = timedelta(seconds=2)
"""How often ``StartupWatch`` looks again at what is still missing."""

REPEAT = timedelta(seconds=30)
"""How often a still-unresolved problem is logged again: often enough to be seen in
any log tail, rarely enough not to flood it."""


# ------------------------------------------------------------------------ answers


class CrdState(StrEnum):
    ESTABLISHED = "established"
    PENDING = "pending"
    """Created but not yet Established: its objects cannot be created or watched yet."""
    ABSENT = "absent"
    UNKNOWN = "unknown"
    """Could not tell: listing CRDs was refused, or the apiserver failed."""


class Presence(StrEnum):
    PRESENT = "present"
    ABSENT = "absent"
    UNKNOWN = "unknown"


class Creation(StrEnum):
    CREATED = "created"
    EXISTS = "exists"
    """409: someone (another replica, the chart) created it first — as good as created."""
    FORBIDDEN = "forbidden"
    NOT_SERVED = "not served"
    """404: its CRD is not served (yet), or its namespace does not exist."""
    FAILED = "failed"

    def is_there(self) -> bool:
        return self in (Creation.CREATED, Creation.EXISTS)


S = TypeVar("S", CrdState, Presence, Creation)


@dataclass(frozen=True, slots=True)
class Answer(Generic[S]):
    """One answer of the apiserver: a state, and the apiserver's own words when it refused or failed."""

    state: S
    detail: str = ""


# ------------------------------------------------------------------------ what kopf needs


class PeeringKind(StrEnum):
    CLUSTER = "ClusterKopfPeering"
    NAMESPACED = "KopfPeering"

    @property
    def plural(self) -> str:
        return f"{self.value.lower()}s"

    @property
    def crd(self) -> str:
        return f"{self.plural}.{PEERING_GROUP}"


@dataclass(frozen=True, slots=True)
class PeeringObject:
    """The object kopf peers through: one ClusterKopfPeering when the operator watches
    every namespace, one KopfPeering in each namespace when it watches named ones."""

    kind: PeeringKind
    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        return f"{self.kind.value} {self.namespace}/{self.name}" if self.namespace else f"{self.kind.value} {self.name}"

    def manifest(self) -> dict[str, Any]:
        metadata: dict[str, str] = {"name": self.name}
        if self.namespace:
            metadata["namespace"] = self.namespace
        return {"apiVersion": f"{PEERING_GROUP}/{PEERING_VERSION}", "kind": self.kind.value, "metadata": metadata}

    def create_command(self) -> str:
        """A shell command that creates it, for logs and the health endpoint (idempotent: apply)."""
        return f"echo '{json.dumps(self.manifest(), separators=(',', ':'))}' | kubectl apply -f -"


def is_namespace_pattern(namespace: str) -> bool:
    """kopf's namespace patterns (globs, negations, lists): no single KopfPeering to check."""
    return any(c in namespace for c in "!*?,")


def peering_objects(peering_name: str, namespaces: Iterable[str]) -> tuple[PeeringObject, ...]:
    """What kopf will wait for: cluster-wide one ClusterKopfPeering, else one KopfPeering per
    named namespace (patterns are kopf's business: it peers in whatever matches)."""
    names = tuple(namespaces)
    if not names:
        return (PeeringObject(PeeringKind.CLUSTER, peering_name),)
    return tuple(PeeringObject(PeeringKind.NAMESPACED, peering_name, ns)
                 for ns in dict.fromkeys(names) if not is_namespace_pattern(ns))


def peering_kind(namespaces: Iterable[str]) -> PeeringKind:
    """kopf peers cluster-wide only when it watches every namespace."""
    return PeeringKind.NAMESPACED if tuple(namespaces) else PeeringKind.CLUSTER


class StartupApi(Protocol):
    """The three questions start-up asks the apiserver; answers, never exceptions."""

    def crd(self, name: str) -> Answer[CrdState]: ...
    def find(self, obj: PeeringObject) -> Answer[Presence]: ...
    def create(self, obj: PeeringObject) -> Answer[Creation]: ...


# ------------------------------------------------------------------------ decisions


class PeeringState(StrEnum):
    PEERING = "peering"
    """The object exists (found or created): kopf peers through it."""
    WAITING = "waiting"
    """Missing and not created: kopf holds every rollout until it appears."""
    STANDALONE = "standalone"

    def is_standalone(self) -> bool:
        return self is PeeringState.STANDALONE


@dataclass(frozen=True, slots=True)
class Missing:
    """A peering object kopf waits for, why it is not there, and how to fix that."""

    obj: PeeringObject
    why: str
    otherwise: str = ""
    """Another fix than creating it by hand, e.g. the RBAC grant that lets the operator create it."""

    def message(self) -> str:
        return (f"waiting for {self.obj}: {self.why}. kopf holds every rollout until it exists "
                f"(no status, no action). Create it: {self.obj.create_command()}"
                + (f" — or {self.otherwise}" if self.otherwise else ""))


@dataclass(frozen=True, slots=True)
class PeeringDecision:
    """How kopf is run, and what the health endpoint says about peering."""

    state: PeeringState
    reason: str
    """One sentence: what was found, what was done, and for standalone why and how to enable peering."""
    objects: tuple[PeeringObject, ...] = ()
    missing: tuple[Missing, ...] = ()
    created: tuple[PeeringObject, ...] = ()

    @property
    def standalone(self) -> bool:
        return self.state.is_standalone()

    def summary(self) -> str:
        """The health endpoint's ``peering`` value."""
        if self.missing:
            return "; ".join(m.message() for m in self.missing)
        return f"{'standalone' if self.standalone else 'ok'}: {self.reason}"


def requested_standalone() -> PeeringDecision:
    return PeeringDecision(PeeringState.STANDALONE, "--standalone: no peering, this replica acts alone")


def standalone_without_crd(kind: PeeringKind) -> PeeringDecision:
    """The peering CRD is not installed: no replica can peer, so there is nothing to coordinate with."""
    return PeeringDecision(PeeringState.STANDALONE, (
        f"the peering CRD {kind.crd} is not installed, so no other replica can coordinate with this one: "
        f"running standalone, as with --standalone. To run several replicas with peering, install the "
        f"peering CRDs (kubectl apply --server-side -f {PEERING_CRD_FILE}, or the chart's "
        f"charts/modelrollout/crds/kopf-peering.yaml) and restart the operator; pass --standalone to "
        f"silence this warning"))


def missing_because(obj: PeeringObject, found: Answer[Presence], created: Answer[Creation]) -> Missing:
    """Why ``obj`` is still not there after looking for it and trying to create it."""
    looked = f" (and listing {obj.kind.plural} failed: {found.detail})" if found.state is Presence.UNKNOWN else ""
    if created.state is Creation.FORBIDDEN:
        where = f" in namespace {obj.namespace}" if obj.namespace else ""
        return Missing(obj, f"it does not exist{looked} and this operator may not create it ({created.detail})",
                       f"grant the operator's identity create on {obj.kind.crd}{where}")
    if created.state is Creation.NOT_SERVED:
        return Missing(obj, f"it does not exist{looked} and could not be created: {created.detail} (is its CRD "
                            f"{obj.kind.crd} Established, and its namespace there?)")
    return Missing(obj, f"it does not exist{looked} and creating it failed: {created.detail}")


def decide_peering(kind: PeeringKind, objects: Sequence[PeeringObject], peering_crd: Answer[CrdState],
                   outcomes: Sequence[tuple[Answer[Presence], Answer[Creation] | None]]) -> PeeringDecision:
    """The decision from what start-up saw: the peering CRD's state and, per object, whether it
    was found and what creating it gave (``None``: not tried, it was found).

    Only a CRD known to be *absent* means standalone. A CRD we could not see (403, apiserver
    down) keeps peering: switching two replicas to standalone on an error would let both act.
    """
    if peering_crd.state is CrdState.ABSENT:
        return standalone_without_crd(kind)
    missing: list[Missing] = []
    created: list[PeeringObject] = []
    for obj, (found, creation) in zip(objects, outcomes, strict=True):
        if found.state is Presence.PRESENT or creation is None:
            continue
        if creation.state is Creation.CREATED:
            created.append(obj)
        elif creation.state is not Creation.EXISTS:
            missing.append(missing_because(obj, found, creation))
    if missing:
        return PeeringDecision(PeeringState.WAITING, "; ".join(m.message() for m in missing), tuple(objects),
                               tuple(missing), tuple(created))
    if not objects:
        return PeeringDecision(PeeringState.PEERING, "every watched namespace is a pattern: kopf peers in "
                               "each namespace that matches; their KopfPeerings are not checked")
    verb = "created" if created else "found"
    names = ", ".join(str(o) for o in objects)
    return PeeringDecision(PeeringState.PEERING, f"peering through {names} ({verb})", tuple(objects),
                           (), tuple(created))


def looks_half_installed(rollout_crd: Answer[CrdState], peering_crd: Answer[CrdState]) -> bool:
    """CRDs that may be being installed right now: worth a few seconds before deciding.

    A peering CRD that is absent while the ModelRollout CRD *is* Established is a
    decision (only one was installed), not a race: no waiting then.
    """
    if peering_crd.state is CrdState.ESTABLISHED:
        return False
    return peering_crd.state in (CrdState.PENDING, CrdState.UNKNOWN) or rollout_crd.state is not CrdState.ESTABLISHED


def rollout_crd_problem(answer: Answer[CrdState]) -> str | None:
    """What to say about the ModelRollout CRD, or None when it is Established."""
    if answer.state is CrdState.ESTABLISHED:
        return None
    what = {CrdState.ABSENT: "is not installed", CrdState.PENDING: "is not Established yet",
            CrdState.UNKNOWN: f"could not be checked ({answer.detail})"}[answer.state]
    return (f"the ModelRollout CRD {ROLLOUT_CRD} {what}: no rollout is served until it is Established "
            f"(kopf starts serving it as soon as it is). Install it: kubectl apply --server-side -f {ROLLOUT_CRD_FILE}")


def due(last: datetime | None, now: datetime, every: timedelta = REPEAT) -> bool:
    """Whether a repeated message is due: the first time, then once per ``every``."""
    return last is None or now - last >= every


# ------------------------------------------------------------------------ start-up


@dataclass(frozen=True, slots=True)
class StartupReport:
    """What start-up found and decided; ``StartupWatch`` carries it on."""

    peering: PeeringDecision
    rollout_crd: Answer[CrdState]

    def probe(self) -> dict[str, str]:
        """The health endpoint's view: one sentence per concern."""
        crd = rollout_crd_problem(self.rollout_crd)
        return {"peering": self.peering.summary(),
                "crd": f"waiting: {crd}" if crd else f"ok: {ROLLOUT_CRD} is Established"}


def check_startup(api: StartupApi, kind: PeeringKind, objects: Sequence[PeeringObject], clock: Clock,
                  sleep: Callable[[float], None], grace: timedelta = INSTALL_GRACE) -> StartupReport:
    """Before ``kopf.run``: find the peering objects, create the missing ones, decide
    standalone or peering, and log each conclusion once (``StartupWatch`` repeats them).

    ``kind`` is the peering kind even when ``objects`` is empty (every watched namespace
    is a pattern). Bounded: ``grace``, plus two apiserver round trips per object.
    """
    deadline = clock.now() + grace
    said_waiting = False
    while True:
        rollout_crd = api.crd(ROLLOUT_CRD)
        peering_crd = api.crd(kind.crd)
        if not looks_half_installed(rollout_crd, peering_crd) or clock.now() >= deadline:
            break
        if not said_waiting:
            log.info("CRDs not ready: %s %s, %s %s%s; waiting up to %.0fs in case they are being installed",
                     ROLLOUT_CRD, rollout_crd.state.value, kind.crd, peering_crd.state.value,
                     f" ({peering_crd.detail})" if peering_crd.detail else "", grace.total_seconds())
            said_waiting = True
        sleep(0.5)

    outcomes: list[tuple[Answer[Presence], Answer[Creation] | None]] = []
    if peering_crd.state is not CrdState.ABSENT:
        for obj in objects:
            found = api.find(obj)
            outcomes.append((found, None if found.state is Presence.PRESENT else api.create(obj)))
    else:
        outcomes = [(Answer(Presence.ABSENT), None) for _ in objects]
    decision = decide_peering(kind, objects, peering_crd, outcomes)
    report = StartupReport(decision, rollout_crd)
    log_decision(decision)
    problem = rollout_crd_problem(rollout_crd)
    if problem:
        log.warning("%s", problem)
    return report


def prepare(api: StartupApi, *, peering_name: str, namespaces: Sequence[str], standalone: bool, clock: Clock,
            sleep: Callable[[float], None]) -> StartupReport:
    """What ``modelrollout run`` calls before ``kopf.run``: ``--standalone`` only checks the
    ModelRollout CRD; otherwise ``check_startup`` for the peering objects of ``namespaces``."""
    if standalone:
        report = StartupReport(requested_standalone(), api.crd(ROLLOUT_CRD))
        problem = rollout_crd_problem(report.rollout_crd)
        if problem:
            log.warning("%s", problem)
        return report
    patterns = [ns for ns in namespaces if is_namespace_pattern(ns)]
    if patterns:
        log.info("namespace patterns %s: kopf peers through a KopfPeering %r in each namespace they match; "
                 "those are not checked at start-up", ", ".join(patterns), peering_name)
    return check_startup(api, peering_kind(namespaces), peering_objects(peering_name, namespaces), clock, sleep)


def log_decision(decision: PeeringDecision) -> None:
    for obj in decision.created:
        log.info("created %s: kopf peers through it (the replica with the highest --priority acts; "
                 "docs/operator.md, High availability)", obj)
    if decision.missing:
        for m in decision.missing:
            log.warning("%s", m.message())
    elif decision.standalone:
        # Asked for: a fact. Fallen back to: a warning, since two such replicas would both act.
        log.log(logging.INFO if decision == requested_standalone() else logging.WARNING, "%s", decision.reason)
    else:
        log.info("%s", decision.reason)


# ------------------------------------------------------------------------ while kopf runs


@dataclass
class StartupWatch:
    """Carries the start-up report on while kopf runs: looks again at whatever is still
    missing every ``POLL`` (creating the peering object once it may), logs what it still
    waits for once per ``REPEAT``, logs when it is resolved, and answers the health probe.

    A thread rather than a kopf task: it must speak even before kopf's own tasks start and
    whatever kopf is paused on, and its apiserver calls are synchronous anyway.
    ``check()`` is one step, so tests drive it with a settable clock.
    """

    api: StartupApi
    report: StartupReport
    clock: Clock
    poll: timedelta = POLL
    repeat: timedelta = REPEAT
    _said: dict[str, datetime] = field(default_factory=dict, init=False)
    """When each unresolved problem was last logged (by object, or the CRD's name)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        now = self.clock.now()  # start-up has just logged each problem once
        for m in self.report.peering.missing:
            self._said[str(m.obj)] = now
        if rollout_crd_problem(self.report.rollout_crd):
            self._said[ROLLOUT_CRD] = now

    def probe(self) -> dict[str, str]:
        with self._lock:
            return self.report.probe()

    def pending(self) -> bool:
        with self._lock:
            return bool(self.report.peering.missing) or self.report.rollout_crd.state is not CrdState.ESTABLISHED

    def check(self) -> StartupReport:
        """Look again at what is missing; log what changed, and what still waits when due."""
        report = self.report
        now = self.clock.now()
        peering = report.peering
        if peering.missing:
            still: list[Missing] = []
            created = list(peering.created)
            for m in peering.missing:
                found = self.api.find(m.obj)
                if found.state is Presence.PRESENT:
                    log.info("%s exists now: kopf resumes and serves rollouts", m.obj)
                    continue
                creation = self.api.create(m.obj)
                if creation.state.is_there():
                    if creation.state is Creation.CREATED:
                        created.append(m.obj)
                        log.info("created %s: kopf resumes and serves rollouts", m.obj)
                    else:
                        log.info("%s exists now: kopf resumes and serves rollouts", m.obj)
                    continue
                again = missing_because(m.obj, found, creation)
                still.append(again)
                if due(self._said.get(str(m.obj)), now, self.repeat):
                    log.warning("%s", again.message())
                    self._said[str(m.obj)] = now
            if still:
                peering = replace(peering, missing=tuple(still), created=tuple(created),
                                  reason="; ".join(m.message() for m in still))
            else:
                names = ", ".join(str(o) for o in peering.objects)
                peering = PeeringDecision(PeeringState.PEERING, f"peering through {names}", peering.objects,
                                          (), tuple(created))
        rollout_crd = report.rollout_crd
        if rollout_crd.state is not CrdState.ESTABLISHED:
            rollout_crd = self.api.crd(ROLLOUT_CRD)
            problem = rollout_crd_problem(rollout_crd)
            if problem is None:
                log.info("the ModelRollout CRD %s is Established: rollouts are served", ROLLOUT_CRD)
            elif due(self._said.get(ROLLOUT_CRD), now, self.repeat):
                log.warning("%s", problem)
                self._said[ROLLOUT_CRD] = now
        with self._lock:
            self.report = StartupReport(peering, rollout_crd)
        return self.report

    def run(self) -> None:
        """Check every ``poll`` until nothing is missing or ``stop()``; never raises."""
        while self.pending() and not self._stop.wait(self.poll.total_seconds()):
            try:
                self.check()
            except Exception:  # noqa: BLE001 — a reporter must never take the operator down
                log.exception("start-up watch: checking again failed; retrying in %.0fs", self.poll.total_seconds())

    def start(self) -> None:
        if self.pending():
            self._thread = threading.Thread(target=self.run, name="modelrollout-startup-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


# ------------------------------------------------------------------------ the real apiserver


class KubeStartupApi:
    """``StartupApi`` on the kubernetes client: raw JSON (no typed models to trip over
    fields newer than the client), short timeouts, errors turned into answers."""

    def __init__(self, api_client: Any, request_timeout: float = 5.0) -> None:
        self.api_client = api_client
        self.request_timeout = request_timeout

    def _call(self, method: str, path: str, query: list[tuple[str, str]] | None = None,
              body: Any = None) -> tuple[int, Any]:
        """(HTTP status, parsed body); status 0 when the apiserver could not be reached."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            params = self.api_client.param_serialize(method=method, resource_path=path, query_params=query or None,
                                                     header_params=headers, body=body, auth_settings=["BearerToken"])
            response = self.api_client.call_api(*params, _request_timeout=self.request_timeout)
            raw = response.read()
        except Exception as exc:  # noqa: BLE001 — connection errors, timeouts: an answer, not a crash
            return 0, f"apiserver unreachable: {type(exc).__name__}: {exc}"
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        return int(response.status), data

    @staticmethod
    def _detail(status: int, data: Any) -> str:
        message = data.get("message") if isinstance(data, dict) else data
        return f"{status}: {message}" if status else str(message)

    def _list_by_name(self, path: str, name: str) -> tuple[int, Any]:
        return self._call("GET", path, [("fieldSelector", f"metadata.name={name}")])

    def crd(self, name: str) -> Answer[CrdState]:
        status, data = self._list_by_name("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", name)
        if status != 200 or not isinstance(data, dict):
            return Answer(CrdState.UNKNOWN, f"listing CRDs: {self._detail(status, data)}")
        items = data.get("items") or []
        if not items:
            return Answer(CrdState.ABSENT)
        conditions = (items[0].get("status") or {}).get("conditions") or []
        established = any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)
        return Answer(CrdState.ESTABLISHED if established else CrdState.PENDING)

    @staticmethod
    def _path(obj: PeeringObject) -> str:
        base = f"/apis/{PEERING_GROUP}/{PEERING_VERSION}"
        if obj.namespace:
            return f"{base}/namespaces/{quote(obj.namespace)}/{obj.kind.plural}"
        return f"{base}/{obj.kind.plural}"

    def find(self, obj: PeeringObject) -> Answer[Presence]:
        status, data = self._list_by_name(self._path(obj), obj.name)
        if status != 200 or not isinstance(data, dict):
            return Answer(Presence.UNKNOWN, self._detail(status, data))
        return Answer(Presence.PRESENT if data.get("items") else Presence.ABSENT)

    def create(self, obj: PeeringObject) -> Answer[Creation]:
        status, data = self._call("POST", self._path(obj), body=obj.manifest())
        state = {201: Creation.CREATED, 200: Creation.CREATED, 409: Creation.EXISTS, 403: Creation.FORBIDDEN,
                 404: Creation.NOT_SERVED}.get(status, Creation.FAILED)
        return Answer(state, "" if state.is_there() else self._detail(status, data))


__all__ = [
    "Answer", "CrdState", "Creation", "KubeStartupApi", "Missing", "PeeringDecision", "PeeringKind",
    "PeeringObject", "PeeringState", "Presence", "StartupApi", "StartupReport", "StartupWatch",
    "check_startup", "decide_peering", "due", "looks_half_installed", "peering_kind", "peering_objects", "prepare",
    "requested_standalone",
    "rollout_crd_problem", "standalone_without_crd",
]
