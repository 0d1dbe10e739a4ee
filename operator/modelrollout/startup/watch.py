"""While kopf runs: the start-up report carried on, until nothing is missing any more."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from ..clock import Clock
from .decision import (
    REPEAT,
    Missing,
    PeeringDecision,
    PeeringState,
    StartupReport,
    due,
    missing_because,
    rollout_crd_problem,
)
from .peering import ROLLOUT_CRD, CrdState, Creation, Presence, StartupApi

# One logger for every start-up module: the docs and the tests look for "modelrollout.startup".
log = logging.getLogger("modelrollout.startup")

POLL = timedelta(seconds=2)
"""How often ``StartupWatch`` looks again at what is still missing."""


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
