"""The start-up checks ``modelrollout run`` makes once, before ``kopf.run``.

Bounded: a short grace for CRDs that look half-installed, then two apiserver round trips
per peering object. Each conclusion is logged once here; ``watch.py`` repeats what is
still unresolved while kopf runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta

from ..clock import Clock
from .decision import (
    PeeringDecision,
    StartupReport,
    decide_peering,
    looks_half_installed,
    requested_standalone,
    rollout_crd_problem,
)
from .peering import (
    ROLLOUT_CRD,
    Answer,
    CrdState,
    Creation,
    PeeringKind,
    PeeringObject,
    Presence,
    StartupApi,
    is_namespace_pattern,
    peering_kind,
    peering_objects,
)

# One logger for every start-up module: the docs and the tests look for "modelrollout.startup".
log = logging.getLogger("modelrollout.startup")

INSTALL_GRACE = timedelta(seconds=5)
"""How long start-up waits for CRDs that look half-installed (the peering CRD not yet
Established, or absent while the ModelRollout CRD is not Established either) before
deciding on peering. Short, so that the decision and its log line come within 10 s of the start."""


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
            sleep: Callable[[float], None], sharded: bool = False) -> StartupReport:
    """What ``modelrollout run`` calls before ``kopf.run``: ``--standalone`` (and ``--shards``,
    which coordinates by Leases, not by kopf peering) only checks the ModelRollout CRD;
    otherwise ``check_startup`` for the peering objects of ``namespaces``."""
    if standalone or sharded:
        report = StartupReport(requested_standalone(sharded), api.crd(ROLLOUT_CRD))
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
