"""Start-up's decisions, pure: peering or standalone, what is missing and why, what to say.

Every function here takes what start-up saw (``peering.py``'s answers) and returns a
value; ``checks.py`` and ``watch.py`` ask the apiserver, log, and repeat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from .peering import (
    PEERING_CRD_FILE,
    ROLLOUT_CRD,
    ROLLOUT_CRD_FILE,
    Answer,
    CrdState,
    Creation,
    PeeringKind,
    PeeringObject,
    Presence,
)

REPEAT = timedelta(seconds=30)
"""How often a still-unresolved problem is logged again: often enough to be seen in
any log tail, rarely enough not to flood it."""


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


def requested_standalone(sharded: bool = False) -> PeeringDecision:
    if sharded:
        return PeeringDecision(PeeringState.STANDALONE, "--shards: no kopf peering; the replicas split the rollouts "
                                                        "by Leases (docs/operator.md#sharding)")
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
