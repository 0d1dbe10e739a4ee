"""One base error with families under it (STYLE: errors are classified by type).

Adapters translate client exceptions into these at the boundary; only ``handlers.py``
maps them onto kopf's temporary or permanent errors.
"""

from __future__ import annotations


class ModelRolloutError(Exception):
    """Base of every error this package raises on purpose."""


class InvalidSpec(ModelRolloutError):
    """The spec passed admission but cannot be used; the message names the field."""


class MetricsUnavailable(ModelRolloutError):
    """Prometheus unreachable, timed out or answered with an error."""


class UnreadableStatus(ModelRolloutError):
    """The rollout's status does not parse (hand-edited, or written by another tool).

    Starting over would lose the recorded stable; the rollout holds instead until the
    status is fixed or removed (docs/troubleshooting.md, "UnreadableStatus").
    """


class ClusterConflict(ModelRolloutError):
    """The cluster is not in a state we can act on (missing Deployment, digest mismatch…)."""


class ClusterUnavailable(ModelRolloutError):
    """The API server failed or timed out; retry with backoff."""


class NotShardOwner(Exception):
    """With ``--shards``: the rollout belongs to another replica now; this one stops before
    its next write (docs/operator.md#sharding).

    Deliberately not a :class:`ModelRolloutError`: the adapters' handlers that tolerate a
    cluster error and carry on must not carry on past this one."""


class UnsafeLabelValue(InvalidSpec):
    """A value from a spec would not be safe inside a PromQL label matcher."""


class CapacityWait(ClusterConflict):
    """Pods cannot be removed yet: the other side lacks the ready pods to keep serving; retried later."""


class OperatorBug(Exception):
    """A defect in the operator itself, neither the cluster's nor Prometheus' doing.

    Deliberately not a :class:`ModelRolloutError`: handlers that tolerate the cluster's or
    Prometheus' failures must not swallow it. It reaches the daemon's catch-all, which logs
    the traceback and counts ``modelrollout_operator_errors_total``; the rollout holds
    (nothing acts on a tick that failed) and never counts it toward ``prometheusErrors``.
    """
