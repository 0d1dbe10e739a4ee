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
(tests/unit/test_startup.py), and ``KubeStartupApi`` is the only code that knows the
kubernetes client. It lists with a field selector rather than GETting one object: the
chart grants list/watch/patch on peering objects and list/watch on CRDs (what kopf
itself needs), and no get. See docs/operator.md (``run``, High availability) and
docs/troubleshooting.md.

The modules, by job: ``peering.py`` (what kopf peers through, the apiserver's answers,
the ``StartupApi`` protocol), ``decision.py`` (pure decisions and what to say),
``checks.py`` (the checks made once before ``kopf.run``), ``watch.py`` (``StartupWatch``,
while kopf runs) and ``kube.py`` (``KubeStartupApi``). Their public names are
re-exported here: ``from modelrollout.startup import ...`` is the interface.
"""

from .checks import INSTALL_GRACE, check_startup, log_decision, prepare
from .decision import (
    REPEAT,
    Missing,
    PeeringDecision,
    PeeringState,
    StartupReport,
    decide_peering,
    due,
    looks_half_installed,
    missing_because,
    requested_standalone,
    rollout_crd_problem,
    standalone_without_crd,
)
from .kube import KubeStartupApi
from .peering import (
    PEERING_CRD_FILE,
    PEERING_GROUP,
    PEERING_VERSION,
    ROLLOUT_CRD,
    ROLLOUT_CRD_FILE,
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
from .watch import POLL, StartupWatch

__all__ = [
    "INSTALL_GRACE", "PEERING_CRD_FILE", "PEERING_GROUP", "PEERING_VERSION", "POLL", "REPEAT", "ROLLOUT_CRD",
    "ROLLOUT_CRD_FILE", "Answer", "CrdState", "Creation", "KubeStartupApi", "Missing", "PeeringDecision",
    "PeeringKind", "PeeringObject", "PeeringState", "Presence", "StartupApi", "StartupReport", "StartupWatch",
    "check_startup", "decide_peering", "due", "is_namespace_pattern", "log_decision", "looks_half_installed",
    "missing_because", "peering_kind", "peering_objects", "prepare", "requested_standalone",
    "rollout_crd_problem", "standalone_without_crd",
]
