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


class ClusterConflict(ModelRolloutError):
    """The cluster is not in a state we can act on (missing Deployment, digest mismatch…)."""


class ClusterUnavailable(ModelRolloutError):
    """The API server failed or timed out; retry with backoff."""


class UnsafeLabelValue(InvalidSpec):
    """A value from a spec would not be safe inside a PromQL label matcher."""
